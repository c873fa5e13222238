"""Every attempt of every step keeps its error: type, message, bounded traceback, times,
classification and retry decision (ADR 62); the events carry the short form, and the
worker logs a task's failure at WARNING with the failing step's traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

import pytest

import flaky
from helpers import event_where
from tether import Context, RetryBudget, RetryPolicy, StepFailed, TaskStatus, Tether, Transient
from tether.models import RetryDecision


async def test_each_attempt_keeps_its_error_classification_and_decision(
    make_app: Callable[[], Tether],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky.durable_backoffs_from(monkeypatch)
    app = make_app()
    flaky.register(app)
    caplog.set_level(logging.WARNING, logger="tether.run")
    task_id = await flaky.run_to_failure(app)

    (step,) = await app.steps(task_id)
    flaky.check_attempts(step)
    task = await app.get(task_id)
    assert task.error is not None and task.error.step == "parse" and task.error.permanent

    await event_where(app, task_id, lambda e: e.type == "task.failed")
    events = await app.store.list_events(task_id=task_id)
    assert [e.type for e in events if e.type.startswith("step.")] == [
        "step.retrying",
        "step.retrying",
        "step.failed",
    ]
    assert any(e.type == "task.waiting" and e.decision == "retry_backoff" for e in events)
    retried, waited, failed = (e for e in events if e.type.startswith("step."))
    assert (retried.error_class, retried.decision) == ("ConnectionResetError", "retry")
    assert retried.data is not None
    assert {k: retried.data[k] for k in ("message", "transient", "classified_by")} == {
        "message": "connection reset by peer",
        "transient": True,
        "classified_by": "network or timeout error",
    }
    assert (retried.data["reason"], retried.data["retry_in"]) == ("backoff", 0.01)
    assert (waited.error_class, waited.decision) == ("Transient", "retry_backoff")
    assert waited.data is not None
    assert (waited.data["reason"], waited.data["retry_in"]) == ("retry_after", flaky.RETRY_AFTER)
    assert (failed.error_class, failed.decision) == ("ValueError", "give_up")
    assert failed.data is not None
    assert failed.data["transient"] is False and failed.data["classified_by"] == "default"
    assert failed.data["reason"] == "permanent" and "retry_in" not in failed.data
    assert failed.data["message"] == step.attempt_errors[-1].message
    for event in (retried, waited, failed):
        assert "traceback" not in (event.data or {})  # it stays in the step record

    (record,) = [r for r in caplog.records if r.name == "tether.run"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert f"task {task_id} (workflow ingest v1, attempt 2) failed in step 'parse'" in message
    assert "Traceback (most recent call last)" in message and "_parse_deeper" in message
    assert (record.task_id, record.workflow, record.attempt) == (task_id, "ingest", 2)  # type: ignore[attr-defined]
    assert record.traceback == step.attempt_errors[-1].traceback  # type: ignore[attr-defined]


async def test_why_a_step_gave_up(make_app: Callable[[], Tether]) -> None:
    """Each rule that ends a step's retries is named: the attempts, the task's retry
    budget (count and wall time), `RetryPolicy.non_retryable`, a user classifier."""
    app = make_app()
    app.classifiers.append(quota_is_transient)
    fast = RetryPolicy(max_attempts=2, initial_interval=0, jitter=0)

    async def down() -> None:
        await asyncio.sleep(0.005)  # so that a 1 ms wall-time budget is surely spent
        raise ConnectionRefusedError("refused")

    async def over_quota() -> None:
        raise KeyError("quota")  # transient by the classifier, but non-retryable here

    @app.workflow("attempts")
    async def attempts(ctx: Context) -> None:
        await ctx.step("down", down, retry=fast)

    @app.workflow("budget", budget=RetryBudget(max_retries=0))
    async def budget(ctx: Context) -> None:
        await ctx.step("down", down, retry=fast)

    @app.workflow("elapsed", budget=RetryBudget(max_elapsed=timedelta(milliseconds=1)))
    async def elapsed(ctx: Context) -> None:
        await ctx.step("down", down, retry=fast)

    @app.workflow("non_retryable")
    async def non_retryable(ctx: Context) -> None:
        policy = RetryPolicy(max_attempts=3, initial_interval=0, non_retryable=(KeyError,))
        await ctx.step("quota", over_quota, retry=policy)

    @app.workflow("classified")
    async def classified(ctx: Context) -> str:
        try:
            await ctx.step("quota", over_quota, retry=fast)
        except StepFailed as exc:  # the workflow sees the same verdict and traceback
            assert exc.traceback is not None and "over_quota" in exc.traceback
            assert not exc.permanent
            raise
        return "unreachable"

    expected = {
        "attempts": [
            (1, "network or timeout error", RetryDecision.RETRY, "backoff"),
            (2, "network or timeout error", RetryDecision.GIVE_UP, "attempts_exhausted"),
        ],
        "budget": [
            (1, "network or timeout error", RetryDecision.GIVE_UP, "retry_budget_exhausted")
        ],
        "elapsed": [
            (1, "network or timeout error", RetryDecision.GIVE_UP, "elapsed_budget_exhausted")
        ],
        "non_retryable": [(1, "RetryPolicy.non_retryable", RetryDecision.GIVE_UP, "permanent")],
        "classified": [
            (1, "classifier quota_is_transient", RetryDecision.RETRY, "backoff"),
            (2, "classifier quota_is_transient", RetryDecision.GIVE_UP, "attempts_exhausted"),
        ],
    }
    async with app.worker(poll_interval=0.05):
        handles = {name: await app.submit(name) for name in expected}
        for name, handle in handles.items():
            task = await handle.wait(timeout=10)
            assert task.status == TaskStatus.FAILED, (name, task)
            (step,) = await app.steps(handle.id)
            got = [(a.attempt, a.classified_by, a.decision, a.reason) for a in step.attempt_errors]
            assert got == expected[name], name
            assert step.error is not None
            assert step.error.permanent == (name == "non_retryable"), name
            last = step.attempt_errors[-1]
            assert last.retry_in is None and last.traceback is not None


def quota_is_transient(exc: BaseException) -> bool | None:
    return True if "quota" in str(exc) else None


async def test_a_step_that_succeeds_after_retries_keeps_its_failed_attempts(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    calls: list[int] = []

    async def shaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Transient(f"try {len(calls)}")
        return "ok"

    async def plain() -> str:
        return "fine"

    @app.workflow("shaky")
    async def shaky_wf(ctx: Context) -> str:
        await ctx.step("plain", plain)
        return await ctx.step(
            "shaky", shaky, retry=RetryPolicy(max_attempts=3, initial_interval=0, jitter=0)
        )

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("shaky")
        assert await handle.result(timeout=10) == "ok"
    first, second = await app.steps(handle.id)
    assert first.attempt_errors == ()  # a step that never failed stores nothing more
    assert second.error is None and second.attempts == 3
    assert [(a.attempt, a.message, a.decision) for a in second.attempt_errors] == [
        (1, "try 1", RetryDecision.RETRY),
        (2, "try 2", RetryDecision.RETRY),
    ]
    rerun = await app.rerun(handle.id)  # a re-run copies finished steps, history too
    copied = await app.steps(rerun.id)
    assert [s.attempt_errors for s in copied] == [(), second.attempt_errors]


def _sync_parse(doc: str) -> str:
    raise ValueError(f"cannot parse {doc}")


async def test_tracebacks_start_at_the_users_code_and_a_workflow_error_is_logged(
    make_app: Callable[[], Tether], caplog: pytest.LogCaptureFixture
) -> None:
    """A sync step's traceback (run on the step threads) and a workflow's own error
    start at the user's frames, not at the engine's that called them."""
    app = make_app()

    @app.workflow("sync_step")
    async def sync_step(ctx: Context) -> str:
        return await ctx.step("parse", _sync_parse, "doc", retry=RetryPolicy(max_attempts=1))

    @app.workflow("buggy")
    async def buggy(ctx: Context) -> None:
        {}["missing"]  # a bug in the workflow itself, outside any step

    caplog.set_level(logging.WARNING, logger="tether.run")
    async with app.worker(poll_interval=0.05):
        step_task = await (await app.submit("sync_step")).wait(timeout=10)
        buggy_task = await (await app.submit("buggy")).wait(timeout=10)
    (step,) = await app.steps(step_task.id)
    (attempt,) = step.attempt_errors
    assert attempt.traceback is not None
    frames = [line for line in attempt.traceback.splitlines() if line.startswith('  File "')]
    assert len(frames) == 1 and frames[0].endswith(", in _sync_parse"), attempt.traceback

    assert buggy_task.status == TaskStatus.FAILED and buggy_task.error is not None
    assert (buggy_task.error.type, buggy_task.error.step) == ("KeyError", None)
    (logged,) = [r for r in caplog.records if getattr(r, "task_id", None) == buggy_task.id]
    assert logged.levelno == logging.WARNING
    text = logged.getMessage()
    assert "failed: KeyError: 'missing' [workflow_error]" in text
    frames = [line for line in text.splitlines() if line.startswith('  File "')]
    assert len(frames) == 1 and frames[0].endswith(", in buggy"), text


async def test_a_step_raising_type_error_is_a_failed_attempt_of_that_step(
    make_app: Callable[[], Tether],
) -> None:
    """A `TypeError` from the step itself (not from storing its result) is recorded like
    any failure: it used to escape unrecorded and fail the task as a workflow error."""
    app = make_app()

    async def adds() -> int:
        return 1 + "1"  # type: ignore[operator]

    async def not_json() -> object:
        return object()

    @app.workflow("type_error")
    async def type_error(ctx: Context) -> int:
        return await ctx.step("adds", adds)

    @app.workflow("not_json")
    async def not_json_wf(ctx: Context) -> object:
        return await ctx.step("not_json", not_json)

    async with app.worker(poll_interval=0.05):
        failed = await (await app.submit("type_error")).wait(timeout=10)
        unstorable = await (await app.submit("not_json")).wait(timeout=10)
    assert failed.error is not None and failed.error.step == "adds"
    (step,) = await app.steps(failed.id)
    (attempt,) = step.attempt_errors
    assert (attempt.type, attempt.classified_by, attempt.reason) == (
        "TypeError",
        "default",
        "permanent",
    )
    assert unstorable.error is not None and unstorable.error.type == "UnserializableResult"
    (step,) = await app.steps(unstorable.id)
    (attempt,) = step.attempt_errors
    assert (attempt.classified_by, attempt.decision) == ("Permanent", RetryDecision.GIVE_UP)
    assert attempt.traceback is not None and "TypeError" in attempt.traceback  # the cause
