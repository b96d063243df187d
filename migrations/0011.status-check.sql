-- depends: 0010.review
-- A deployment's status is one of generator.status.Status's values, here as in Python (a test
-- compares the two lists).
ALTER TABLE deployments ADD CONSTRAINT deployments_status_check CHECK (status IN (
    'CREATING', 'UPDATING', 'PROPOSED', 'REJECTED', 'APPLYING', 'READY', 'NOT_READY', 'FAILED',
    'DELETED', 'EXPIRED'
));
