"""The step-gate seam (`tether.engine.gates`, ADR 87): a gate that holds a step parks
the task as `waiting` with the gate's reason until the hold's time, holding no slot;
the step then asks again and runs. Gates hear every attempt's outcome, with the
step's `integration`. On both backends, with the manual clock of `TestEnvironment`."""

from __future__ import annotations

from typing import Any

import pytest

from tether import Context, RetryPolicy, TaskStatus, Tether, Transient, WaitReason
from tether.engine.gates import Hold, StepCall
from tether.models import AttemptError
from tether.testing import TestEnvironment


class Turnstile:
    """Holds each step named `held` for 30 s the first time it is asked about it."""

    def __init__(self, app: Tether) -> None:
        self.app = app
        self.asked: list[tuple[str, int, str | None]] = []
        self.told: list[tuple[str, int, str | None, bool]] = []

    async def before(self, call: StepCall) -> Hold | None:
        first = not any(name == call.name for name, _, _ in self.asked)
        self.asked.append((call.name, call.attempt, call.integration))
        if call.name == "held" and first:
            return Hold(WaitReason.RATE_LIMIT, self.app.clock.now() + 30)
        return None

    async def after(
        self, call: StepCall, error: AttemptError | None, notes: dict[str, Any]
    ) -> None:
        self.told.append((call.name, call.attempt, call.integration, error is None))


async def test_a_held_step_waits_without_a_slot_then_runs(store_url: str) -> None:
    app = Tether(store_url)
    gate = Turnstile(app)
    app.step_gates.append(gate)
    runs: list[float] = []

    @app.step(integration="crm")
    def held() -> str:
        runs.append(app.clock.now())
        if len(runs) == 1:
            raise Transient("crm busy")
        return "written"

    @app.workflow("gated", retry=RetryPolicy(max_attempts=3, initial_interval=1, jitter=0))
    async def gated(ctx: Context) -> str:
        await ctx.step("free", lambda: 1)
        return await held()

    async with TestEnvironment(app, in_memory=False) as env:
        handle = await app.submit("gated")
        submitted = app.clock.now()
        await env.run_until_idle(skip_time=False)
        task = await app.get(handle.id)
        assert task.status == TaskStatus.WAITING
        assert task.wait_reason == WaitReason.RATE_LIMIT
        assert task.run_at == pytest.approx(submitted + 30)
        assert runs == []  # the held step never started
        await env.run_until_idle()
        assert await handle.result(timeout=5) == "written"
    assert runs[0] >= submitted + 30
    assert gate.told == [
        ("free", 1, None, True),
        ("held", 1, "crm", False),
        ("held", 2, "crm", True),
    ]
    steps = await app.steps(handle.id)
    assert steps[1].meta["integration"] == "crm"
