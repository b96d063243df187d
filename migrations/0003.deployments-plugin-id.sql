-- depends: 0002.plugins
-- Add plugin reference to deployments (from the specification).
ALTER TABLE deployments
ADD COLUMN plugin_id VARCHAR(24) REFERENCES plugins(id);
