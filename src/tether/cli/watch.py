"""`tether watch ID`: follow a task step by step until it ends.

Progress comes from the task's append-only event log, followed with
`tether.follow.follow_task`: read every ~200 ms and at once when this process's hub
reports a change, so it works for tasks run by workers in other processes.
Exit status: 0 succeeded, 1 failed, 3 cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing
from typing import Annotated

import typer
from rich.markup import escape

from tether.app import Tether
from tether.cli.common import (
    EXIT_CANCELLED,
    EXIT_ERROR,
    AppOpt,
    DatabaseOpt,
    TenantOpt,
    build_app,
    console,
    handle_errors,
    resolve,
    run,
    styled_status,
)
from tether.cli.root import cli
from tether.follow import follow_task
from tether.models import Event, EventType, Task, TaskStatus

POLL_SECONDS = 0.2
RECORDED_KINDS = {"now", "uuid", "random"}


def describe(event: Event) -> str | None:
    """One line of Rich markup for an event (None: not worth a line)."""
    data = event.data or {}
    who = f" [dim]on {escape(event.worker)}[/]" if event.worker else ""
    step = escape(event.step or "?")
    seq = data.get("seq")
    label = f"#{seq} {step}" if seq is not None else step
    t = event.type
    if t == EventType.TASK_CREATED:
        return "[cyan]●[/] submitted"
    if t == EventType.TASK_STARTED:
        if event.decision == "lease_expired":
            return (
                f"[yellow]⟳[/] previous worker's lease expired: resumed{who} "
                f"(attempt {event.attempt}), replaying the step log"
            )
        if event.prior_status == "queued" and (event.attempt or 0) > 1:
            return f"[cyan]▶[/] resumed{who} (attempt {event.attempt}), replaying the step log"
        return f"[cyan]▶[/] started{who} (attempt {event.attempt})"
    if t == EventType.STEP_SUCCEEDED:
        if data.get("kind") in RECORDED_KINDS:
            return None
        tries = data.get("attempts") or 1
        retried = f" after {tries} attempts" if tries > 1 else ""
        return f"[green]✔[/] step {label}{retried}{who}"
    if t == EventType.STEP_RETRYING:
        delay = data.get("retry_in")
        when = f" in {delay:.2f}s" if isinstance(delay, int | float) else ""
        how = " (durable wait)" if event.decision == "retry_backoff" else ""
        return (
            f"[yellow]↻[/] step {label}: attempt {data.get('attempts', '?')} failed: "
            f"{_raised(event)}{_classified(data)}, will retry{when}{how}{who}"
        )
    if t == EventType.STEP_FAILED:
        reason = data.get("reason")
        why = f", gave up ({escape(str(reason).replace('_', ' '))})" if reason else ""
        return f"[red]✘[/] step {label} failed: {_raised(event)}{_classified(data)}{why}{who}"
    if t == EventType.TASK_WAITING:
        return f"[magenta]⏸[/] waiting ({escape(event.decision or '')}), worker slot freed"
    if t == EventType.TASK_QUEUED:
        return f"[cyan]●[/] queued again ({escape(event.decision or '')})"
    if t == EventType.TASK_RELEASED:
        return f"[yellow]⏏[/] handed back to the queue{who} ({escape(event.decision or '')})"
    if t == EventType.TASK_CANCEL_REQUESTED:
        return "[bright_black]■[/] cancellation requested"
    if t in (EventType.TASK_SUCCEEDED, EventType.TASK_FAILED, EventType.TASK_CANCELLED):
        status = t.split(".", 1)[1]
        extra = ""
        if event.error_class:
            where = f" in step {step}" if event.step else ""
            message = escape(str(data.get("message", "")))
            extra = f": {escape(event.error_class)}{where}: {message}"
        return f"{styled_status(status)}{extra}"
    return f"[dim]{escape(t)}[/]"


def _raised(event: Event) -> str:
    message = (event.data or {}).get("message")
    text = event.error_class or "error"
    return escape(f"{text}: {message}" if message else text)


def _classified(data: dict[str, object]) -> str:
    if "transient" not in data:  # an event written before the payload said so
        return ""
    verdict = "transient" if data["transient"] else "permanent"
    return f" [dim]({verdict}, by {escape(str(data.get('classified_by', '?')))})[/]"


async def follow(
    app: Tether,
    task_id: str,
    tenant: str | None,
    on_event: Callable[[Event], None],
    on_poll: Callable[[Task], None] | None = None,
    poll: float = POLL_SECONDS,
) -> Task:
    """Feed the task's events to `on_event` in order until it ends; return the task."""
    await app.open()
    rounds = follow_task(app.store, app.clock, task_id, tenant, after=0, poll=poll)
    async with aclosing(rounds):
        async for update in rounds:
            for event in update.events:
                on_event(event)
            if update.ended:
                return update.task  # its final event was read after the terminal status
            if on_poll is not None:
                on_poll(update.task)
    raise AssertionError("follow_task stops only after an ended update")


@cli.command()
@handle_errors
def watch(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Follow a task live, step by step, until it ends (exit 0 only if it succeeded)."""
    env = resolve(ctx, app, database_url, tenant)
    tether_app = build_app(env)
    first_at: list[float] = []

    def on_event(event: Event) -> None:
        if not first_at:
            first_at.append(event.at)
        line = describe(event)
        if line is not None:
            console.print(f"[dim]{event.at - first_at[0]:8.2f}s[/]  {line}", highlight=False)

    async def go() -> Task:
        with console.status("waiting for progress...") as spinner:

            def on_poll(task: Task) -> None:
                spinner.update(
                    f"{task.status} · {task.steps_done} steps done"
                    + (f" · last: {task.current_step}" if task.current_step else "")
                )

            try:
                return await follow(tether_app, task_id, env.tenant, on_event, on_poll)
            finally:
                await tether_app.close()

    try:
        task = run(go())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if task.status == TaskStatus.SUCCEEDED:
        return
    raise typer.Exit(EXIT_CANCELLED if task.status == TaskStatus.CANCELLED else EXIT_ERROR)
