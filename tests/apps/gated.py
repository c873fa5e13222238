"""Test app for the flow-control process tests: steps of a limited integration (`crm`,
at most 2 running at once; `solo`, at most 1) and of one behind a circuit breaker
(`flaky`: 3 transient failures in a row open it for 3 s). Every call is recorded in a
side file (`apps.crashy.record`: start and end, with `time.monotonic()` and the wall
clock), so the tests can prove what ran when, across processes."""

from __future__ import annotations

import os
import time

from apps.crashy import record
from tether import Context, RetryPolicy, Tether, Transient

app = Tether()
app.step_limit("crm", max_running=2)
app.step_limit("solo", max_running=1)
app.breaker("flaky", failures=3, cool_down=3)

ONCE = RetryPolicy(max_attempts=1)


def _call(log: str, hold: float) -> None:
    record(log, "start", wall=time.time())
    time.sleep(hold)
    record(log, "end", wall=time.time())


@app.step(integration="crm")
def crm_call(log: str, hold: float) -> str:
    _call(log, hold)
    return "saved"


@app.workflow("limited")
async def limited(ctx: Context, log: str, hold: float) -> str:
    return await crm_call(log, hold)


@app.step(integration="solo")
def solo_call(log: str, hold: float, stall_on: str) -> str:
    """Holds its slot for ever on the worker `stall_on` (until that worker is killed)."""
    _call(log, 3600 if os.environ.get("TETHER_TEST_WORKER") == stall_on else hold)
    return "done"


@app.workflow("solo")
async def solo(ctx: Context, log: str, hold: float, stall_on: str = "") -> str:
    return await solo_call(log, hold, stall_on)


@app.step(integration="flaky", retry=ONCE)
def flaky_call(log: str, up: str, hold: float) -> str:
    """Fails (transiently) unless the file `up` exists."""
    _call(log, hold)
    if not os.path.exists(up):
        raise Transient("flaky is down")
    return "ok"


@app.workflow("flaky", retry=ONCE)
async def flaky(ctx: Context, log: str, up: str, hold: float) -> str:
    return await flaky_call(log, up, hold)
