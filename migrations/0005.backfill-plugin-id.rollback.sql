-- Nothing to undo: the backfill only fills a nullable column that 0003 adds.
SELECT 1;
