DROP TABLE overseer_instance;
DROP TRIGGER deployments_generation ON deployments;
DROP FUNCTION deployments_bump_generation();
DROP INDEX deployments_generation_idx;
ALTER TABLE deployments DROP COLUMN generation;
DROP SEQUENCE deployments_generation_seq;
