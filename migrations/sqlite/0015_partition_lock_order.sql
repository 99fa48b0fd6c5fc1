-- PostgreSQL's 0015 changes the lock order of its partition function; SQLite has no partitions
-- (kept so both flavours number their migrations alike).
SELECT 1;
