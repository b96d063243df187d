ALTER TABLE deployments DROP COLUMN applied_secret_revision;
