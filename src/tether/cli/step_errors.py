"""`tether status ID --steps`: each step's failed attempts, with their errors.

Every failed attempt of a step is kept on its record (`StepRecord.attempt_errors`,
ADR 62): what it raised, its bounded traceback, when, how it was classified and what
was decided. This module shows them, for people (Rich) and for scripts (`--json`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape

from tether.cli.common import console, iso, local_time
from tether.models import AttemptError, RetryDecision, StepRecord

HEADLINE_CHARS = 100
"""An attempt's line shows this much of its message."""

_DECISIONS = {
    RetryDecision.RETRY: "retry in {delay} ({reason})",
    RetryDecision.RETRY_BACKOFF: "retry in {delay} as a durable retry_backoff wait ({reason})",
    RetryDecision.GIVE_UP: "give up ({reason})",
}


def attempt_json(a: AttemptError) -> dict[str, Any]:
    """An attempt's error as `--json` prints it (times as ISO-8601 UTC)."""
    return {**a.to_json(), "started_at": iso(a.started_at), "finished_at": iso(a.finished_at)}


def step_json(s: StepRecord) -> dict[str, Any]:
    """A step-log entry as `status --json --steps` prints it."""
    return {
        "seq": s.seq,
        "name": s.name,
        "kind": str(s.kind),
        "status": str(s.status),
        "attempts": s.attempts,
        "result": s.result,
        "error": None if s.error is None else s.error.to_json(),
        "started_at": iso(s.started_at),
        "finished_at": iso(s.finished_at),
        "wake_at": iso(s.wake_at),
        "meta": s.meta,
        "attempt_errors": [attempt_json(a) for a in s.attempt_errors],
    }


def decision_text(a: AttemptError) -> str:
    """What was decided after `a`, and why, in words."""
    delay = "-" if a.retry_in is None else f"{a.retry_in:.2f}s"
    reason = a.reason.replace("_", " ")
    return _DECISIONS[a.decision].format(delay=delay, reason=reason)


def print_attempt_errors(steps: Sequence[StepRecord]) -> None:
    """Each step that had failed attempts, then each attempt: when, what it raised, its
    classification and the decision, and its traceback."""
    for s in steps:
        if not s.attempt_errors:
            continue
        console.print(
            f"\n[bold]step #{s.seq} {escape(s.name)}[/] ({s.status}, {s.attempts} attempts)",
            highlight=False,
        )
        shown = [a.attempt for a in s.attempt_errors]
        for prior, a in zip([0, *shown], s.attempt_errors, strict=False):
            if a.attempt > prior + 1:
                console.print(f"  [dim]attempts {prior + 1}-{a.attempt - 1} not kept[/]")
            verdict = "transient" if a.transient else "permanent"
            took = (
                f" ({a.finished_at - a.started_at:.2f}s)"
                if a.started_at is not None and a.finished_at is not None
                else ""
            )
            console.print(
                f"  attempt {a.attempt}  {local_time(a.started_at)}{took}  "
                f"[red]{escape(a.type)}: {escape(_headline(a.message))}[/]",
                highlight=False,
            )
            console.print(
                f"    {verdict} (by {escape(a.classified_by)}) → {escape(decision_text(a))}",
                highlight=False,
            )
            if a.traceback:
                for line in a.traceback.rstrip().splitlines():
                    console.print(f"    [dim]{escape(line)}[/]", highlight=False, soft_wrap=True)


def _headline(message: str) -> str:
    """The message's first line, short: the traceback below ends with all of it."""
    lines = message.splitlines() or [""]
    first = lines[0]
    if len(first) > HEADLINE_CHARS:
        return first[: HEADLINE_CHARS - 1] + "…"
    return first + (" …" if len(lines) > 1 else "")


def failed_attempts_hint(task_id: str, steps: Sequence[StepRecord]) -> str | None:
    """A line pointing at `--steps` when some step had failed attempts."""
    failed = sum(len(s.attempt_errors) for s in steps)
    if not failed:
        return None
    return (
        f"[dim]{failed} failed attempt{'s' if failed > 1 else ''}; their errors and "
        f"tracebacks: tether status {task_id} --steps[/]"
    )
