"""`tether migrate`: apply pending schema migrations."""

from __future__ import annotations

import typer

from tether.cli.common import (
    AppOpt,
    DatabaseOpt,
    build_app,
    console,
    handle_errors,
    resolve,
    run,
)
from tether.cli.root import cli
from tether.store.base import Store


@cli.command()
@handle_errors
def migrate(ctx: typer.Context, app: AppOpt = None, database_url: DatabaseOpt = None) -> None:
    """Bring the database schema up to date (safe to run again, and concurrently)."""
    env = resolve(ctx, app, database_url)
    store = build_app(env).store

    async def go(store: Store) -> tuple[int, list[int], int]:
        await store.open(check_schema=False)
        try:
            before = await store.schema_version()
            applied = await store.migrate()
            after = await store.schema_version()
            return before, applied, after
        finally:
            await store.close()

    with console.status(f"migrating {store.url_for_display or env.settings.database_url} ..."):
        before, applied, after = run(go(store))
    if applied:
        versions = ", ".join(str(v) for v in applied)
        console.print(f"[green]migrated[/] schema {before} → {after} (applied: {versions})")
    else:
        console.print(f"schema already up to date (version {after})")
