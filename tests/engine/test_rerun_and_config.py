"""Re-running ended tasks, schema checks and configuration errors."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import event_where
from tether import (
    ConfigError,
    Context,
    SchemaOutOfDate,
    TaskNotFound,
    TaskStatus,
    Tether,
    current_step,
    load_settings,
)
from tether.models import TaskFilter


async def test_rerun_forks_a_linked_task_that_skips_finished_steps(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    runs: Counter[str] = Counter()
    broken = {"yes": True}

    def extract() -> str:
        runs["extract"] += 1
        return "facts"

    def write() -> str:
        runs["write"] += 1
        if broken["yes"]:
            raise PermissionError("CRM rejected the token")
        return "written"

    @app.workflow("pipeline")
    async def pipeline(ctx: Context) -> list[str]:
        a = await ctx.step("extract", extract)
        b = await ctx.step("write", write)
        return [a, b]

    async with app.worker(poll_interval=0.05):
        first = await app.submit("pipeline", correlation_id="ticket-7")
        failed = await first.wait(timeout=10)
        assert failed.status == TaskStatus.FAILED
        broken["yes"] = False  # the operator fixed the token
        second = await app.rerun(first.id, created_by="ops")
        assert await second.result(timeout=10) == ["facts", "written"]
    assert runs == Counter({"extract": 1, "write": 2})
    new = await app.get(second.id)
    assert new.forked_from == first.id and new.correlation_id == "ticket-7"
    assert [t.id for t in await app.list_tasks(TaskFilter(forked_from=first.id))] == [second.id]
    old = await app.get(first.id)
    assert old.status == TaskStatus.FAILED, "the original stays as it ended"
    forked = await event_where(app, first.id, lambda e: e.type == "task.forked")
    assert forked.data == {
        "new_task": second.id,
        "from_seq": None,
        "by": "ops",
    }
    created = await event_where(app, second.id, lambda e: e.type == "task.created")
    assert (created.decision, created.new_status, created.attempt) == ("forked", "queued", 0)
    assert created.data == {"workflow": "pipeline", "by": "ops", "forked_from": first.id}


async def test_rerun_from_a_step_runs_that_step_again(make_app: Callable[[], Tether]) -> None:
    app = make_app()
    runs: Counter[str] = Counter()

    @app.workflow("two")
    async def two(ctx: Context) -> int:
        await ctx.step("a", lambda: runs.update(["a"]))
        await ctx.step("b", lambda: runs.update(["b"]))
        return 1

    async with app.worker(poll_interval=0.05):
        first = await app.submit("two")
        await first.result(timeout=10)
        again = await app.rerun(first.id, from_seq=2)
        await again.result(timeout=10)
    assert runs == Counter({"a": 1, "b": 2})


async def test_a_rerun_step_presents_the_key_of_the_step_it_replaces(
    make_app: Callable[[], Tether],
) -> None:
    """A step a re-run executes again presents the idempotency key of the step it
    replaces: the first task of the chain's key at that position, through re-runs of
    re-runs and after the tasks between were purged, so an outside API deduplicates it."""
    app = make_app()
    seen: list[tuple[str, int, str]] = []  # (task, seq, key) of every execution

    def call(name: str) -> str:
        info = current_step()
        assert info is not None
        seen.append((info.task_id, info.seq, info.idempotency_key))
        if name == "charge":
            raise PermissionError("the payment API refused the call")
        return name

    @app.workflow("payment")
    async def payment(ctx: Context) -> list[str]:
        return [await ctx.step("quote", call, "quote"), await ctx.step("charge", call, "charge")]

    def executions(task_id: str) -> dict[int, str]:
        return {seq: key for task, seq, key in seen if task == task_id}

    async with app.worker(poll_interval=0.05):
        root = await app.submit("payment")
        assert (await root.wait(timeout=10)).status == TaskStatus.FAILED
        assert executions(root.id) == {1: f"{root.id}:1", 2: f"{root.id}:2"}

        first = await app.rerun(root.id)  # the failed step only
        assert (await first.wait(timeout=10)).status == TaskStatus.FAILED
        assert executions(first.id) == {2: f"{root.id}:2"}

        second = await app.rerun(first.id, from_seq=1)  # every step, of a re-run
        done = await second.wait(timeout=10)
        assert done.status == TaskStatus.FAILED
        assert executions(second.id) == {1: f"{root.id}:1", 2: f"{root.id}:2"}
        assert (await app.get(root.id)).fork_root is None

        # The chain's first task and the re-run between are purged; its keys stay.
        assert done.finished_at is not None
        assert await app.store.purge(done.finished_at) == 2
        with pytest.raises(TaskNotFound):
            await app.get(first.id)
        third = await app.rerun(second.id)
        assert (await third.wait(timeout=10)).status == TaskStatus.FAILED
        assert executions(third.id) == {2: f"{root.id}:2"}

    for handle, parent in ((second, first.id), (third, second.id)):
        task = await app.get(handle.id)
        assert (task.forked_from, task.fork_root) == (parent, root.id)


async def test_running_tasks_cannot_be_rerun(make_app: Callable[[], Tether]) -> None:
    app = make_app()

    @app.workflow("w")
    async def w(ctx: Context) -> None:
        await ctx.wait_for_signal("x")

    handle = await app.submit("w")
    with pytest.raises(Exception, match="only ended tasks"):
        await app.rerun(handle.id)


async def test_older_schema_is_refused_with_a_migrate_hint(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = Tether(store_url)
    await app.open()
    await app.close()
    import tether.store.sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "LATEST", sqlite_store.LATEST + 1)
    if store_url.startswith("postgres"):
        import tether.store.postgres as pg_store

        monkeypatch.setattr(pg_store, "LATEST", pg_store.LATEST + 1, raising=False)
    with pytest.raises(SchemaOutOfDate, match="tether migrate"):
        await Tether(store_url).open()


def test_corrupt_config_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "tether.toml"
    bad.write_text("database_url = [unclosed")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(path=bad)
    bad.write_text('concurrency = "lots"')
    with pytest.raises(ConfigError, match="concurrency"):
        load_settings(path=bad)
    bad.write_text('databse_url = "sqlite:///x.db"')
    with pytest.raises(ConfigError, match="databse_url"):
        load_settings(path=bad)


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tether.toml").write_text('[tether]\nconcurrency = 7\ntenant = "file"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings().concurrency == 7
    monkeypatch.setenv("TETHER_CONCURRENCY", "8")
    assert load_settings().concurrency == 8
    assert load_settings({"concurrency": 9}).concurrency == 9
    assert load_settings().tenant == "file"


def test_unsupported_database_url() -> None:
    with pytest.raises(ConfigError, match="unsupported database URL scheme 'mysql'"):
        Tether("mysql://localhost/db")
