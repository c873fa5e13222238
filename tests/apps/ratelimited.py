"""Test app for the fleet-wide rate-limit tests: one workflow whose step calls the
rate-limited integration `crm` and appends when it ran (`time.time()`, the same clock
in every process of the machine) and on which worker to a side file."""

from __future__ import annotations

import json
import os
import time

from tether import Context, Tether, current_step

RATE = 10.0
"""Requests a second the `crm` bucket admits (a burst of one)."""

app = Tether()
app.rate_limit("crm", requests_per_minute=RATE * 60, burst_seconds=1 / RATE)


@app.step(integration="crm")
async def call_crm(log: str) -> None:
    info = current_step()
    line = {"task": info.task_id, "worker": os.environ.get("TETHER_TEST_WORKER"), "t": time.time()}
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


@app.workflow("limited")
async def limited(ctx: Context, log: str) -> None:
    await call_crm(log)
