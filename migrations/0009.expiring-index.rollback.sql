DROP INDEX deployments_expiring_idx;
