-- depends: 0008.applied-secret-revision
-- An incremental render looks for live rows whose TTL ran out since gc last ran: they changed no
-- row, so no generation tells of them. They are few, and this index finds them without a scan.
CREATE INDEX deployments_expiring_idx ON deployments (expires_at)
    WHERE deleted_at IS NULL AND expires_at IS NOT NULL;
