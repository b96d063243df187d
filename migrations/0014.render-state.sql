-- depends: 0013.secret-key
-- What the next render may take for granted: the commit of main that matched the database as of
-- a snapshot (its xmin and generation, the plugins' digests). Shared by every process and every
-- replica on this database, so a replica that finds main moved by another one fetches that
-- commit and carries on incrementally, instead of comparing every chart.
CREATE TABLE render_state (
    id BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    commit_sha CHAR(40) NOT NULL,
    state JSONB NOT NULL,
    -- Whether commit_sha is on the remote's main: a server answers once its round is committed
    -- here and in its clone, and pushes right after; another replica waits for this.
    pushed BOOLEAN NOT NULL DEFAULT false,
    -- When that render took the render lock: a follower replica's rows committed before this
    -- were in its snapshot (see generator/service/leader.py).
    started_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);
