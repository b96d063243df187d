DROP FUNCTION overseer_render_marks();
DROP FUNCTION overseer_render_candidates(xid8, text[], text[]);
DROP INDEX deployments_expiring_idx;
ALTER TABLE deployments RESET (fillfactor);
CREATE INDEX deployments_unrendered_idx ON deployments (id)
    WHERE rendered_commit IS NULL AND deleted_at IS NULL;
DROP TRIGGER deployments_generation_stamp ON deployments;
DROP FUNCTION deployments_stamp_change();
DROP INDEX deployments_changed_xid_idx;
ALTER TABLE deployments DROP COLUMN changed_xid;
