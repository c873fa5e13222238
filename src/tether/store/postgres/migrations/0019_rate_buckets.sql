-- Tether schema v19: rate limits kept in the database (ADR 90). Mirrors
-- store/sqlite/migrations/0019_rate_buckets.sql.

-- One token bucket, in the GCRA form: `tat` (the "theoretical arrival time", epoch
-- seconds) is when the bucket would be full again; a take of n units at `now` is
-- granted when max(tat, now) + n/rate <= now + burst/rate, and moves `tat` on by n/rate.
-- `kind` is what it counts: a step integration's `requests` or model `tokens`, or a
-- tenant's API `submits`; `name` the integration ('' for submits); `tenant` the
-- tenant whose bucket it is, '*' for one bucket every tenant shares. `rate` (units a
-- second) and `burst` (units) are those of the latest take, for readers; `granted`
-- (0/1) says whether it was granted.
CREATE TABLE rate_buckets (
    kind        TEXT NOT NULL CHECK (kind IN ('requests', 'tokens', 'submits')),
    name        TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    tat         DOUBLE PRECISION NOT NULL,
    rate        DOUBLE PRECISION NOT NULL CHECK (rate > 0),
    burst       DOUBLE PRECISION NOT NULL CHECK (burst > 0),
    granted     INTEGER NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kind, name, tenant)
);
