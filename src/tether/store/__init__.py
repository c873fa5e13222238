"""Storage: one interface (`Store`), SQLite and PostgreSQL implementations."""

from __future__ import annotations

from tether.errors import ConfigError
from tether.store.base import Store


def open_store(url: str) -> Store:
    """A store for a database URL (not yet opened)."""
    if url.startswith("sqlite:"):
        from tether.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql:", "postgres:", "postgresql+psycopg:")):
        from tether.store.postgres import PostgresStore

        return PostgresStore(url)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ConfigError(
        f"unsupported database URL scheme {scheme!r}: use sqlite:///path or postgresql://..."
    )


__all__ = ["Store", "open_store"]
