"""Short ids: what tables show, and how commands find what a short id names.

Ids are UUIDv7: time-ordered, so ids made together share their beginning (tasks of one
batch differ only after the 27th character) and their end is random. A table therefore
shows each id's end, its last group of 12 characters (longer only when two shown ids
share it), and every command accepts a full id or any unique beginning or end of one, of
at least `MIN_SHORT_ID` characters. An id that matches more than one thing is refused
with the candidates listed, never guessed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tether.cli.common import EXIT_USAGE, CLIError
from tether.cli.operations import Operations
from tether.cli.options import MIN_SHORT_ID
from tether.errors import TaskNotFound
from tether.models import Approval, Task

SHORT = 12
"""Characters of an id that tables show: the UUID's last group."""
CANDIDATES = 5
"""Candidates listed when an id is ambiguous."""


def short_ids(ids: Iterable[str], width: int = SHORT) -> dict[str, str]:
    """Each id's last `width` characters, or more where two of `ids` share them."""
    unique = list(dict.fromkeys(ids))
    out: dict[str, str] = {}
    pending = unique
    n = width
    while pending:
        counts = Counter(i[-n:] for i in unique)
        rest = []
        for i in pending:
            if counts[i[-n:]] == 1 or n >= len(i):
                out[i] = i[-n:]
            else:
                rest.append(i)
        pending, n = rest, n + 1
    return out


def short(task_or_id: str) -> str:
    """One id as a table shows it when nothing else is shown beside it."""
    return task_or_id[-SHORT:]


def _normalized(ref: str) -> str:
    text = ref.strip().lower()  # ids are lower-case
    if len(text) < MIN_SHORT_ID:
        raise CLIError(
            f"id {ref!r} is too short: give at least {MIN_SHORT_ID} characters of it",
            EXIT_USAGE,
        )
    return text


async def find_task(ops: Operations, ref: str) -> Task:
    """The one task whose id is `ref`, or begins or ends with it."""
    text = _normalized(ref)
    found = await ops.tasks(short_id=text, limit=CANDIDATES + 1)
    if not found:
        raise TaskNotFound(ref)
    exact = [t for t in found if t.id == text]
    if exact or len(found) == 1:
        return (exact or found)[0]
    raise CLIError(
        f"{ref!r} matches {_count(found)} tasks: "
        + ", ".join(f"{t.id} ({t.workflow}, {t.status})" for t in found[:CANDIDATES])
        + "; give more of the id",
        EXIT_USAGE,
    )


async def find_approval(ops: Operations, ref: str) -> Approval:
    """The approval `ref` names: an approval id (any status), the beginning or end of a
    pending approval's id, or a task (likewise) with exactly one pending approval; else
    the one closed approval whose id begins or ends with `ref`."""
    text = _normalized(ref)
    named = await ops.approvals(short_id=text, limit=CANDIDATES + 1)
    for a in named:
        if a.id == text:
            return a
    candidates = {a.id: a for a in named if a.status == "pending"}
    tasks = await ops.tasks(short_id=text, limit=CANDIDATES + 1)
    exact_task = next((t for t in tasks if t.id == text), None)
    if exact_task is not None:
        tasks = [exact_task]
    elif len(tasks) > CANDIDATES:
        raise CLIError(
            f"{ref!r} matches more than {CANDIDATES} tasks: give more of the id", EXIT_USAGE
        )
    for task in tasks:
        for a in await ops.approvals(task_id=task.id, status="pending", limit=CANDIDATES + 1):
            candidates.setdefault(a.id, a)
    if len(candidates) == 1:
        return next(iter(candidates.values()))
    if not candidates:
        if len(named) == 1:  # a closed one: deciding it reports the outcome that stands
            return named[0]
        if len(tasks) == 1:
            raise CLIError(f"task {tasks[0].id} has no pending approval")
        if named:
            listed = ", ".join(_described(a) for a in named[:CANDIDATES])
            raise CLIError(
                f"{ref!r} matches {_count(named)} closed approvals: {listed}", EXIT_USAGE
            )
        raise CLIError(f"approval not found: {ref}")
    listed = ", ".join(_described(a) for a in list(candidates.values())[:CANDIDATES])
    owners = {a.task_id for a in candidates.values()}
    if len(owners) == 1 and len(tasks) == 1:
        raise CLIError(
            f"task {tasks[0].id} has {_count(candidates)} pending approvals: {listed}; "
            "pass the approval's id",
            EXIT_USAGE,
        )
    raise CLIError(f"{ref!r} matches {_count(candidates)} pending approvals: {listed}", EXIT_USAGE)


def _described(a: Approval) -> str:
    summary = str((a.request or {}).get("summary") or "")
    summary = summary if len(summary) <= 40 else summary[:39] + "…"
    return f"{a.id} (task {short(a.task_id)}, {summary!r})"


def _count(items: list[Task] | list[Approval] | dict[str, Approval]) -> str:
    return f"{len(items)}+" if len(items) > CANDIDATES else str(len(items))
