-- Making a day takes its parent's lock before it reads the DEFAULT partition. 0010's function read
-- `<parent>_default` first (ACCESS SHARE) and locked the parent only when it created the day, the
-- reverse of the order `LOCK TABLE <parent>`, `ALTER TABLE` and migrations take (the parent, then
-- its partitions): the two deadlocked and PostgreSQL aborted one of them. Same arguments, same
-- result; only the lock order changes.
CREATE OR REPLACE FUNCTION tickcast_ensure_partition(parent TEXT, day_start BIGINT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $fn$
DECLARE
    day_end BIGINT := day_start + 86400000000000;
    part TEXT := parent || '_' || to_char(to_timestamp(day_start / 1e9) AT TIME ZONE 'UTC', 'YYYYMMDD');
    fallback TEXT := parent || '_default';
    strays BOOLEAN;
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN FALSE;
    END IF;
    -- The recorder, the maintenance task and an import may ask at once (any process).
    PERFORM pg_advisory_xact_lock(hashtext('tickcast_ensure_partition'));
    IF to_regclass(part) IS NOT NULL THEN
        RETURN FALSE;
    END IF;
    -- The parent first (what creating or attaching the day takes anyway), then the DEFAULT
    -- partition: the order every other locker of the table uses.
    EXECUTE format('LOCK TABLE ONLY %I IN ACCESS EXCLUSIVE MODE', parent);
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE ts >= %s AND ts < %s)',
        fallback, day_start, day_end) INTO strays;
    IF strays THEN
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', part, parent);
        EXECUTE format('WITH moved AS (DELETE FROM %I WHERE ts >= %s AND ts < %s RETURNING *) '
            'INSERT INTO %I SELECT * FROM moved', fallback, day_start, day_end, part);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
            parent, part, day_start, day_end);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (%s)',
            part, parent, day_start, day_end);
    END IF;
    RETURN TRUE;
END
$fn$;
