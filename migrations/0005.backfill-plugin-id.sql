-- depends: 0004.deployments-lifecycle
-- Step 5 of the specification's migration plan: link existing deployments to the plugin their
-- environment_type names. `overseer db backfill` runs the same statement after registrations.
UPDATE deployments AS d
SET plugin_id = p.id
FROM plugins AS p
WHERE d.plugin_id IS NULL AND d.environment_type = p.name;
