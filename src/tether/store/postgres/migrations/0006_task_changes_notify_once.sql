-- A task that waits or ends notified `tether_task` with its own id ('id:status'): one
-- notification per task, queued by the server and delivered to every listening process,
-- for each of which a worker batch of 100 completions meant 100 wake-ups. The payload
-- is now empty, so PostgreSQL folds the notifications of one transaction into one:
-- a listener that hears it from another process's connection reads the tasks it waits
-- for, in one query (as SQLite's change watch does).
CREATE OR REPLACE FUNCTION tether_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'queued' THEN
        PERFORM pg_notify('tether_work', NEW.queue);
    ELSIF NEW.status = 'waiting' AND NEW.run_at IS NOT NULL
        AND NEW.run_at <= extract(epoch FROM clock_timestamp()) THEN
        PERFORM pg_notify('tether_work', NEW.queue);  -- a backoff that is already due
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.status IN ('waiting', 'succeeded', 'failed', 'cancelled') THEN
        PERFORM pg_notify('tether_task', '');
    END IF;
    RETURN NULL;
END
$$;
