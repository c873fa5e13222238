"""`tether webhooks ...`: subscriptions, their deliveries, retry and replay.

Like the other commands they talk to the database directly, as the tenant given by
`--tenant`, through `tether.services.webhooks`. A URL the egress guard refuses is a
usage error (exit 2) with the reason; nothing is stored.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from tether.cli.common import (
    EXIT_USAGE,
    AppOpt,
    CLIError,
    DatabaseOpt,
    JsonOpt,
    TenantOpt,
    build_app,
    console,
    handle_errors,
    iso,
    local_time,
    print_json,
    resolve,
    run,
)
from tether.cli.root import cli
from tether.egress import EgressRefused
from tether.errors import InvalidWebhook
from tether.models.webhooks import (
    DeliveryFilter,
    DeliveryStatus,
    WebhookDelivery,
    WebhookSubscription,
)
from tether.services import webhooks as service

T = TypeVar("T")
webhooks_cli = typer.Typer(
    help="Webhook subscriptions, deliveries, retry and replay (docs/webhooks.md).",
    no_args_is_help=True,
)
cli.add_typer(webhooks_cli, name="webhooks")

EventOpt = Annotated[
    list[str] | None,
    typer.Option("--event", "-e", help="An event type (repeat), or '*' for all."),
]
WorkflowOpt = Annotated[
    list[str] | None, typer.Option("--workflow", "-w", help="Only this workflow (repeat).")
]


def subscription_json(s: WebhookSubscription, *, secret: bool = False) -> dict[str, Any]:
    """A subscription as plain JSON (with its secret only when just created or rotated)."""
    out: dict[str, Any] = {
        "id": s.id,
        "tenant": s.tenant,
        "url": s.url,
        "event_types": s.event_types,
        "workflows": s.workflows,
        "task_id": s.task_id,
        "description": s.description,
        "status": str(s.status),
        "disabled_reason": s.disabled_reason,
        "disabled_at": iso(s.disabled_at),
        "consecutive_failures": s.consecutive_failures,
        "previous_secret_until": iso(s.previous_secret_until),
        "created_at": iso(s.created_at),
    }
    if secret:
        out["secret"] = s.secret
    return out


def delivery_json(d: WebhookDelivery) -> dict[str, Any]:
    """A delivery as plain JSON (without its body)."""
    return {
        "id": d.id,
        "subscription_id": d.subscription_id,
        "event_id": d.event_id,
        "task_id": d.task_id,
        "event_type": d.event_type,
        "webhook_id": d.webhook_id,
        "status": str(d.status),
        "attempts": d.attempts,
        "next_attempt_at": iso(d.next_attempt_at),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "delivered_at": iso(d.delivered_at),
    }


def parse_since(text: str, now: float | None = None) -> float:
    """Epoch seconds from `1718000000`, an ISO time with an offset, or an age: `90s`,
    `30m`, `2h`, `7d`."""
    now = time.time() if now is None else now
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if match:
        scale = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return now - float(match.group(1)) * scale
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CLIError(
            f"--since {text!r}: use epoch seconds, ISO 8601 or 30m/2h/7d", EXIT_USAGE
        ) from None
    if when.tzinfo is None:
        raise CLIError("--since needs a UTC offset (e.g. 2030-01-01T00:00:00Z)", EXIT_USAGE)
    return when.timestamp()


def _call(ctx: typer.Context, app: str | None, db: str | None, tenant: str | None) -> Any:
    env = resolve(ctx, app, db, tenant)
    tether_app = build_app(env)

    def go(make: Any) -> Any:
        async def inner() -> Any:
            async with tether_app:
                return await make(tether_app, env.tenant)

        try:
            return run(inner())
        except EgressRefused as exc:
            raise CLIError(str(exc), EXIT_USAGE) from None
        except InvalidWebhook as exc:
            raise CLIError(f"{exc.field}: {exc}", EXIT_USAGE) from None

    return go


def _found(value: T | None, what: str, key: str) -> T:
    if value is None:
        raise CLIError(f"{what} not found: {key}")
    return value


@webhooks_cli.command("create")
@handle_errors
def create(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="https URL (http only to allowlisted hosts).")],
    event: EventOpt = None,
    workflow: WorkflowOpt = None,
    task: Annotated[str | None, typer.Option("--task", help="Only this task's events.")] = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    json: JsonOpt = False,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Subscribe URL to events; prints the signing secret (shown once)."""
    go = _call(ctx, app, database_url, tenant)
    sub: WebhookSubscription = go(
        lambda a, t: service.create(
            a, t, url, event or [], workflows=workflow, task_id=task, description=description
        )
    )
    if json:
        print_json(subscription_json(sub, secret=True))
        return
    console.print(f"subscription [bold]{sub.id}[/] → {sub.url}")
    console.print(f"events: {', '.join(sub.event_types)}")
    console.print(f"secret: [bold]{sub.secret}[/]  (shown once: verify signatures with it)")


