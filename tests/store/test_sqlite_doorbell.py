"""The SQLite doorbell (ADR 74): a commit in one process wakes the others at once, so an
idle worker starts a task submitted elsewhere without waiting for its next poll."""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from apps.procs import cli_env
from tether import Context, TaskStatus, Tether
from tether.store.sqlite import doorbell
from tether.store.sqlite.doorbell import Doorbell

SUBMITTER = """
import asyncio, sys
from tether import Context, Tether

app = Tether(sys.argv[1])

@app.workflow("hello")
async def hello(ctx: Context, name: str) -> str:
    return "hi " + name

async def main() -> None:
    await app.open()
    handle = await app.submit("hello", {"name": "there"})
    print(handle.id, flush=True)
    await app.close()

asyncio.run(main())
"""


def _rung(bell: Doorbell, timeout: float = 5.0) -> bool:
    readable, _, _ = select.select([bell.fileno()], [], [], timeout)
    return bool(readable)


def test_a_ring_reaches_every_other_socket_and_not_the_ringer(tmp_path: Path) -> None:
    folder = doorbell.folder_for(str(tmp_path / "a.db"))
    first, second, third = Doorbell(folder), Doorbell(folder), Doorbell(folder)
    try:
        first.ring()
        assert _rung(second) and _rung(third)
        assert not _rung(first, 0.05)
        second.drain()
        assert not _rung(second, 0.05)  # drained: one look for any number of rings
    finally:
        for bell in (first, second, third):
            bell.close()
    assert not os.path.exists(folder)  # each removed its own socket, the last the folder


def test_a_socket_left_by_a_dead_process_is_removed_by_the_next_ring(tmp_path: Path) -> None:
    folder = doorbell.folder_for(str(tmp_path / "a.db"))
    alive, dead = Doorbell(folder), Doorbell(folder)
    dead._sock.close()  # its process died: the file stays, nobody is bound to it
    try:
        alive.ring()
        assert os.listdir(folder) == [alive.name]
    finally:
        alive.close()


def test_a_deep_database_rings_in_a_folder_under_the_temporary_directory(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    assert doorbell.folder_for("/srv/app/tether.db") == "/srv/app/tether.db-wake"  # beside
    far = doorbell.folder_for(str(deep / "a.db"))
    assert far.startswith(tempfile.gettempdir())
    assert len(far) + doorbell.NAME_LENGTH <= doorbell.MAX_SOCKET_PATH
    assert far == doorbell.folder_for(str(deep / "a.db"))  # the same database, the same folder
    assert far != doorbell.folder_for(str(deep / "b.db"))


async def test_an_idle_worker_starts_a_task_submitted_by_another_process_without_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Polling slowed to a minute: only the doorbell can wake this worker in time.
    monkeypatch.setattr("tether.store.sqlite.WATCH_EVERY", 60.0)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    app = Tether(url)

    @app.workflow("hello")
    async def hello(ctx: Context, name: str) -> str:
        return "hi " + name

    await app.open()
    try:
        async with app.worker(poll_interval=60.0):
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", SUBMITTER, url],
                capture_output=True,
                text=True,
                timeout=60,
                env=cli_env(),
            )
            assert done.returncode == 0, done.stderr
            task_id = done.stdout.strip()
            handle = app.handle(task_id)
            assert await handle.result(timeout=20) == "hi there"
            assert (await app.get(task_id)).status == TaskStatus.SUCCEEDED
    finally:
        await app.close()
