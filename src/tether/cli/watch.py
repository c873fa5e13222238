"""`tether watch ID`: follow a task step by step until it ends.

Progress comes from the task's append-only event log: locally followed with
`tether.follow.follow_task` (read every ~200 ms, and at once when this process's hub
reports a change, so it works for tasks run by workers in other processes), with
`--server` from the server's event stream. Exit status: 0 succeeded, 1 failed,
3 cancelled.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from tether.cli import refs
from tether.cli.common import EXIT_CANCELLED, EXIT_ERROR, console, handle_errors, styled_status
from tether.cli.operations import Operations, run_with
from tether.cli.options import resolve, takes_global_options
from tether.cli.root import cli
from tether.models import Event, EventType, Task, TaskStatus

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
    if t == EventType.APPROVAL_REQUESTED:
        needs = data.get("required")
        who = f", {needs} approver{'s' if needs != 1 else ''}" if needs else ""
        return (
            f"[magenta]◆[/] approval {escape(refs.short(str(data.get('approval_id'))))} "
            f"requested (risk {escape(str(data.get('risk', '?')))}{who})"
        )
    if t == EventType.APPROVAL_DECISION:
        verb = "approves" if event.decision == "approve" else "rejects"
        return f"[magenta]◆[/] {escape(str(data.get('reviewer', '?')))} {verb}"
    if t == EventType.APPROVAL_DECIDED:
        approval = refs.short(str(data.get("approval_id") or "?"))
        outcome = str(data.get("status") or event.decision or "?")
        return f"[magenta]◆[/] approval {escape(approval)} {styled_status(outcome)}"
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


@cli.command()
@takes_global_options
@handle_errors
def watch(
    ctx: typer.Context,
    task_ref: Annotated[
        str, typer.Argument(metavar="ID", help="Task id (or a unique beginning or end of it).")
    ],
) -> None:
    """Follow a task live, step by step, until it ends (exit 0 only if it succeeded)."""
    env = resolve(ctx)
    first_at: list[float] = []
    done: list[str] = []

    async def go(ops: Operations) -> Task:
        task = await refs.find_task(ops, task_ref)
        with console.status(f"following {task.id} ...") as spinner:

            def on_event(event: Event) -> None:
                if not first_at:
                    first_at.append(event.at)
                line = describe(event)
                if line is not None:
                    console.print(
                        f"[dim]{event.at - first_at[0]:8.2f}s[/]  {line}", highlight=False
                    )
                if event.type == EventType.STEP_SUCCEEDED and event.step:
                    done.append(event.step)
                spinner.update(f"{len(done)} steps done" + (f" · last: {done[-1]}" if done else ""))

            return await ops.follow(task.id, on_event)

    try:
        task = run_with(env, go)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if task.status == TaskStatus.SUCCEEDED:
        return
    raise typer.Exit(EXIT_CANCELLED if task.status == TaskStatus.CANCELLED else EXIT_ERROR)
