"""A real PostgreSQL outage: the server (a private one: tests/pg_private.py) is stopped
for longer than the workers' lease and started again, while a step is in flight.

During the outage every request that needs the database answers 503 problem+json with
`Retry-After` (never 500) and `/readyz` says why; within 2 s of the server accepting
connections again requests succeed and the worker claims new work; the in-flight task
keeps its lease (its one attempt completes, its side effect lands once), and nothing
logs a traceback. Once with a worker process beside an API-only server, once with the
embedded workers of `tether server`."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.live import SECRET, LiveServer, auth, make_settings
from apps.procs import CLI, cli_env
from mp import SIDE_TABLES, Proc, query, wait_for
from pg_private import PrivateServer, free_port, private_pg, running_private_pg  # noqa: F401
from tether import Context, Tether
from tether.api.problem_types import UNAVAILABLE

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

OUTAGE = float(os.environ.get("TETHER_TEST_OUTAGE_SECONDS", "4"))
"""Seconds the server stays down: twice the lease below. (The issue's case, by hand:
TETHER_TEST_OUTAGE_SECONDS=35 TETHER_TEST_OUTAGE_LEASE=30.)"""
LEASE_TTL = float(os.environ.get("TETHER_TEST_OUTAGE_LEASE", str(OUTAGE / 2)))
STEP_SECONDS = 1.0
"""The in-flight step's length (it started before the outage, ends during it)."""
RESUME_WITHIN = 2.0
"""What the issue asks: requests and workers carry on within this long of the server's
return."""


@dataclass
class Sampled:
    """What the HTTP API answered while the database was down."""

    answers: list[tuple[str, int, str, str | None, float]] = field(default_factory=list)
    """(what, status, content type, Retry-After, seconds it took)"""
    readyz: list[dict[str, Any]] = field(default_factory=list)


def submit_body(n: int) -> dict[str, Any]:
    return {"workflow": "job", "input": n}


async def sample_outage(base: str, task_id: str, seconds: float) -> Sampled:
    """Submit, read a task and ask /readyz, round after round, for `seconds`."""
    out = Sampled()
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base, headers=auth(), timeout=10) as http:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            key, body = {"Idempotency-Key": f"outage-{i}"}, submit_body(i)
            calls: list[tuple[str, Callable[[], Awaitable[httpx.Response]]]] = [
                ("submit", functools.partial(http.post, "/v1/tasks", json=body, headers=key)),
                ("get", lambda: http.get(f"/v1/tasks/{task_id}")),
                ("list", lambda: http.get("/v1/tasks", params={"limit": 5})),
                ("readyz", lambda: http.get("/readyz")),
            ]
            for what, call in calls:
                started = time.monotonic()
                r = await call()
                took = time.monotonic() - started
                kind = r.headers.get("content-type", "")
                out.answers.append((what, r.status_code, kind, r.headers.get("retry-after"), took))
                if what == "readyz":
                    out.readyz.append(r.json())
            await asyncio.sleep(0.05)
    return out


def check_outage_answers(sampled: Sampled) -> None:
    assert len(sampled.answers) >= 20, sampled.answers
    wrong = [a for a in sampled.answers if a[1] != 503]
    assert not wrong, f"answers other than 503 during the outage: {wrong[:10]}"
    for what, _, kind, retry_after, took in sampled.answers:
        assert kind.startswith("application/problem+json"), (what, kind)
        assert retry_after is not None and int(retry_after) >= 1, (what, retry_after)
        assert took < 3.0, f"{what} took {took:.2f}s to be refused"
    body = sampled.readyz[-1]
    assert (
        body["type"] == UNAVAILABLE.uri and "unavailable: Connection refused" in body["detail"]
    ), body
    assert "127.0.0.1" not in body["detail"], "readyz names no host"