@webhooks_cli.command("list")
@handle_errors
def list_subscriptions(
    ctx: typer.Context,
    task: Annotated[str | None, typer.Option("--task", help="Only this task's.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500)] = 100,
    json: JsonOpt = False,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """List subscriptions, newest first."""
    go = _call(ctx, app, database_url, tenant)
    found: list[WebhookSubscription] = go(
        lambda a, t: service.list_(a, t, task_id=task, limit=limit)
    )
    if json:
        print_json([subscription_json(s) for s in found])
        return
    if not found:
        console.print("[dim]no webhook subscriptions[/]")
        return
    table = Table(show_edge=False)
    for col in ("id", "url", "events", "status", "failures", "created"):
        table.add_column(col, overflow="fold")
    for s in found:
        status = str(s.status) + (f" ({s.disabled_reason})" if s.disabled_reason else "")
        table.add_row(
            s.id,
            s.url,
            ", ".join(s.event_types),
            status,
            str(s.consecutive_failures),
            local_time(s.created_at),
        )
    console.print(table)


@webhooks_cli.command("show")
@handle_errors
def show(
    ctx: typer.Context,
    subscription_id: Annotated[str, typer.Argument(help="Subscription id.")],
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Print one subscription as JSON (never its secret)."""
    go = _call(ctx, app, database_url, tenant)
    sub = _found(
        go(lambda a, t: service.get(a, subscription_id, t)), "subscription", subscription_id
    )
    print_json(subscription_json(sub))


@webhooks_cli.command("update")
@handle_errors
def update(
    ctx: typer.Context,
    subscription_id: Annotated[str, typer.Argument(help="Subscription id.")],
    url: Annotated[str | None, typer.Option("--url")] = None,
    event: EventOpt = None,
    enable: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Enable or disable it.")
    ] = None,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Change the URL or event types, or enable/disable a subscription."""
    go = _call(ctx, app, database_url, tenant)
    sub = _found(
        go(
            lambda a, t: service.update(a, subscription_id, t, url=url, types=event, enabled=enable)
        ),
        "subscription",
        subscription_id,
    )
    print_json(subscription_json(sub))


@webhooks_cli.command("delete")
@handle_errors
def delete(
    ctx: typer.Context,
    subscription_id: Annotated[str, typer.Argument(help="Subscription id.")],
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Delete a subscription and its deliveries."""
    go = _call(ctx, app, database_url, tenant)
    if not go(lambda a, t: service.delete(a, subscription_id, t)):
        raise CLIError(f"subscription not found: {subscription_id}")
    console.print(f"deleted {subscription_id}")


@webhooks_cli.command("rotate")
@handle_errors
def rotate(
    ctx: typer.Context,
    subscription_id: Annotated[str, typer.Argument(help="Subscription id.")],
    overlap: Annotated[
        float | None,
        typer.Option("--overlap", min=0, help="Seconds the old secret still signs."),
    ] = None,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Rotate the signing secret; prints the new one (shown once)."""
    go = _call(ctx, app, database_url, tenant)
    sub = _found(
        go(lambda a, t: service.rotate_secret(a, subscription_id, t, overlap)),
        "subscription",
        subscription_id,
    )
    print_json(subscription_json(sub, secret=True))


@webhooks_cli.command("deliveries")
@handle_errors
def deliveries(
    ctx: typer.Context,
    subscription: Annotated[str | None, typer.Option("--subscription", "-s")] = None,
    status: Annotated[
        list[DeliveryStatus] | None, typer.Option("--status", help="Repeat for several.")
    ] = None,
    task: Annotated[str | None, typer.Option("--task")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500)] = 100,
    json: JsonOpt = False,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """List deliveries, newest first (e.g. `--status failed`)."""
    go = _call(ctx, app, database_url, tenant)
    found: list[WebhookDelivery] = go(
        lambda a, t: service.deliveries(
            a,
            DeliveryFilter(
                tenant=t,
                subscription_id=subscription,
                status=status or None,
                task_id=task,
                limit=limit,
            ),
        )
    )
    if json:
        print_json([delivery_json(d) for d in found])
        return
    if not found:
        console.print("[dim]no deliveries[/]")
        return
    table = Table(show_edge=False)
    for col in ("id", "event", "task", "status", "attempts", "last", "next"):
        table.add_column(col, overflow="fold")
    for d in found:
        last = d.last_error or (str(d.last_status_code) if d.last_status_code else "")
        table.add_row(
            d.id,
            f"{d.event_type} #{d.event_id}",
            d.task_id,
            str(d.status),
            str(d.attempts),
            last,
            local_time(d.next_attempt_at) if d.status == DeliveryStatus.PENDING else "",
        )
    console.print(table)


@webhooks_cli.command("retry")
@handle_errors
def retry(
    ctx: typer.Context,
    delivery_id: Annotated[str, typer.Argument(help="Delivery id.")],
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Send one delivery again now (same webhook-id, fresh schedule)."""
    go = _call(ctx, app, database_url, tenant)
    found = _found(go(lambda a, t: service.retry(a, delivery_id, t)), "delivery", delivery_id)
    console.print(f"delivery {found.id} is due again ({found.event_type} #{found.event_id})")


@webhooks_cli.command("replay")
@handle_errors
def replay(
    ctx: typer.Context,
    subscription_id: Annotated[str, typer.Argument(help="Subscription id.")],
    since: Annotated[
        str | None, typer.Option("--since", help="Epoch seconds, ISO time, or an age: 2h.")
    ] = None,
    after_event: Annotated[int | None, typer.Option("--after-event", min=0)] = None,
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Send a subscription's events since a time or after an event id again."""
    when = parse_since(since) if since is not None else None
    go = _call(ctx, app, database_url, tenant)
    done = _found(
        go(lambda a, t: _replay_all(a, subscription_id, t, when, after_event)),
        "subscription",
        subscription_id,
    )
    console.print(f"replaying: {done[0]} sent again, {done[1]} new, up to event {done[2]}")


async def _replay_all(
    app: Any, subscription_id: str, tenant: str, since: float | None, after: int | None
) -> tuple[int, int, int] | None:
    reset = created = 0
    while True:
        done = await service.replay(app, subscription_id, tenant, since=since, after_event=after)
        if done is None:
            return None
        reset, created = reset + done.reset, created + done.created
        if not done.more:
            return reset, created, done.last_event_id
        after = done.last_event_id
