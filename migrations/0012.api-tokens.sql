-- depends: 0011.status-check
-- Named API tokens, idempotent creates, and creates whose answer never left the server.
--
-- A token is stored as the SHA-256 of its random value: the value itself is shown once, at
-- creation. `namespaces` bounds where a `deploy` token may change deployments and what a `read`
-- token sees.
CREATE TABLE api_tokens (
    id VARCHAR(24) PRIMARY KEY,
    name VARCHAR(63) NOT NULL UNIQUE,
    token_hash CHAR(64) NOT NULL UNIQUE,
    scopes TEXT[] NOT NULL CHECK (scopes <@ ARRAY['read', 'deploy', 'admin'] AND cardinality(scopes) > 0),
    namespaces TEXT[] NOT NULL,
    expires_at TIMESTAMP WITH TIME ZONE,
    revoked_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- `Idempotency-Key` of POST /deployments: per token (its name), the body's hash and the
-- deployment it made. It goes with the deployment when a failed round discards it.
CREATE TABLE idempotency_keys (
    token_name VARCHAR(63) NOT NULL,
    key VARCHAR(255) NOT NULL,
    body_hash CHAR(64) NOT NULL,
    deployment_id VARCHAR(24) NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (token_name, key)
);

-- The server that stored a row and has not answered its request yet. A server holds an advisory
-- lock on its own id while it lives; rows of a server whose lock is free were never answered
-- (it was killed), and are discarded rather than deployed.
ALTER TABLE deployments ADD COLUMN answer_pending VARCHAR(24);
CREATE INDEX deployments_answer_pending ON deployments (answer_pending)
    WHERE answer_pending IS NOT NULL;

-- Who asked for a deployment's latest change, when a named token did: commits name it.
ALTER TABLE deployments ADD COLUMN requested_by TEXT;