async def first_success(base: str, since: float, key: str) -> tuple[float, str]:
    """Submit until one is accepted; (seconds after `since`, the task id)."""
    async with httpx.AsyncClient(base_url=base, headers=auth(), timeout=10) as http:
        while True:
            r = await http.post("/v1/tasks", json=submit_body(7), headers={"Idempotency-Key": key})
            if r.status_code == 202:
                return time.time() - since, r.json()["id"]
            assert r.status_code == 503, (r.status_code, r.text)
            if time.time() - since > 20:
                raise AssertionError("no submit accepted 20 s after the database came back")
            await asyncio.sleep(0.02)


async def stop_server(server: PrivateServer) -> float:
    """Stop the server (fast: sessions are cut); returns `time.time()` once it is down."""
    await asyncio.to_thread(server.stop)
    return time.time()


async def start_server(server: PrivateServer) -> float:
    """Start the server; returns `time.time()` of the first connection it accepted."""
    await asyncio.to_thread(server.start, wait=False)
    return await asyncio.to_thread(server.wait_accepting)


async def step_started(url: str) -> str:
    async def running() -> bool:
        rows = await query(url, "SELECT count(*) FROM mp_runs WHERE ended IS NULL")
        return bool(rows[0][0])

    await wait_for(running, 20, "the step to be in flight")
    rows = await query(url, "SELECT task_id FROM mp_runs")
    return str(rows[0][0])


async def check_resumed(url: str, back: float, kept: str, fresh: str) -> dict[str, float]:
    """The in-flight task `kept` finished on its first attempt, with one execution and
    one effect; the task `fresh`, submitted after the outage, started within
    `RESUME_WITHIN` of the server's return. Returns the measured delays."""

    async def both_done() -> bool:
        rows = await query(
            url, "SELECT count(*) FROM tasks WHERE id IN (%s, %s) AND status = 'succeeded'",
            (kept, fresh),
        )  # fmt: skip
        return bool(rows[0][0] == 2)

    await wait_for(both_done, 30, "the in-flight and the new task to succeed")
    (attempt, finished), = await query(
        url, "SELECT attempt, finished_at FROM tasks WHERE id = %s", (kept,)
    )  # fmt: skip
    assert attempt == 1, "the in-flight task kept its lease: no second attempt"
    executions = await query(
        url, "SELECT count(*) FROM mp_executions WHERE key LIKE %s", (f"{kept}:%",)
    )
    effects = await query(url, "SELECT count(*) FROM mp_effects WHERE task_id = %s", (kept,))
    assert executions[0][0] == 1 and effects[0][0] == 1, (executions, effects)
    ((started,),) = await query(url, "SELECT started FROM mp_runs WHERE task_id = %s", (fresh,))
    delays = {"in-flight task finished": finished - back, "new task started": started - back}
    for what, delay in delays.items():
        assert delay < RESUME_WITHIN, f"{what} {delay:.2f}s after the database was back"
    return delays


def check_quiet(text: str, who: str) -> None:
    assert "Traceback" not in text, f"{who} logged a traceback:\n{text[-3000:]}"
    assert "abandoning" not in text, f"{who} gave up a lease:\n{text[-3000:]}"


def submit_only_app(url: str) -> Tether:
    """The API side's app: the `job` workflow of tests/pg_mp_app.py, never run here."""
    app = Tether(url)

    @app.workflow("job")
    async def job(ctx: Context, n: int) -> int:
        raise AssertionError("the API-only server runs no tasks")

    return app


