"""Step rows written before Tether kept attempt errors (schema 6: no `attempt_errors`
column, a step's `error` without a traceback) still read after `tether migrate`, on
both backends, and a retry that was pending then goes on from them (ADR 62)."""

from __future__ import annotations

import pytest

import tether.store.postgres as pg_store
import tether.store.sqlite as sqlite_store
from tether import Context, RetryPolicy, TaskStatus, Tether, services
from tether.api.schemas import StepOut
from tether.errors import SchemaOutOfDate
from tether.ids import new_id
from tether.models import RetryDecision

OLD_ERROR = (
    '{"type": "ConnectionError", "message": "reset", "fingerprint": "f0", '
    '"step": "fetch", "permanent": false}'
)


def _register(app: Tether) -> None:
    async def done() -> str:
        return "done"

    async def fetch() -> str:
        raise PermissionError("denied")

    @app.workflow("old")
    async def old(ctx: Context) -> str:
        await ctx.step("done", done)
        return await ctx.step("fetch", fetch, retry=RetryPolicy(max_attempts=3))


async def test_rows_from_before_attempt_errors_read_and_resume(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database at schema 6, holding a task as an older Tether left it: waiting for a
    # retry's backoff, with a finished step and the retry pending after one failed attempt.
    for module in (sqlite_store, pg_store):
        monkeypatch.setattr(module, "MIGRATIONS", module.MIGRATIONS[:6])
        monkeypatch.setattr(module, "LATEST", 6)
    old = Tether(store_url)
    _register(old)
    await old.open()
    now = old.clock.now()
    task_id = new_id()

    async def write_old_rows(conn: object) -> None:
        # The task row as schema 6 has it (a submission today writes later columns).
        await conn.execute(  # type: ignore[attr-defined]
            "INSERT INTO tasks (id, tenant, workflow, workflow_version, queue, status, input, "
            "correlation_id, created_by, created_at, updated_at) "
            "VALUES (%s, 'default', 'old', 1, 'default', 'queued', 'null', %s, 'me', %s, %s)",
            (task_id, task_id, now - 3, now - 3),
        )
        for seq, name, status, result, error, wake_at in (
            (1, "done", "succeeded", '"done"', None, None),
            (2, "fetch", "pending", None, OLD_ERROR, now - 1),
        ):
            await conn.execute(  # type: ignore[attr-defined]
                "INSERT INTO steps (task_id, seq, name, kind, status, attempts, result, error, "
                "started_at, finished_at, wake_at, meta) "
                "VALUES (%s, %s, %s, 'step', %s, 1, %s, %s, %s, %s, %s, NULL)",
                (task_id, seq, name, status, result, error, now - 2, now - 2, wake_at),
            )
        await conn.execute(  # type: ignore[attr-defined]
            "UPDATE tasks SET status = 'waiting', wait_reason = 'retry_backoff', attempt = 1, "
            "started_at = %s, run_at = %s WHERE id = %s",
            (now - 2, now - 1, task_id),
        )

    await old.store._run(write_old_rows)  # type: ignore[attr-defined]
    assert await old.store.schema_version() == 6
    await old.close()
    monkeypatch.undo()

    app = Tether(store_url)
    _register(app)
    with pytest.raises(SchemaOutOfDate):
        await app.open()
    migration = await services.admin.migrate(app)
    assert (migration.before, migration.after) == (6, sqlite_store.LATEST)

    app = Tether(store_url)
    _register(app)
    try:
        done, fetch = await app.steps(task_id)
        assert done.attempt_errors == () and done.result == "done"
        assert fetch.attempt_errors == () and fetch.error is not None
        assert (fetch.error.type, fetch.error.message, fetch.error.permanent) == (
            "ConnectionError",
            "reset",
            False,
        )
        assert StepOut.of(fetch).attempt_errors == []  # the API shows it too

        async with app.worker(poll_interval=0.05):
            task = await app.handle(task_id).wait(timeout=10)
        assert task.status == TaskStatus.FAILED
        _, fetch = await app.steps(task_id)
        (attempt,) = fetch.attempt_errors  # attempt 1's text was never kept: 2 is the first
        assert (attempt.attempt, attempt.type, attempt.decision) == (
            2,
            "PermissionError",
            RetryDecision.GIVE_UP,
        )
        assert fetch.attempts == 2
    finally:
        await app.close()
