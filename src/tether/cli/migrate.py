"""`tether migrate`: apply pending schema migrations."""

from __future__ import annotations

import typer

from tether.cli.common import (
    build_app,
    console,
    handle_errors,
    run,
)
from tether.cli.options import AppOpt, DatabaseOpt, resolve
from tether.cli.root import cli
from tether.services import admin


@cli.command()
@handle_errors
def migrate(ctx: typer.Context, app: AppOpt = None, database_url: DatabaseOpt = None) -> None:
    """Bring the database schema up to date (safe to run again, and concurrently)."""
    env = resolve(ctx, app, database_url, local_only=True)
    tether_app = build_app(env)
    with console.status(f"migrating {admin.database(tether_app)} ..."):
        done = run(admin.migrate(tether_app))
    before, applied, after = done.before, done.applied, done.after
    if applied:
        versions = ", ".join(str(v) for v in applied)
        console.print(f"[green]migrated[/] schema {before} → {after} (applied: {versions})")
    else:
        console.print(f"schema already up to date (version {after})")
