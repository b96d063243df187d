-- depends: 0008.applied-secret-revision
-- An incremental render looks for live rows whose TTL ran out since gc last ran: they changed no
-- row, so no generation tells of them. They are few, and this index finds them without a scan.
CREATE INDEX deployments_expiring_idx ON deployments (expires_at)
    WHERE deleted_at IS NULL AND expires_at IS NOT NULL;

-- Every render round also reads the live rows never rendered, through the partial index of
-- migration 0007. A server inserts rows and then records their commit, round after round, which
-- leaves that index an entry per rendered row until a vacuum removes it; by default that waits
-- for a fifth of the table to change, and each round reads every entry left meanwhile. Vacuum
-- after a thousand changed rows instead, whatever the table's size.
ALTER TABLE deployments SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                             autovacuum_analyze_scale_factor = 0.05);
