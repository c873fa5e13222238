"""`tether server`, `tether token create`, `tether apikey create|revoke`.

The server runs the HTTP API (with embedded workers unless `--no-workers`); tokens and
API keys are the credentials it accepts. Authentication is always on: without a
configured secret the server refuses to start, unless `--dev` is given, which creates a
local secret (`.tether/dev-secret`) and prints a ready admin token.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tether.cli.common import (
    EXIT_USAGE,
    CLIError,
    build_app,
    console,
    handle_errors,
    print_json,
    run,
)
from tether.cli.options import AppOpt, DatabaseOpt, JsonOpt, TenantOpt, resolve
from tether.cli.root import App, cli
from tether.config import Settings
from tether.services import api_keys

RoleOpt = Annotated[
    list[str],
    typer.Option(
        "--role",
        "-r",
        help="Role to grant (repeatable): viewer, submitter, approver, operator, admin.",
    ),
]


@cli.command()
@handle_errors
def server(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535)] = 8000,
    no_workers: Annotated[
        bool, typer.Option("--no-workers", help="API only: run no embedded worker.")
    ] = False,
    dev: Annotated[
        bool, typer.Option("--dev", help="Dev mode: generated local secret, ready token.")
    ] = False,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", min=1, help="Embedded worker slots.")
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            min=1,
            help="Server processes sharing the port (one core each; POSIX only).",
        ),
    ] = 1,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Serve the HTTP API (and run workers in the same process, unless --no-workers)."""
    from tether.api.server import serve

    env = resolve(ctx, app, database_url, tenant, local_only=True)
    settings = env.settings.model_copy(update={"dev": True}) if dev else env.settings
    tether_app = build_app(env, required=True)
    options = {"concurrency": concurrency} if concurrency else None
    serve(
        tether_app,
        host,
        port,
        settings,
        workers=not no_workers,
        worker_options=options,
        log_level=log_level,
        processes=processes,
    )


token_cli = App(help="Bearer tokens (JWT) for the HTTP API.", no_args_is_help=True)
cli.add_typer(token_cli, name="token")


def _secret(settings: Settings, dev: bool) -> str:
    from tether.auth import dev_secret

    if settings.jwt_secret is not None and settings.jwt_secret.get_secret_value():
        return settings.jwt_secret.get_secret_value()
    if dev or settings.dev:
        return dev_secret()
    raise CLIError(
        "no signing secret: set TETHER_JWT_SECRET (or jwt_secret in tether.toml), "
        "or pass --dev to use the local development secret",
        EXIT_USAGE,
    )


@token_cli.command("create")
@handle_errors
def token_create(
    ctx: typer.Context,
    role: RoleOpt,
    subject: Annotated[str, typer.Option("--subject", help="Who the token is for.")] = "cli",
    ttl: Annotated[float, typer.Option("--ttl", min=1, help="Validity in seconds.")] = 3600,
    dev: Annotated[bool, typer.Option("--dev", help="Sign with the local dev secret.")] = False,
    tenant: TenantOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a signed bearer token for a tenant and roles."""
    from tether.auth import create_token

    env = resolve(ctx, tenant=tenant)
    try:
        token = create_token(_secret(env.settings, dev), env.tenant, role, subject, ttl)
    except ValueError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None
    if as_json:
        print_json({"token": token, "tenant": env.tenant, "roles": sorted(role), "expires_in": ttl})
    else:
        typer.echo(token)


apikey_cli = App(help="API keys for machines (stored hashed).", no_args_is_help=True)
cli.add_typer(apikey_cli, name="apikey")


@apikey_cli.command("create")
@handle_errors
def apikey_create(
    ctx: typer.Context,
    role: RoleOpt,
    name: Annotated[str, typer.Option("--name", help="What the key is for.")] = "",
    tenant: TenantOpt = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; its secret is printed once and never stored."""
    env = resolve(ctx, database_url=database_url, tenant=tenant, local_only=True)
    tether_app = build_app(env)

    async def go() -> tuple[str, str]:
        await tether_app.open()
        try:
            return await api_keys.create(tether_app, env.tenant, role, name)
        finally:
            await tether_app.close()

    try:
        key_id, plaintext = run(go())
    except ValueError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None
    if as_json:
        print_json({"id": key_id, "key": plaintext, "tenant": env.tenant, "roles": sorted(role)})
    else:
        console.print(f"API key {key_id} for tenant {env.tenant!r} (shown once):")
        typer.echo(plaintext)


@apikey_cli.command("revoke")
@handle_errors
def apikey_revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key id (second part of the key).")],
    tenant: TenantOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Revoke an API key at once."""
    env = resolve(ctx, database_url=database_url, tenant=tenant, local_only=True)
    tether_app = build_app(env)

    async def go() -> bool:
        await tether_app.open()
        try:
            return await api_keys.revoke(tether_app, key_id, env.tenant)
        finally:
            await tether_app.close()

    if not run(go()):
        raise CLIError(f"no live API key {key_id} for tenant {env.tenant!r}")
    console.print(f"revoked API key {key_id}")
