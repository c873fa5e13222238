"""Model calls across a SIGKILL: a worker process makes the first of two model calls,
records it and is killed in the step after it; the worker that takes the task over
through lease expiry replays the first call (the fake provider counts no second
request for it) and makes only the second."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.crashy import read_log
from apps.modelling import app as modelling
from apps.procs import WorkerProcess, wait_until
from fake_models import CHAT, MESSAGES, ModelServer, ok
from tether import TaskStatus, Tether
from tether.agents import ModelUsage

pytestmark = pytest.mark.slow


async def test_a_finished_model_call_is_not_repeated_after_a_sigkill(
    db: tuple[Tether, str], tmp_path: Path
) -> None:
    app, url = db
    log = str(tmp_path / "effects.jsonl")
    with ModelServer([ok("first answer"), ok("second answer")]) as server:
        env = {"MODEL_TEST_URL": server.url}
        (handle,) = await app.submit_batch([modelling.new_task("two_turns", {"log": log})])
        workers: list[WorkerProcess] = []
        try:
            w1 = WorkerProcess(
                url, "w1", tmp_path, "--lease-ttl", "1", app="apps.modelling:app", env=env
            )
            workers.append(w1)
            await wait_until(
                lambda: any(e["event"] == "start" for e in read_log(log)),
                30,
                "the slow step after the first model call",
                alive=[w1],
            )
            w1.kill()
            assert (server.count(CHAT), server.count(MESSAGES)) == (1, 0)
            w2 = WorkerProcess(
                url, "w2", tmp_path, "--lease-ttl", "1", app="apps.modelling:app", env=env
            )
            workers.append(w2)

            async def ended() -> bool:
                return (await app.get(handle.id)).status.terminal

            await wait_until(ended, 30, "the task to end on w2", alive=[w2])
        finally:
            for w in workers:
                w.close()
        assert (await app.get(handle.id)).status == TaskStatus.SUCCEEDED
        assert (await app.get(handle.id)).result == ["first answer", "second answer"]
        assert (server.count(CHAT), server.count(MESSAGES)) == (1, 1)
    assert [e["worker"] for e in read_log(log) if e["event"] == "start"] == ["w1", "w2"]
    usages = [ModelUsage.from_meta(s.meta) for s in await app.steps(handle.id)]
    assert [u.request_id if u else None for u in usages] == ["req_1", None, "req_2"]
