ALTER TABLE deployments DROP COLUMN plugin_id;
