-- depends: 0008.applied-secret-revision
-- Incremental renders by transaction id. A render records the oldest transaction still running
-- when it read the rows (its snapshot's xmin); the next reads the rows changed by that
-- transaction or any later one. Unlike the generation (taken from a sequence when a row is
-- written, so a row committed late can sit below a watermark recorded meanwhile), this misses no
-- row that committed after the snapshot, whatever the order of commits.
ALTER TABLE deployments ADD COLUMN changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX deployments_changed_xid_idx ON deployments (changed_xid);

-- Stamped whenever the generation moves: the trigger of migration 0006 decides what counts as a
-- change to a render input, and this one, firing after it (triggers fire in name order), follows.
CREATE FUNCTION deployments_stamp_change() RETURNS trigger AS $$
BEGIN
    IF NEW.generation IS DISTINCT FROM OLD.generation THEN
        NEW.changed_xid := pg_current_xact_id();
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER deployments_generation_stamp
BEFORE UPDATE ON deployments
FOR EACH ROW EXECUTE FUNCTION deployments_stamp_change();

-- Never-rendered rows no longer need finding on every round, and with no index naming
-- rendered_commit, recording a render (or an apply's status) is a HOT update: no new index
-- entries, the old version pruned within its page. A little room per page keeps that possible.
DROP INDEX deployments_unrendered_idx;
ALTER TABLE deployments SET (fillfactor = 85);

-- Live rows whose TTL ran out since gc last ran changed no row, so no transaction id tells of
-- them. They are few, and this index finds them without a scan.
CREATE INDEX deployments_expiring_idx ON deployments (expires_at)
    WHERE deleted_at IS NULL AND expires_at IS NOT NULL;

-- The rows an incremental render reads: changed since its last snapshot, named (in doubt after a
-- crash), or past their TTL. Each part has its own index, but a planner with no statistics yet
-- (a table that grew quickly since the last analyze, as a busy server's does) takes the changed
-- ones for a third of the table and scans all of it, every round. Inside this function the
-- indexes are the only way: its SET applies to its own body only.
CREATE FUNCTION overseer_render_candidates(since xid8, releases text[], paths text[])
RETURNS SETOF varchar LANGUAGE sql STABLE ROWS 20 SET enable_seqscan = off AS $$
    SELECT id FROM deployments WHERE changed_xid >= since
    UNION
    SELECT id FROM deployments
    WHERE deployment_id = ANY(releases) AND namespace || '/' || deployment_id = ANY(paths)
    UNION
    SELECT id FROM deployments WHERE deleted_at IS NULL AND expires_at <= CURRENT_TIMESTAMP
$$;

-- The highest generation and the newest change, for the render state. The same reason as above:
-- with no statistics yet, max() reads the whole table rather than the end of an index.
CREATE FUNCTION overseer_render_marks(OUT generation bigint, OUT changed bigint)
LANGUAGE sql STABLE SET enable_seqscan = off AS $$
    SELECT (SELECT generation FROM deployments ORDER BY generation DESC LIMIT 1),
           (SELECT changed_xid FROM deployments ORDER BY changed_xid DESC LIMIT 1)::text::bigint
$$;