async def test_outage_with_a_worker_process(
    running_private_pg: PrivateServer,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = running_private_pg
    url = server.create_database()
    setup = Tether(url)
    await setup.open()  # the schema, before any process races to create it
    await setup.close()
    await query(url, SIDE_TABLES)
    env = {"MP_STEP_SECONDS": str(STEP_SECONDS), "MP_LEASE_TTL": str(LEASE_TTL)}
    worker = await Proc.start(tmp_path, "w1", url, "worker", **env)
    live = LiveServer(make_settings(url, webhooks=False), workers=False)
    live.app = submit_only_app(url)
    caplog.set_level(logging.INFO)
    try:
        assert await worker.line() == "ready"
        live.start()
        async with httpx.AsyncClient(base_url=live.url, headers=auth()) as http:
            r = await http.post("/v1/tasks", json=submit_body(3))
            assert r.status_code == 202, r.text
        kept = await step_started(url)
        down_at = await stop_server(server)
        sampled = await sample_outage(live.url, kept, OUTAGE)
        back = await start_server(server)
        took, fresh = await first_success(live.url, back, "after-outage")
        assert took < RESUME_WITHIN, f"first accepted submit {took:.2f}s after the return"
        delays = await check_resumed(url, back, kept, fresh)
        check_outage_answers(sampled)
        assert worker.proc.returncode is None, worker.tail()
        assert await worker.stop() == 0, worker.tail()
    finally:
        worker.kill()
        live.stop()
    check_quiet(worker.log.read_text(errors="replace"), "the worker")
    api_log = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [r for r in api_log if r.exc_info or r.levelno >= logging.ERROR], api_log
    store_lines = [r.getMessage() for r in api_log if r.name == "tether.store.postgres"]
    assert sum("unavailable:" in m for m in store_lines) == 1, store_lines
    assert sum("available again" in m for m in store_lines) == 1, store_lines
    print(
        f"down {back - down_at:.1f}s, {len(sampled.answers)} requests refused (slowest "
        f"{max(a[4] for a in sampled.answers) * 1000:.0f} ms); first submit "
        f"{took * 1000:.0f} ms after the server accepted; "
        + "; ".join(f"{k} {v * 1000:.0f} ms after" for k, v in delays.items())
    )


async def test_outage_with_the_servers_embedded_workers(
    running_private_pg: PrivateServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = running_private_pg
    url = server.create_database()
    setup = Tether(url)
    await setup.open()
    await setup.close()
    await query(url, SIDE_TABLES)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    env = cli_env(
        TETHER_APP="pg_mp_app:app",
        MP_DB_URL=url,
        MP_WORKER_ID="server",
        MP_STEP_SECONDS=str(STEP_SECONDS),
        TETHER_DATABASE_URL=url,
        TETHER_JWT_SECRET=SECRET,
        TETHER_LEASE_TTL=str(LEASE_TTL),
        TETHER_POLL_INTERVAL="0.5",
    )
    with log_path.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *CLI, "server", "--port", str(port), "--log-level", "info",
            env=env, cwd=tmp_path, stdout=err, stderr=err,
        )  # fmt: skip
    try:
        await wait_ready(base, proc, log_path)
        async with httpx.AsyncClient(base_url=base, headers=auth()) as http:
            r = await http.post("/v1/tasks", json=submit_body(3))
            assert r.status_code == 202, r.text
        kept = await step_started(url)
        down_at = await stop_server(server)
        sampled = await sample_outage(base, kept, OUTAGE)
        back = await start_server(server)
        took, fresh = await first_success(base, back, "after-outage")
        assert took < RESUME_WITHIN, f"first accepted submit {took:.2f}s after the return"
        delays = await check_resumed(url, back, kept, fresh)
        check_outage_answers(sampled)
        assert proc.returncode is None
        proc.terminate()
        # uvicorn shuts down, then re-raises the SIGTERM it caught: a clean stop.
        assert await asyncio.wait_for(proc.wait(), 30) in (0, -signal.SIGTERM)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log_path.read_text(errors="replace")
    check_quiet(text, "tether server")
    assert "Application shutdown complete" in text, text[-3000:]
    assert text.count("unavailable:") == 1 and text.count("available again") == 1, text[-3000:]
    print(
        f"down {back - down_at:.1f}s, {len(sampled.answers)} requests refused (slowest "
        f"{max(a[4] for a in sampled.answers) * 1000:.0f} ms); first submit "
        f"{took * 1000:.0f} ms after the server accepted; "
        + "; ".join(f"{k} {v * 1000:.0f} ms after" for k, v in delays.items())
    )


async def wait_ready(base: str, proc: asyncio.subprocess.Process, log: Path) -> None:
    async def ready() -> bool:
        if proc.returncode is not None:
            raise AssertionError(f"server exited: {log.read_text(errors='replace')}")
        try:
            async with httpx.AsyncClient(timeout=1) as http:
                return (await http.get(f"{base}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_for(ready, 30, "tether server to be ready", every=0.1)
