"""Migration 14 fills the dead-letter queue from the failed tasks a database already
holds (ADR 79), on both backends: groups with their counts, first and last seen, the
latest example, the trend, and the tasks re-run before as `retried` members."""

from __future__ import annotations

import pytest

import tether.store.postgres as pg_store
import tether.store.sqlite as sqlite_store
from tether import Tether, services
from tether.ids import new_id
from tether.models.dlq import DlqGroupStatus, DlqMemberState

BEFORE = 13  # the schema just before the dead-letter queue


def _error(fingerprint: str, step: str) -> str:
    return (
        f'{{"type": "Permanent", "message": "declined", "fingerprint": "{fingerprint}", '
        f'"step": "{step}", "permanent": true}}'
    )


async def test_migration_14_fills_the_groups_from_failed_tasks(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (sqlite_store, pg_store):
        monkeypatch.setattr(module, "MIGRATIONS", module.MIGRATIONS[:BEFORE])
        monkeypatch.setattr(module, "LATEST", BEFORE)
    old = Tether(store_url)
    await old.open()
    now = old.clock.now()
    rows: list[tuple[str, str, str, str, float, str | None]] = []
    for i in range(5):  # five of one cause in `pay`, two of another in `ship`
        rows.append((new_id(), "acme", "pay", "fp-charge", now - 7200 + i, None))
    for i in range(2):
        rows.append((new_id(), "acme", "ship", "fp-pack", now - 60 + i, None))
    rows.append((new_id(), "globex", "pay", "fp-charge", now - 30, None))  # another tenant
    retried = rows[0][0]
    rows.append((new_id(), "acme", "pay", "", now - 10, retried))  # a re-run of the first

    async def write_old_rows(conn: object) -> None:
        for task_id, tenant, workflow, fingerprint, at, forked_from in rows:
            failed = bool(fingerprint)
            await conn.execute(  # type: ignore[attr-defined]
                "INSERT INTO tasks (id, tenant, workflow, workflow_version, queue, status, "
                "input, correlation_id, created_by, created_at, updated_at, finished_at, "
                "error, error_fingerprint, forked_from) VALUES (%s, %s, %s, 1, 'default', "
                "%s, 'null', %s, 'me', %s, %s, %s, %s, %s, %s)",
                (
                    task_id,
                    tenant,
                    workflow,
                    "failed" if failed else "succeeded",
                    task_id,
                    at - 1,
                    at,
                    at,
                    _error(fingerprint, "charge" if workflow == "pay" else "pack")
                    if failed
                    else None,
                    fingerprint or None,
                    forked_from,
                ),
            )

    await old.store._run(write_old_rows)  # type: ignore[attr-defined]
    assert await old.store.schema_version() == BEFORE
    await old.close()
    monkeypatch.undo()

    app = Tether(store_url)
    migration = await services.admin.migrate(app)
    assert (migration.before, migration.after) == (BEFORE, sqlite_store.LATEST)
    try:
        groups = {g.fingerprint: g for g in await app.dlq.groups(tenant="acme")}
        assert set(groups) == {"fp-charge", "fp-pack"}
        charge, pack = groups["fp-charge"], groups["fp-pack"]
        assert (charge.failures, charge.open, charge.status) == (5, 4, DlqGroupStatus.OPEN)
        assert (charge.step, charge.workflows) == ("charge", ["pay"])
        assert charge.first_seen == pytest.approx(now - 7200)
        assert charge.last_seen == pytest.approx(now - 7200 + 4)
        assert charge.example_task_id == rows[4][0], "the latest failure is the example"
        assert (pack.failures, pack.open, pack.step) == (2, 2, "pack")
        assert charge.trend is not None and sum(charge.trend.daily) == 5, "the trend too"
        members = await app.dlq.tasks("fp-charge", tenant="acme", state=DlqMemberState.RETRIED)
        assert [(m.task_id, m.retried_as) for m in members] == [(retried, rows[-1][0])]
        (theirs,) = await app.dlq.groups(tenant="globex")
        assert (theirs.fingerprint, theirs.failures, theirs.open) == ("fp-charge", 1, 1)
    finally:
        await app.close()
