"""`tether rollout ...`: show, canary, promote, rollback, clear (docs/rollouts.md).

Each command runs one code path on `Operations.rollouts` (`tether.cli.rollout_ops`):
the database as `--tenant` (or, with `--every-tenant`, the fleet-wide rollout), or a
server with `--server` as the credential's tenant. Every command needs the workflow's
versions: locally `--app`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from tether.cli.common import console, fitted_table, handle_errors, iso, local_time, print_json
from tether.cli.operations import Operations, run_with
from tether.cli.options import JsonOpt, resolve, takes_global_options
from tether.cli.root import App, cli
from tether.models.rollouts import EVERY_TENANT, RolloutView

rollout_cli = App(
    help="Canary versions of a workflow: a share of new tasks on a new version (docs/rollouts.md).",
    no_args_is_help=True,
)
cli.add_typer(rollout_cli, name="rollout")

WorkflowArg = Annotated[str, typer.Argument(metavar="WORKFLOW", help="Registered workflow.")]
EveryTenant = Annotated[
    bool,
    typer.Option(
        "--every-tenant", help="The fleet-wide rollout (on the database only), not --tenant's."
    ),
]


def view_json(view: RolloutView) -> dict[str, Any]:
    """A rollout view as plain JSON (what `--json` prints)."""
    r = view.rollout
    return {
        "workflow": view.workflow,
        "scope": None if r is None else ("all" if r.tenant == EVERY_TENANT else "tenant"),
        "stable": None if r is None else r.stable,
        "canary": None if r is None else r.canary,
        "share": 0.0 if r is None else r.share,
        "started_at": None if r is None else iso(r.started_at),
        "updated_by": None if r is None else r.updated_by,
        "since": iso(view.since),
        "registered": view.registered,
        "versions": [
            {
                "version": f.version,
                "counts": f.counts,
                "total": f.total,
                "failure_rate": f.failure_rate,
            }
            for f in view.figures
        ],
    }


def _print(view: RolloutView, json: bool) -> None:
    if json:
        print_json(view_json(view))
        return
    r = view.rollout
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("workflow", view.workflow)
    grid.add_row("registered", ", ".join(f"v{v}" for v in view.registered))
    if r is None:
        grid.add_row("rollout", "none: new tasks start on the newest version")
    else:
        scope = "every tenant" if r.tenant == EVERY_TENANT else f"tenant {r.tenant}"
        grid.add_row("rollout", f"{scope}, by {r.updated_by or '-'}")
        grid.add_row("stable", "newest" if r.stable is None else f"v{r.stable}")
        if r.canary is not None:
            grid.add_row("canary", f"v{r.canary}, {r.share:.1%} of new tasks")
    grid.add_row("counted since", local_time(view.since))
    console.print(grid)
    canary = None if r is None else r.canary
    rows = [
        [
            f"v{f.version}" + (" (canary)" if f.version == canary else ""),
            str(f.total),
            str(f.counts.get("succeeded", 0)),
            str(f.counts.get("failed", 0)),
            "-" if f.failure_rate is None else f"{f.failure_rate:.1%}",
        ]
        for f in view.figures
    ]
    if rows:
        headers = ("version", "tasks", "succeeded", "failed", "failure rate")
        console.print(fitted_table(headers, rows, flexible=0))


@rollout_cli.command("show")
@takes_global_options
@handle_errors
def show(
    ctx: typer.Context,
    workflow: WorkflowArg,
    every_tenant: EveryTenant = False,
    json: JsonOpt = False,
) -> None:
    """The rollout that routes new tasks of WORKFLOW, and its versions side by side."""

    async def go(ops: Operations) -> RolloutView:
        return await ops.rollouts.show(workflow, every_tenant)

    _print(run_with(resolve(ctx), go, needs_app=True), json)


@rollout_cli.command("canary")
@takes_global_options
@handle_errors
def canary(
    ctx: typer.Context,
    workflow: WorkflowArg,
    version: Annotated[int, typer.Argument(metavar="VERSION", min=1, help="The new version.")],
    share: Annotated[
        float,
        typer.Option("--share", min=0.0, max=1.0, help="Part of new tasks on it, 0 to 1."),
    ] = 0.05,
    every_tenant: EveryTenant = False,
    json: JsonOpt = False,
) -> None:
    """Send a share of new tasks of WORKFLOW to VERSION (chosen by task id)."""

    async def go(ops: Operations) -> RolloutView:
        return await ops.rollouts.canary(workflow, version, share, every_tenant)

    _print(run_with(resolve(ctx), go, needs_app=True), json)


@rollout_cli.command("promote")
@takes_global_options
@handle_errors
def promote(
    ctx: typer.Context,
    workflow: WorkflowArg,
    every_tenant: EveryTenant = False,
    json: JsonOpt = False,
) -> None:
    """Make the canary the stable version: every new task starts on it."""

    async def go(ops: Operations) -> RolloutView:
        return await ops.rollouts.promote(workflow, every_tenant)

    _print(run_with(resolve(ctx), go, needs_app=True), json)


@rollout_cli.command("rollback")
@takes_global_options
@handle_errors
def rollback(
    ctx: typer.Context,
    workflow: WorkflowArg,
    every_tenant: EveryTenant = False,
    json: JsonOpt = False,
) -> None:
    """End the canary: new tasks start on the stable version (started ones finish)."""

    async def go(ops: Operations) -> RolloutView:
        return await ops.rollouts.rollback(workflow, every_tenant)

    _print(run_with(resolve(ctx), go, needs_app=True), json)


@rollout_cli.command("clear")
@takes_global_options
@handle_errors
def clear(ctx: typer.Context, workflow: WorkflowArg, every_tenant: EveryTenant = False) -> None:
    """Remove the rollout: new tasks start on the newest version again."""

    async def go(ops: Operations) -> bool:
        return await ops.rollouts.clear(workflow, every_tenant)

    removed = run_with(resolve(ctx), go, needs_app=True)
    console.print(f"rollout of {workflow} removed" if removed else f"{workflow} had no rollout")
