"""Exactly one task per tick across a fleet, on both backends: three `tether worker`
processes and one API-only `tether server` (each with its scheduler) share a database;
a schedule made over the server's API ticks five times, on five consecutive seconds,
and five tasks are started, one per tick, each within a second of it, and run."""

from __future__ import annotations

import math
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

from api.live import SECRET, token
from apps.procs import CLI, WorkerProcess, cli_env, wait_until
from tether import TaskFilter, TaskStatus, Tether
from tether.schedules import scheduled_tick

pytestmark = pytest.mark.slow

TICKS = 5
ENV = {"TETHER_SCHEDULE_POLL_INTERVAL": "0.5", "TETHER_POLL_INTERVAL": "0.1"}


class ServerProcess:
    """An API-only `tether server` whose output goes to a log file."""

    def __init__(self, db_url: str, log_dir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "server.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*CLI, "server", "--no-workers", "--port", str(self.port), "--log-level", "warning"],
            env=cli_env(
                TETHER_APP="apps.crashy:app",
                TETHER_DATABASE_URL=db_url,
                TETHER_JWT_SECRET=SECRET,
                **ENV,
            ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited:\n{self.log_path.read_text()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def five_seconds_from(now: float) -> tuple[float, str]:
    """The first of five consecutive whole seconds starting at least 3 s from `now`
    within one minute, and a cron expression (seconds last) naming exactly them."""
    first = math.ceil(now) + 3
    if first % 60 > 60 - TICKS:
        first += 60 - first % 60  # from the next minute's :00
    t = time.gmtime(first)
    return float(first), f"{t.tm_min} {t.tm_hour} * * * {t.tm_sec}-{t.tm_sec + TICKS - 1}"


async def test_three_workers_and_a_server_start_one_task_per_tick(
    store_url: str, tmp_path: Path
) -> None:
    app = Tether(store_url)
    await app.open()  # the schema, before four processes open it at once
    workers = [
        WorkerProcess(store_url, f"w{i}", tmp_path, "--concurrency", "4", env=ENV) for i in range(3)
    ]
    server = ServerProcess(store_url, tmp_path)
    try:
        for w in workers:
            await wait_until(
                lambda w=w: f"worker {w.worker_id} on queues" in w.output,
                60,
                f"{w.worker_id} to start",
                alive=workers,
            )
        await wait_until(server.ready, 60, "the server to be ready", alive=workers)
        first, cron = five_seconds_from(time.time())
        async with httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": f"Bearer {token('default')}"}
        ) as http:
            r = await http.post(
                "/v1/schedules",
                json={
                    "name": "fleet",
                    "workflow": "greet",
                    "cron": cron,
                    "input": {"name": "fleet"},
                },
            )
            assert r.status_code == 201, r.text
        wanted = [first + i for i in range(TICKS)]

        async def all_ran() -> bool:
            tasks = await app.list_tasks(TaskFilter(tenant="default", limit=100))
            mine = [t for t in tasks if t.created_by == "schedule:fleet"]
            # Two seconds past the last tick: a second task of any tick would be there.
            late_enough = time.time() > wanted[-1] + 2
            return late_enough and len(mine) >= TICKS and all(t.status.terminal for t in mine)

        await wait_until(all_ran, 60, "five ticks to run", alive=workers)
        tasks = await app.list_tasks(TaskFilter(tenant="default", limit=100))
        mine = [t for t in tasks if t.created_by == "schedule:fleet"]
        ticks = sorted(scheduled_tick(t.idempotency_key) or 0 for t in mine)
        assert ticks == wanted, (ticks, wanted)
        assert all(t.status == TaskStatus.SUCCEEDED for t in mine)
        for t in mine:
            tick = scheduled_tick(t.idempotency_key)
            assert tick is not None and 0 <= t.created_at - tick < 1.0, (t.created_at, tick)
    finally:
        server.close()
        for w in workers:
            w.close()
        await app.close()
