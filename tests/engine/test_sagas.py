"""Sagas (ADR 83): a failing, cancelled or operator-compensated task undoes its completed
steps, latest first, each compensation once, as durable steps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from helpers import all_events
from tether import (
    Context,
    InvalidTransition,
    Permanent,
    RetryPolicy,
    TaskPhase,
    TaskStatus,
    Tether,
    Transient,
    UnknownStep,
)
from tether.models import StepKind


def _booking_app(make_app: Callable[[], Tether], journal: list[str], fail_at: str | None) -> Tether:
    """A trip booking: flight, hotel, car (each undone by its own step), then payment."""
    app = make_app()

    @app.step
    def cancel_flight(booking: dict[str, Any]) -> None:
        journal.append(f"undo flight {booking['ref']}")

    @app.step
    def cancel_hotel(booking: dict[str, Any]) -> None:
        journal.append(f"undo hotel {booking['ref']}")

    @app.step
    async def cancel_car(booking: dict[str, Any]) -> None:
        journal.append(f"undo car {booking['ref']}")

    def book(kind: str) -> dict[str, Any]:
        journal.append(f"book {kind}")
        if kind == fail_at:
            raise Permanent(f"{kind} declined")
        return {"ref": f"{kind}-1"}

    @app.step(compensate=cancel_hotel)
    def book_hotel() -> dict[str, Any]:
        return book("hotel")

    @app.workflow("trip")
    async def trip(ctx: Context) -> str:
        await ctx.step("book_flight", book, "flight", compensate=cancel_flight)
        await book_hotel()
        await ctx.step("book_car", book, "car", compensate="cancel_car")
        await ctx.step("log", journal.append, "logged")  # no compensation
        await ctx.step("pay", book, "pay")
        return "booked"

    return app


async def test_a_failing_fourth_step_undoes_the_first_three_in_reverse_once_each(
    make_app: Callable[[], Tether],
) -> None:
    journal: list[str] = []
    app = _booking_app(make_app, journal, fail_at="pay")
    async with app.worker(poll_interval=0.05):
        handle = await app.submit("trip")
        task = await handle.wait(timeout=10)
    assert task.status == TaskStatus.FAILED and task.phase == TaskPhase.COMPENSATION
    assert journal == [
        "book flight",
        "book hotel",
        "book car",
        "logged",
        "book pay",
        "undo car car-1",
        "undo hotel hotel-1",
        "undo flight flight-1",
    ]
    assert task.error is not None
    assert (task.error.type, task.error.step) == ("Permanent", "pay")
    assert task.error.compensated == ["book_car", "book_hotel", "book_flight"]
    steps = await app.steps(handle.id)
    kinds = [(s.kind, s.name) for s in steps]
    assert kinds[-4:] == [
        (StepKind.COMPENSATING, "compensating"),
        (StepKind.COMPENSATION, "cancel_car"),
        (StepKind.COMPENSATION, "cancel_hotel"),
        (StepKind.COMPENSATION, "cancel_flight"),
    ]
    assert [s.meta["compensates"] for s in steps[-3:]] == [3, 2, 1]
    failed = [e for e in await all_events(app.store, handle.id) if e.type == "task.failed"]
    assert len(failed) == 1 and failed[0].decision == "step_failed_permanent"


async def test_a_success_runs_no_compensation(make_app: Callable[[], Tether]) -> None:
    journal: list[str] = []
    app = _booking_app(make_app, journal, fail_at=None)
    async with app.worker(poll_interval=0.05):
        handle = await app.submit("trip")
        assert await handle.result(timeout=10) == "booked"
    assert not [j for j in journal if j.startswith("undo")]
    assert (await app.get(handle.id)).phase == TaskPhase.EXECUTION


async def test_a_compensation_retries_and_a_failed_one_stops_the_saga(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    tries: list[str] = []

    @app.step(retry=RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=0))
    def release(ref: str) -> None:
        tries.append(f"release {ref}")
        if ref == "a" and len([t for t in tries if t == "release a"]) < 2:
            raise Transient("try again")
        if ref == "b":
            raise Permanent("cannot release b")

    @app.workflow("two")
    async def two(ctx: Context) -> None:
        await ctx.step("take_a", lambda: "a", compensate=release)
        await ctx.step("take_b", lambda: "b", compensate=release)
        await ctx.step("boom", _raise)

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("two")
        task = await handle.wait(timeout=10)
    assert tries == ["release b"], "b is undone first; its permanent failure stops the saga"
    assert task.status == TaskStatus.FAILED and task.error is not None
    assert task.error.type == "CompensationFailed" and task.error.step == "release"
    assert "cannot release b" in task.error.message and "boom" in task.error.message
    assert task.error.compensated == []
    ended = [e for e in await all_events(app.store, handle.id) if e.type == "task.failed"]
    assert [e.decision for e in ended] == ["compensation_failed"]


def _raise() -> None:
    raise Permanent("boom")


async def test_cancel_with_compensation_undoes_a_waiting_task(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    undone: list[str] = []

    @app.step
    def unreserve(seat: str) -> None:
        undone.append(seat)

    @app.workflow("reserve")
    async def reserve(ctx: Context) -> None:
        await ctx.step("reserve", lambda: "12A", compensate=unreserve)
        await ctx.wait_for_signal("go")

    async with app.worker(poll_interval=0.05):
        waiting = await app.submit("reserve")
        plain = await app.submit("reserve")
        for handle in (waiting, plain):
            await _until(app, handle.id, lambda t: t.status == TaskStatus.WAITING)
        queued = await app.cancel(waiting.id, compensate=True, by="ops")
        assert queued.status == TaskStatus.QUEUED and queued.phase == TaskPhase.COMPENSATION
        task = await waiting.wait(timeout=10)
        cancelled = await app.cancel(plain.id, by="ops")
    assert task.status == TaskStatus.CANCELLED and undone == ["12A"]
    assert task.error is not None and task.error.compensated == ["reserve"]
    assert cancelled.status == TaskStatus.CANCELLED and undone == ["12A"], "only if asked"


async def test_cancel_with_compensation_of_a_running_task(make_app: Callable[[], Tether]) -> None:
    app = make_app()
    undone: list[str] = []
    started = asyncio.Event()

    @app.step
    async def unreserve(seat: str) -> None:
        undone.append(seat)

    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    @app.workflow("reserve")
    async def reserve(ctx: Context) -> None:
        await ctx.step("reserve", lambda: "12A", compensate=unreserve)
        await ctx.step("forever", forever)

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("reserve")
        await asyncio.wait_for(started.wait(), 10)
        await app.cancel(handle.id, compensate=True)
        task = await handle.wait(timeout=10)
    assert task.status == TaskStatus.CANCELLED and undone == ["12A"]


async def test_an_operator_compensates_a_failed_task_by_a_fork(
    make_app: Callable[[], Tether],
) -> None:
    journal: list[str] = []
    app = _booking_app(make_app, journal, fail_at="pay")

    @app.workflow("fine")
    async def fine(ctx: Context) -> None:
        await ctx.wait_for_signal("go")

    async with app.worker(poll_interval=0.05):
        failed = await (await app.submit("trip")).wait(timeout=10)
        journal.clear()
        again = await app.compensate(failed.id, created_by="ops")
        task = await again.wait(timeout=10)
        assert journal == [], "what the original undid is not undone again"
        other = await app.submit("fine")
        with pytest.raises(InvalidTransition, match="only failed or cancelled"):
            await app.compensate(other.id)  # not ended
        await app.signal(other.id, "go")
        assert (await other.wait(timeout=10)).status == TaskStatus.SUCCEEDED
        with pytest.raises(InvalidTransition, match="only failed or cancelled"):
            await app.compensate(other.id)
    assert task.status == TaskStatus.SUCCEEDED and task.forked_from == failed.id
    assert task.phase == TaskPhase.COMPENSATION and task.error is None
    undone = ["book_car", "book_hotel", "book_flight"]
    assert task.result == {"compensated": undone, "of": failed.id}


async def test_an_operator_compensates_a_task_that_had_not(make_app: Callable[[], Tether]) -> None:
    """A cancelled task (cancelled without compensation) is undone by the fork."""
    app = make_app()
    undone: list[str] = []

    @app.step
    def unreserve(seat: str) -> None:
        undone.append(seat)

    @app.workflow("reserve")
    async def reserve(ctx: Context) -> None:
        await ctx.step("reserve", lambda: "12A", compensate=unreserve)
        await ctx.wait_for_signal("go")

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("reserve")
        await _until(app, handle.id, lambda t: t.status == TaskStatus.WAITING)
        await app.cancel(handle.id)
        fork = await app.compensate(handle.id)
        task = await fork.wait(timeout=10)
    assert undone == ["12A"] and task.status == TaskStatus.SUCCEEDED
    assert task.result == {"compensated": ["reserve"], "of": handle.id}


async def test_an_unknown_compensation_fails_at_the_call(make_app: Callable[[], Tether]) -> None:
    app = make_app()

    @app.workflow("bad")
    async def bad(ctx: Context) -> None:
        await ctx.step("x", lambda: 1, compensate="nope")

    async with app.worker(poll_interval=0.05):
        task = await (await app.submit("bad")).wait(timeout=10)
    assert task.status == TaskStatus.FAILED and task.error is not None
    assert task.error.type == UnknownStep.__name__
    with pytest.raises(TypeError, match="compensate="):
        app.step(compensate=lambda r: None)  # type: ignore[call-overload]


async def _until(app: Tether, task_id: str, ok: Callable[[Any], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while not ok(await app.get(task_id)):
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_a_long_compensation_backoff_suspends_and_a_cancel_does_not_stop_it(
    make_app: Callable[[], Tether],
) -> None:
    """A compensation in a long backoff parks the task (its slot freed, phase
    `compensation`); a cancellation then is only noted: the saga finishes undoing and
    the task ends as its cause says (failed)."""
    app = make_app()
    tries: list[str] = []

    @app.step
    def release(ref: str) -> None:
        tries.append(ref)
        if len(tries) == 1:
            raise Transient("the provider is busy", retry_after=2.5)

    @app.workflow("one")
    async def one(ctx: Context) -> None:
        await ctx.step("take", lambda: "a", compensate=release)
        await ctx.step("boom", _raise)

    async with app.worker(poll_interval=0.05):
        handle = await app.submit("one")
        await _until(app, handle.id, lambda t: t.status == TaskStatus.WAITING)
        parked = await app.get(handle.id)
        assert (parked.phase, str(parked.wait_reason)) == (TaskPhase.COMPENSATION, "retry_backoff")
        noted = await app.cancel(handle.id, by="ops")
        assert noted.status == TaskStatus.WAITING and noted.cancel_requested
        task = await handle.wait(timeout=15)
    assert tries == ["a", "a"]
    assert task.status == TaskStatus.FAILED and task.error is not None
    assert (task.error.type, task.error.compensated) == ("Permanent", ["take"])
    (retrying,) = [e for e in await all_events(app.store, handle.id) if e.type == "step.retrying"]
    assert retrying.data is not None and retrying.step == "release"
    assert (retrying.data["compensates"], retrying.data["step"]) == (1, "take"), "with its meta"


async def test_a_rerun_of_a_compensated_task_runs_the_undone_steps_again(
    make_app: Callable[[], Tether],
) -> None:
    """Their effects are gone: a re-run (or a dead-letter retry) reuses only the steps
    before the first one undone, and none of the compensation records."""
    journal: list[str] = []
    app = _booking_app(make_app, journal, fail_at="pay")
    async with app.worker(poll_interval=0.05):
        failed = await (await app.submit("trip")).wait(timeout=10)
        journal.clear()
        again = await (await app.rerun(failed.id)).wait(timeout=10)
    assert journal[:4] == ["book flight", "book hotel", "book car", "logged"]
    assert again.status == TaskStatus.FAILED and again.error is not None
    assert again.error.compensated == ["book_car", "book_hotel", "book_flight"]
