-- depends: 0009.render-rounds
-- Review mode (pull requests) and apply from Git's main.
--
-- What apply installed, per release: the chart's tree on main, beside the commit. A hand edit, a
-- revert or a merge changes the tree, and the next apply pass installs it.
ALTER TABLE deployments ADD COLUMN applied_tree VARCHAR(40);

-- One row per pull request Overseer opened. At most one is open per deployment: a second change
-- while it is open updates its branch. `previous` holds what the deployment was before the
-- first change of the proposal (config, ttl, expiry, deletion, status), and `previous_secret`
-- its sealed secret values, so a pull request closed without merging undoes the change.
-- `chart_tree` is the tree the branch proposes for the chart ('' for its removal): a change a
-- reviewer closed is not proposed again until the chart it would give differs.
CREATE TABLE proposals (
    id VARCHAR(24) PRIMARY KEY,
    deployment_id VARCHAR(24) NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    kind VARCHAR(16) NOT NULL CHECK (kind IN ('create', 'update', 'delete', 'expire', 'upgrade')),
    state VARCHAR(16) NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'open', 'merged', 'closed', 'superseded')),
    branch VARCHAR(255) NOT NULL,
    number INTEGER,
    url TEXT,
    head_commit VARCHAR(40),
    chart_tree VARCHAR(40),
    previous JSONB,
    previous_secret BYTEA,
    requested_by TEXT,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX proposals_active_idx ON proposals (deployment_id)
    WHERE state IN ('pending', 'open');
CREATE INDEX proposals_number_idx ON proposals (number) WHERE number IS NOT NULL;

-- Webhook deliveries already handled: a replayed one changes nothing.
CREATE TABLE webhook_deliveries (
    forge VARCHAR(16) NOT NULL,
    delivery TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (forge, delivery)
);
