CREATE OR REPLACE FUNCTION deployments_bump_generation() RETURNS trigger AS $$
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
