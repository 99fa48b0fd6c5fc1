-- PostgreSQL partitions ticks and bars by day here (migrations/postgres/0010). SQLite keeps its
-- plain tables: one file, retention deletes rows in bounded batches. Nothing to change.
SELECT 1;
