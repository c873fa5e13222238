"""`tether breaker ...`: list, show, open, close (docs/flow-control.md).

Each command runs one code path on `Operations.breakers` (`tether.cli.breaker_ops`): the
database as `--tenant`'s steps meet the breakers (or, with `--every-tenant`, the
fleet-wide breakers), or a server with `--server` as the credential's tenant. The
breakers are those the app configures (`--app`) or the `breakers` setting.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from tether.cli.common import console, fitted_table, handle_errors, iso, local_time, print_json
from tether.cli.operations import Operations, run_with
from tether.cli.options import JsonOpt, resolve, takes_global_options
from tether.cli.root import App, cli
from tether.models.breakers import Breaker, BreakerView

breaker_cli = App(
    help="Circuit breakers per integration: state, open and close by hand (docs/flow-control.md).",
    no_args_is_help=True,
)
cli.add_typer(breaker_cli, name="breaker")

IntegrationArg = Annotated[
    str, typer.Argument(metavar="INTEGRATION", help="The integration the breaker governs.")
]
EveryTenant = Annotated[
    bool,
    typer.Option(
        "--every-tenant",
        help="The fleet-wide breaker (on the database only), not --tenant's own.",
    ),
]
Reason = Annotated[str | None, typer.Option("--reason", help="Why (kept with the breaker).")]


def _breaker_json(b: Breaker | None, now: float, window: float) -> dict[str, Any] | None:
    if b is None:
        return None
    calls, failed = b.rate(now, window)
    return {
        "state": str(b.state),
        "manual": b.manual,
        "failures": b.failures,
        "window_calls": round(calls),
        "window_failures": round(failed),
        "opened_at": iso(b.opened_at),
        "open_until": iso(b.open_until),
        "opens": b.opens,
        "reason": b.reason,
        "updated_by": b.updated_by,
        "updated_at": iso(b.updated_at),
    }


def view_json(view: BreakerView, now: float) -> dict[str, Any]:
    """A breaker view as plain JSON (what `--json` prints: the API's shape)."""
    p = view.policy
    return {
        "integration": view.integration,
        "state": str(view.state),
        "policy": {
            "failures": p.failures,
            "failure_rate": p.failure_rate,
            "window": p.window,
            "min_calls": p.min_calls,
            "cool_down": p.cool_down,
            "probes": p.probes,
            "per_tenant": p.per_tenant,
        },
        "fleet": _breaker_json(view.fleet, now, p.window),
        "tenant": _breaker_json(view.own, now, p.window),
    }


def _rule(view: BreakerView) -> str:
    p = view.policy
    rules = []
    if p.failures is not None:
        rules.append(f"{p.failures} failures in a row")
    if p.failure_rate is not None:
        rules.append(f"{p.failure_rate:.0%} of {p.min_calls}+ calls in {p.window:g} s")
    per = ", per tenant" if p.per_tenant else ""
    return f"opens on {' or '.join(rules)}; {p.cool_down:g} s open, {p.probes} probe(s){per}"


def _state(b: Breaker | None) -> str:
    if b is None:
        return "closed"
    text = str(b.state)
    if b.manual:
        text += " (by hand)"
    if b.open_until is not None:
        text += f" until {local_time(b.open_until)}"
    return text


def _print_one(view: BreakerView) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("integration", view.integration)
    grid.add_row("state", str(view.state))
    grid.add_row("policy", _rule(view))
    for label, b in (("every tenant", view.fleet), ("this tenant", view.own)):
        if b is None and label == "this tenant":
            continue
        grid.add_row(label, _state(b))
        if b is not None:
            grid.add_row("", f"{b.failures} failures in a row, opened {b.opens} time(s)")
            if b.reason:
                grid.add_row("", f"last: {b.reason} (by {b.updated_by or 'itself'})")
    console.print(grid)


def _print(views: list[BreakerView], json: bool) -> None:
    now = time.time()
    if json:
        print_json([view_json(v, now) for v in views])
        return
    if not views:
        console.print("no circuit breakers are configured")
        return
    rows = [
        [v.integration, str(v.state), _state(v.fleet), _state(v.own) if v.own else "-", _rule(v)]
        for v in views
    ]
    headers = ("integration", "state", "every tenant", "this tenant", "policy")
    console.print(fitted_table(headers, rows, flexible=4))


def _shown(view: BreakerView, json: bool) -> None:
    if json:
        print_json(view_json(view, time.time()))
    else:
        _print_one(view)


@breaker_cli.command("list")
@takes_global_options
@handle_errors
def list_(ctx: typer.Context, every_tenant: EveryTenant = False, json: JsonOpt = False) -> None:
    """Every configured breaker, as the tenant's steps meet it."""

    async def go(ops: Operations) -> list[BreakerView]:
        return await ops.breakers.list(every_tenant)

    _print(run_with(resolve(ctx), go), json)


@breaker_cli.command("show")
@takes_global_options
@handle_errors
def show(
    ctx: typer.Context,
    integration: IntegrationArg,
    every_tenant: EveryTenant = False,
    json: JsonOpt = False,
) -> None:
    """The breaker of INTEGRATION: its state, counts and policy."""

    async def go(ops: Operations) -> BreakerView:
        return await ops.breakers.show(integration, every_tenant)

    _shown(run_with(resolve(ctx), go), json)


@breaker_cli.command("open")
@takes_global_options
@handle_errors
def open_(
    ctx: typer.Context,
    integration: IntegrationArg,
    reason: Reason = None,
    every_tenant: EveryTenant = False,
    json: JsonOpt = False,
) -> None:
    """Open the breaker of INTEGRATION by hand: its steps wait until it is closed."""

    async def go(ops: Operations) -> BreakerView:
        return await ops.breakers.open(integration, reason, every_tenant)

    _shown(run_with(resolve(ctx), go), json)


@breaker_cli.command("close")
@takes_global_options
@handle_errors
def close(
    ctx: typer.Context,
    integration: IntegrationArg,
    reason: Reason = None,
    every_tenant: EveryTenant = False,
    json: JsonOpt = False,
) -> None:
    """Close the breaker of INTEGRATION by hand: the steps it held run."""

    async def go(ops: Operations) -> BreakerView:
        return await ops.breakers.close(integration, reason, every_tenant)

    _shown(run_with(resolve(ctx), go), json)
