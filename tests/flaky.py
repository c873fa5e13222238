"""A step that fails transiently twice, then permanently: the scenario the engine, API and
CLI tests of attempt errors share (ADR 62).

Attempt 1 raises `ConnectionResetError` (transient by the built-in network rule; retried
in place after the policy's backoff); attempt 2 raises `Transient(retry_after=...)`
(retried after a durable `retry_backoff` wait, so attempt 3 runs in a new run of the
task, replayed from the log: the history must survive the store); attempt 3 raises a
`ValueError` deep in a call chain, with a long message (permanent by default; its
traceback and message are bounded).
"""

from __future__ import annotations

import re

import pytest

from tether import Context, RetryPolicy, TaskStatus, Tether, Transient, current_step
from tether.engine.run import steps as run_steps
from tether.failures import MESSAGE_CHARS, TRACEBACK_CHARS, TRACEBACK_FRAMES
from tether.models import RetryDecision, StepRecord

RETRY_AFTER = 0.3
"""Attempt 2's `Transient(retry_after=)`, longer than the patched inline maximum."""
DEPTH = TRACEBACK_FRAMES + 5
"""How deep attempt 3 raises: more frames than a traceback keeps."""
LONG = "bad record " + "x" * (2 * TRACEBACK_CHARS)
POLICY = RetryPolicy(max_attempts=5, initial_interval=0.01, jitter=0)


def durable_backoffs_from(monkeypatch: pytest.MonkeyPatch, seconds: float = 0.1) -> None:
    """Backoffs longer than `seconds` become durable `retry_backoff` waits (2 s outside
    tests), so a test sees one without waiting seconds for it."""
    monkeypatch.setattr(run_steps, "INLINE_BACKOFF_MAX", seconds)


def _parse_deeper(depth: int, doc: str) -> None:
    if depth == 0:
        raise ValueError(f"cannot parse {doc!r}: {LONG}")
    _parse_deeper(depth - 1, doc)


async def parse(doc: str) -> str:
    info = current_step()
    assert info is not None
    if info.attempt == 1:
        raise ConnectionResetError("connection reset by peer")
    if info.attempt == 2:
        raise Transient("provider busy", retry_after=RETRY_AFTER)
    _parse_deeper(DEPTH, doc)
    return doc


def register(app: Tether) -> None:
    """The workflow `ingest`: one step, `parse`, failing as the module says."""

    @app.workflow("ingest")
    async def ingest(ctx: Context, doc: str) -> str:
        return await ctx.step("parse", parse, doc, retry=POLICY)


async def run_to_failure(app: Tether, doc: str = "doc-1") -> str:
    """Submit `ingest` and run it on a worker of `app` until it fails; its task id."""
    async with app.worker(poll_interval=0.05):
        handle = await app.submit("ingest", doc)
        task = await handle.wait(timeout=20)
    assert task.status == TaskStatus.FAILED, task
    return handle.id


def check_attempts(step: StepRecord) -> None:
    """The step's record keeps each attempt's error, as the scenario made them."""
    assert step.name == "parse" and step.attempts == 3
    first, second, third = step.attempt_errors
    assert [a.attempt for a in step.attempt_errors] == [1, 2, 3]

    assert (first.type, first.message) == ("ConnectionResetError", "connection reset by peer")
    assert (first.transient, first.classified_by) == (True, "network or timeout error")
    assert (first.decision, first.reason, first.retry_in) == (RetryDecision.RETRY, "backoff", 0.01)

    assert (second.type, second.message) == ("Transient", "provider busy")
    assert (second.transient, second.classified_by) == (True, "Transient")
    assert (second.decision, second.reason) == (RetryDecision.RETRY_BACKOFF, "retry_after")
    assert second.retry_in == RETRY_AFTER

    assert third.type == "ValueError"
    assert third.message.startswith("cannot parse 'doc-1': bad record xxx")
    assert len(third.message) < MESSAGE_CHARS + 40 and third.message.endswith("characters cut)")
    assert (third.transient, third.classified_by) == (False, "default")
    assert (third.decision, third.reason, third.retry_in) == (
        RetryDecision.GIVE_UP,
        "permanent",
        None,
    )

    for a in step.attempt_errors:
        assert a.traceback is not None and "Traceback (most recent call last)" in a.traceback
        assert len(a.traceback) <= TRACEBACK_CHARS + 40
        assert a.started_at is not None and a.finished_at is not None
        assert a.started_at <= a.finished_at
    for early in (first, second):  # they start where the engine called the step
        assert early.traceback is not None
        assert early.traceback.splitlines()[1].endswith(", in parse"), early.traceback
    assert third.traceback is not None and "in _parse_deeper" in third.traceback
    assert re.match(r"\(\d+ earlier frames cut\)\n", third.traceback)  # over DEPTH frames
    assert "characters cut)" in third.traceback  # the long message, inside it too
    assert first.finished_at <= second.started_at  # type: ignore[operator]
    assert second.finished_at + RETRY_AFTER <= third.started_at + 0.05  # type: ignore[operator]

    assert step.error is not None and step.error.permanent
    assert (step.error.type, step.error.message) == (third.type, third.message)
