-- Tether schema v2: API keys for machine clients. Only a hash of the secret is stored.
-- Mirrors store/sqlite/migrations/0002_api_keys.sql.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    roles       TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    revoked_at  DOUBLE PRECISION
);
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);
