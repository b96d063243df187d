-- depends: 0005.backfill-plugin-id
-- Incremental rendering. Every change to what a deployment renders from takes a fresh number
-- from one sequence; a render remembers the highest number it has seen and next time reads only
-- rows above it. Status bookkeeping (apply, rendered_commit) does not bump it.
CREATE SEQUENCE deployments_generation_seq;
ALTER TABLE deployments ADD COLUMN generation BIGINT NOT NULL DEFAULT nextval('deployments_generation_seq');
CREATE INDEX deployments_generation_idx ON deployments (generation);

CREATE FUNCTION deployments_bump_generation() RETURNS trigger AS $$
BEGIN
    IF NEW.config IS DISTINCT FROM OLD.config
       OR NEW.namespace IS DISTINCT FROM OLD.namespace
       OR NEW.deployment_id IS DISTINCT FROM OLD.deployment_id
       OR NEW.plugin_id IS DISTINCT FROM OLD.plugin_id
       OR NEW.deleted_at IS DISTINCT FROM OLD.deleted_at
       OR NEW.expires_at IS DISTINCT FROM OLD.expires_at THEN
        NEW.generation := nextval('deployments_generation_seq');
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER deployments_generation
BEFORE UPDATE ON deployments
FOR EACH ROW EXECUTE FUNCTION deployments_bump_generation();

-- Identifies this database in a GitOps repository's render state, so a render against another
-- database never trusts state recorded for this one.
CREATE TABLE overseer_instance (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO overseer_instance DEFAULT VALUES;
