-- The deployments table of the Overseer service the plugin specification extends.
-- The specification's migration (0003) adds plugin_id to it.
CREATE TABLE deployments (
    id VARCHAR(24) PRIMARY KEY,
    deployment_id VARCHAR(53) NOT NULL UNIQUE,
    environment_type VARCHAR(255) NOT NULL,
    status VARCHAR(32) NOT NULL DEFAULT 'CREATING',
    config TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);
