-- depends: 0001.deployments
-- The plugin registry, exactly as the specification defines it.
CREATE TABLE plugins (
    id VARCHAR(24) PRIMARY KEY,  -- CUID2 ID (24 chars)
    name VARCHAR(255) NOT NULL UNIQUE,
    version VARCHAR(50) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    manifest TEXT NOT NULL,  -- Store as readable YAML text
    image_name VARCHAR(255) NOT NULL,
    registry_url VARCHAR(255) NOT NULL,
    is_active BOOLEAN DEFAULT true
);
