"""`ctx.notify` across a SIGKILL: a worker process sends the mail, records the step and
is killed in the next step; the worker that takes the task over through lease expiry
replays it and sends nothing again."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.crashy import read_log
from apps.notifying import app as notifying
from apps.procs import WorkerProcess, wait_until
from smtp_server import SmtpServer
from tether import TaskStatus, Tether

pytestmark = pytest.mark.slow


async def test_ctx_notify_is_not_resent_after_a_sigkill(
    db: tuple[Tether, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, url = db
    log = str(tmp_path / "effects.jsonl")
    with SmtpServer() as smtp:
        monkeypatch.setenv("NOTIFY_TEST_SMTP_PORT", str(smtp.port))
        (handle,) = await app.submit_batch([notifying.new_task("notify_then_slow", {"log": log})])
        workers: list[WorkerProcess] = []
        try:
            w1 = WorkerProcess(url, "w1", tmp_path, "--lease-ttl", "1", app="apps.notifying:app")
            workers.append(w1)
            await wait_until(
                lambda: any(e["step"] == "slow" for e in read_log(log)),
                30,
                "the slow step",
                alive=[w1],
            )
            w1.kill()
            assert len(smtp.messages) == 1
            w2 = WorkerProcess(url, "w2", tmp_path, "--lease-ttl", "1", app="apps.notifying:app")
            workers.append(w2)

            async def ended() -> bool:
                return (await app.get(handle.id)).status.terminal

            await wait_until(ended, 30, "the task to end on w2", alive=[w2])
            assert (await app.get(handle.id)).status == TaskStatus.SUCCEEDED
        finally:
            for w in workers:
                w.close()
        assert [e["worker"] for e in read_log(log) if e["event"] == "start"] == ["w1", "w2"]
        (mail,) = smtp.messages  # sent once, by w1
        assert mail["Subject"] == "Nightly import"
        assert mail["Message-ID"] == f"<{handle.id}.1@tether>"
