DROP TABLE webhook_deliveries;
DROP TABLE proposals;
ALTER TABLE deployments DROP COLUMN applied_tree;
