ALTER TABLE deployments DROP COLUMN requested_by;
DROP INDEX deployments_answer_pending;
ALTER TABLE deployments DROP COLUMN answer_pending;
DROP TABLE idempotency_keys;
DROP TABLE api_tokens;
