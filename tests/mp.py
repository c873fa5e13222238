"""Helpers for tests that run Tether roles in subprocesses (tests/pg_mp_main.py)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg

from apps.procs import absolute_path_list

TESTS = Path(__file__).resolve().parent


def _pythonpath() -> dict[str, str]:
    """PYTHONPATH for a child, absolute: it starts in the test's tmp_path."""
    found = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": os.pathsep.join(absolute_path_list(found))} if found else {}


SIDE_TABLES = """
-- Side tables of tests/pg_mp_app.py: who ran what when, and the effects.
CREATE TABLE IF NOT EXISTS mp_runs (
    id BIGSERIAL PRIMARY KEY, task_id TEXT NOT NULL, worker TEXT NOT NULL,
    started DOUBLE PRECISION NOT NULL, ended DOUBLE PRECISION);
CREATE TABLE IF NOT EXISTS mp_executions (key TEXT NOT NULL, worker TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mp_effects (key TEXT PRIMARY KEY, task_id TEXT NOT NULL);
"""


class Proc:
    """A role of tests/pg_mp_main.py in its own process; stderr goes to a log file."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path, name: str) -> None:
        self.proc = proc
        self.log = log
        self.name = name

    @classmethod
    async def start(cls, tmp: Path, name: str, url: str, *args: str, **env: str) -> Proc:
        log = tmp / f"{name}.log"
        with log.open("wb") as err:  # the child keeps its own copy of the descriptor
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(TESTS / "pg_mp_main.py"),
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env={**os.environ, **_pythonpath(), "MP_DB_URL": url, "MP_WORKER_ID": name, **env},
            )
        return cls(proc, log, name)

    async def line(self, timeout: float = 30.0) -> str:
        assert self.proc.stdout is not None
        try:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.name}: no output in {timeout}s\n{self.tail()}") from None
        if not raw:
            code = await self.proc.wait()
            raise AssertionError(f"{self.name} exited ({code}) early:\n{self.tail()}")
        return raw.decode().strip()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for a clean exit (SIGKILL if it hangs)."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.kill()
            await self.proc.wait()
            raise AssertionError(f"{self.name} ignored SIGTERM:\n{self.tail()}") from None


async def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall()) if cur.description else []


async def wait_for(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, every: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


def assert_no_overlap(
    runs: list[tuple[str, str, float, float | None]], killed: dict[str, float]
) -> None:
    """`runs` are (task_id, worker, started, ended); a run with no end ended when its
    worker was killed (`killed`: worker -> time). No task may run on two workers at once."""
    by_task: dict[str, list[tuple[float, float, str]]] = {}
    for task_id, worker, started, ended in runs:
        if ended is None:
            assert worker in killed, f"run of {task_id} on live worker {worker} never ended"
            ended = killed[worker]
        by_task.setdefault(task_id, []).append((started, ended, worker))
    for task_id, spans in by_task.items():
        spans.sort()
        for (_s1, e1, w1), (s2, _e2, w2) in itertools.pairwise(spans):
            assert e1 <= s2, f"task {task_id} ran on {w1} and {w2} at once ({s2} < {e1})"
