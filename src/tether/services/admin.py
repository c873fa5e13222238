"""Administration: the database's schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tether.store import open_store

if TYPE_CHECKING:
    from tether.app import Tether


@dataclass
class Migration:
    """What `migrate` did: the schema version before and after, and what it applied."""

    before: int
    applied: list[int]
    after: int


def database(app: Tether) -> str:
    """The app's database, for messages (without a password)."""
    return app.store.url_for_display or app.settings.database_url


async def migrate(app: Tether) -> Migration:
    """Apply pending schema migrations (safe to run again, and concurrently)."""
    store = app.store
    await store.open(check_schema=False)
    try:
        before = await store.schema_version()
        applied = await store.migrate()
        return Migration(before, applied, await store.schema_version())
    finally:
        await store.close()


def use_database(app: Tether, url: str) -> None:
    """Point a not yet opened app at another database (the CLI's `--database-url`)."""
    app.store = open_store(url)
    app.settings = app.settings.model_copy(update={"database_url": url})
