"""Helpers for tests that run the `tether` CLI and workers as real subprocesses.

Nothing here sleeps and hopes: `wait_until` polls a condition until a deadline and
fails with a description of what it was waiting for.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import tether

TESTS = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "tether.cli"]
STARTED_IN = Path.cwd()
"""Where the test run started (this module is imported at collection, before any test
changes directory): relative PYTHONPATH entries such as `src` are relative to it."""


def absolute_path_list(entries: str) -> list[str]:
    """The entries of a PYTHONPATH, relative ones made absolute. Tests run in their own
    tmp_path: a relative entry would not find the tree under test there, and a
    subprocess would silently import another installed tether instead."""
    return [str(STARTED_IN / e) if e else e for e in entries.split(os.pathsep)]


SOURCE = Path(tether.__file__).resolve().parent.parent
"""Where the `tether` under test was imported from: subprocesses import the same one
(a relative `PYTHONPATH=src` would not resolve in their working directories, and they
would silently run whichever Tether the interpreter has installed)."""


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: no inherited TETHER_*, tests/ importable,
    and the same `tether` as this process (PYTHONPATH entries made absolute)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS), *(absolute_path_list(env["PYTHONPATH"]) if env.get("PYTHONPATH") else [])]
    )
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"  # keep Rich from wrapping what tests read
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `tether ARGS...` to completion and capture its output."""
    return subprocess.run(
        [*CLI, *args],
        env=env or cli_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class WorkerProcess:
    """A `tether worker` subprocess whose output goes to a log file."""

    def __init__(
        self,
        db_url: str,
        worker_id: str,
        log_dir: Path,
        *extra: str,
        app: str = "apps.crashy:app",
        env: dict[str, str] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.log_path = log_dir / f"{worker_id}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                *CLI,
                "worker",
                "--app",
                app,
                "--database-url",
                db_url,
                "--worker-id",
                worker_id,
                *extra,
            ],
            env=cli_env(TETHER_TEST_WORKER=worker_id, **(env or {})),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    async def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.worker_id} did not exit in {timeout}s; output:\n{self.output}"
                )
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


async def wait_until(
    condition: Callable[[], Awaitable[bool] | bool],
    timeout: float,
    what: str,
    interval: float = 0.05,
    alive: list[WorkerProcess] | None = None,
) -> None:
    """Poll `condition` until true; fail after `timeout` seconds, or at once when one of
    the `alive` workers died (with its output, to show why)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        for w in alive or ():
            if w.proc.poll() is not None:
                raise AssertionError(
                    f"{w.worker_id} exited ({w.proc.returncode}) while waiting for {what}:\n"
                    f"{w.output}"
                )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
