"""A SQLite database that suddenly cannot be written, under a real server with an
embedded worker: writes answer 503 with `Retry-After` (reads mostly work), `/readyz`
says why, the running task keeps its lease through the outage (longer than the lease),
and everything carries on within 2 s of the file being writable again.

The condition is real, made by the kernel: the database file and its WAL are marked
immutable (`chattr +i`), so every write fails with EPERM, which SQLite reports as a
disk I/O error, exactly as on a failing disk. The tests run as root, and root ignores
file permissions (a read-only chmod would change nothing), but not the immutable flag
(it needs CAP_LINUX_IMMUTABLE, and a file system that has the flag: ext4, xfs, btrfs).
Where that is missing, the test skips and says why.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from api.live import LiveServer, auth, make_settings
from tether import Context, Tether
from tether.api.problem_types import UNAVAILABLE

UNWRITABLE_FOR = 2.5
"""Seconds the file stays unwritable: longer than the worker's lease below."""
LEASE_TTL = 1.0


def chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


def immutable_unsupported(folder: Path) -> str | None:
    """Why files in `folder` cannot be made immutable here, or None."""
    probe = folder / "immutable-probe"
    probe.write_text("x")
    try:
        chattr("+i", probe)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or str(exc)
        return f"cannot mark files immutable (chattr +i) here: {detail!r}"
    try:
        try:
            probe.write_text("y")
        except PermissionError:
            return None
        return "chattr +i does not stop writes on this file system"
    finally:
        chattr("-i", probe)


async def test_a_database_file_that_cannot_be_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    why = immutable_unsupported(tmp_path)
    if why is not None:
        pytest.skip(why)
    db = tmp_path / "tether.db"
    url = f"sqlite:///{db}"
    settings = make_settings(url, webhooks=False)
    app = Tether(url, settings=settings)
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []

    def wait_then_double(n: int) -> int:  # a sync step: it runs on a step thread
        runs.append(n)
        started.set()
        release.wait(30)
        return 2 * n

    @app.workflow("hold")
    async def hold(ctx: Context, n: int) -> int:
        return await ctx.step("wait", wait_then_double, n)

    live = LiveServer(settings, worker_options={"lease_ttl": LEASE_TTL})
    live.app = app
    caplog.set_level(logging.INFO)
    files = [db, db.with_name(db.name + "-wal")]
    answers: list[tuple[str, int, str | None]] = []
    try:
        live.start()
        async with httpx.AsyncClient(base_url=live.url, headers=auth(), timeout=10) as http:
            r = await http.post("/v1/tasks", json={"workflow": "hold", "input": 2})
            assert r.status_code == 202, r.text
            task_id = r.json()["id"]
            assert await asyncio.to_thread(started.wait, 10)
            assert all(f.exists() for f in files)
            chattr("+i", *files)
            try:
                deadline = time.monotonic() + UNWRITABLE_FOR
                i = 0
                while time.monotonic() < deadline:
                    i += 1
                    if i == 3:
                        release.set()  # the step ends; its result cannot be committed yet
                    r = await http.post(
                        "/v1/tasks",
                        json={"workflow": "hold", "input": i},
                        headers={"Idempotency-Key": f"k{i}"},
                    )
                    answers.append(("submit", r.status_code, r.headers.get("retry-after")))
                    assert r.headers["content-type"].startswith("application/problem+json")
                    assert r.json()["type"] == UNAVAILABLE.uri
                    ready = await http.get("/readyz")
                    answers.append(("readyz", ready.status_code, ready.headers.get("retry-after")))
                    # Reading mostly still works; a read that shares a group commit
                    # with a failing write fails with it, as a 503 too.
                    task = await http.get(f"/v1/tasks/{task_id}")
                    answers.append(("get", task.status_code, task.headers.get("retry-after")))
                    assert task.status_code in (200, 503), task.text
                    if task.status_code == 200:
                        assert task.json()["status"] == "running"
                    await asyncio.sleep(0.05)
                detail = ready.json()["detail"]
            finally:
                chattr("-i", *files)
                back = time.time()
            while True:
                r = await http.post(
                    "/v1/tasks",
                    json={"workflow": "hold", "input": 99},
                    headers={"Idempotency-Key": "after"},
                )
                if r.status_code == 202:
                    break
                assert r.status_code == 503, r.text
                assert time.time() - back < 10, "no submit accepted 10 s after"
                await asyncio.sleep(0.02)
            first_submit = time.time() - back
            while (task := (await http.get(f"/v1/tasks/{task_id}")).json())["status"] == "running":
                assert time.time() - back < 10, task
                await asyncio.sleep(0.02)
            finished = datetime.fromisoformat(task["finished_at"]).timestamp()
            ready = await http.get("/readyz")
    finally:
        release.set()
        live.stop()
    refused = [a for a in answers if a[0] != "get" or a[1] == 503]
    assert refused and all(status == 503 and int(ra or 0) >= 1 for _, status, ra in refused), (
        answers
    )
    assert any(a[0] == "get" and a[1] == 200 for a in answers), "reads mostly still work"
    assert "unavailable: disk I/O error" in detail, detail
    assert ready.status_code == 200
    assert task["status"] == "succeeded" and task["attempt"] == 1, "it kept its lease"
    assert task["result"] == 4 and runs[0] == 2 and runs.count(2) == 1, runs
    assert first_submit < 2.0, f"first accepted submit {first_submit:.2f}s after"
    assert finished - back < 2.0, f"the held task finished {finished - back:.2f}s after"
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]
    said = [r.getMessage() for r in caplog.records if r.name == "tether.store.sqlite"]
    assert sum("unavailable:" in m for m in said) == 1, said
    assert sum("available again" in m for m in said) == 1, said
    print(
        f"first submit {first_submit * 1000:.0f} ms, held task finished "
        f"{(finished - back) * 1000:.0f} ms after the file was writable again"
    )
