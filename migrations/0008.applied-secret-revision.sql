-- depends: 0007.unrendered-index
-- Which sealed secret values a release was last applied with (a short sha256 of the ciphertext,
-- never of the values). A secret-only update leaves the chart and its commit unchanged, so this
-- is what tells `apply` that the release still runs the old secrets, also after a failed try.
ALTER TABLE deployments ADD COLUMN applied_secret_revision VARCHAR(16);
