-- depends: 0006.render-generation
-- Each render looks for live deployments whose chart is committed but whose row never recorded
-- the commit (a process killed between moving the branch and committing to the database). They
-- are few or none, so an index on just them keeps that look cheap at any table size.
CREATE INDEX deployments_unrendered_idx ON deployments (id)
    WHERE rendered_commit IS NULL AND deleted_at IS NULL;
