-- depends: 0008.applied-secret-revision
-- Incremental renders by transaction id. A render records the oldest transaction still running
-- when it read the rows (its snapshot's xmin); the next reads the rows changed by that
-- transaction or any later one. Unlike the generation (taken from a sequence when a row is
-- written, so a row committed late can sit below a watermark recorded meanwhile), this misses no
-- row that committed after the snapshot, whatever the order of commits.
ALTER TABLE deployments ADD COLUMN changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX deployments_changed_xid_idx ON deployments (changed_xid);

CREATE OR REPLACE FUNCTION deployments_bump_generation() RETURNS trigger AS $$
BEGIN
    IF NEW.config IS DISTINCT FROM OLD.config
       OR NEW.namespace IS DISTINCT FROM OLD.namespace
       OR NEW.deployment_id IS DISTINCT FROM OLD.deployment_id
       OR NEW.plugin_id IS DISTINCT FROM OLD.plugin_id
       OR NEW.deleted_at IS DISTINCT FROM OLD.deleted_at
       OR NEW.expires_at IS DISTINCT FROM OLD.expires_at THEN
        NEW.generation := nextval('deployments_generation_seq');
        NEW.changed_xid := pg_current_xact_id();
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

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
