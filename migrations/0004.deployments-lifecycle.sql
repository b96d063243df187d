-- depends: 0003.deployments-plugin-id
-- What rendering, applying and expiry need. Secret values live apart from config, encrypted
-- (Fernet) by the application; the database never sees them in clear.
ALTER TABLE deployments
    ADD COLUMN namespace VARCHAR(63) NOT NULL DEFAULT 'a8s',
    ADD COLUMN secret_data BYTEA,
    ADD COLUMN ttl_seconds INTEGER CHECK (ttl_seconds IS NULL OR ttl_seconds > 0),
    ADD COLUMN expires_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN deleted_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN status_reason TEXT,
    ADD COLUMN rendered_commit VARCHAR(40),
    ADD COLUMN applied_commit VARCHAR(40),
    ADD COLUMN helm_revision INTEGER;

CREATE INDEX deployments_live_idx ON deployments (created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX deployments_plugin_idx ON deployments (plugin_id);
