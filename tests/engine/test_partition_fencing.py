"""A worker cut off from the database (a partition: the server stays up for the others)
keeps running through it (ADR 71), and fencing still decides: cut off for longer than
its lease, with another worker taking the task over meanwhile, it gives the task up when
it reconnects, writes nothing of the attempt it lost, and runs no further step; cut off
while nobody took the task, it keeps it and finishes it on its first attempt."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import pytest

from helpers import all_events, wait_status
from mp import wait_for
from tcp_cut import CuttableLink
from tether import Context, TaskStatus, Tether

LEASE_TTL = 1.0


def through(url: str, link: CuttableLink) -> str:
    """`url` with its host and port replaced by the link's."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{link.port}"))


async def lease_expired(app: Tether, task_id: str) -> bool:
    """The task's lease, as the database has it, has run out."""

    async def read(conn: object) -> bool:
        row = await conn.fetchone(  # type: ignore[attr-defined]
            "SELECT lease_expires_at < %s AS expired FROM tasks WHERE id = %s",
            (app.clock.now(), task_id),
        )
        return bool(row and row["expired"])

    return bool(await app.store._run(read, write=False))  # type: ignore[attr-defined]


async def cut_off_store_knows(app: Tether) -> bool:
    """The cut-off worker's store has found the database unavailable."""
    return not app.store.availability.reachable


async def _cut_off_worker(pg_url: str, take_over: bool, caplog: pytest.LogCaptureFixture) -> None:
    parts = urlsplit(pg_url)
    link = CuttableLink(parts.hostname or "127.0.0.1", parts.port or 5432)
    await link.start()
    cut_off, direct = Tether(through(pg_url, link)), Tether(pg_url)
    ran: list[str] = []
    started, gate = asyncio.Event(), asyncio.Event()

    async def first() -> int:
        ran.append("first")
        started.set()
        await gate.wait()
        return 1

    async def second() -> int:
        ran.append("second")
        return 2

    for app in (cut_off, direct):

        @app.workflow("two_steps")
        async def two_steps(ctx: Context) -> int:
            return await ctx.step("first", first) + await ctx.step("second", second)

    try:
        await direct.open()
        handle = await direct.submit("two_steps")
        async with cut_off.worker(lease_ttl=LEASE_TTL, poll_interval=0.1, eager=False) as worker:
            await asyncio.wait_for(started.wait(), 10)
            await link.cut()
            if take_over:
                # Another worker takes the task once the lease has run out (it can: it
                # reaches the database).
                async def taken() -> bool:
                    now = direct.clock.now()
                    got = await direct.store.claim(
                        "other", ["default"], 1, now, now + 60, [("two_steps", 1)]
                    )
                    return bool(got)

                await wait_for(taken, 10, "the other worker to take the task over")
            else:
                await wait_for(lambda: lease_expired(direct, handle.id), 10, "the lease to expire")
            gate.set()  # the first step ends while cut off: its result waits to commit
            await wait_for(lambda: cut_off_store_knows(cut_off), 10, "the store to see the cut")
            await link.restore()
            if take_over:

                async def gave_up() -> bool:
                    return worker.idle

                await wait_for(gave_up, 10, "the cut-off worker to give the task up")
            else:
                await wait_status(direct, handle.id, TaskStatus.SUCCEEDED, timeout=10)
        task = await direct.get(handle.id)
        events = await all_events(direct.store, handle.id)
        if take_over:
            assert ran == ["first"], "no step runs after the lease was lost"
            assert task.status == TaskStatus.RUNNING and task.attempt == 2, task
            assert await direct.steps(handle.id) == [], "the lost attempt wrote nothing"
            assert [e.type for e in events if e.attempt == 1] == ["task.started"], events
        else:
            assert ran == ["first", "second"] and task.attempt == 1, (ran, task)
            assert task.result == 3
            assert "abandoning" not in caplog.text
    finally:
        gate.set()
        await cut_off.close()
        await direct.close()
        await link.close()


async def test_cut_off_past_its_lease_while_another_takes_over(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _cut_off_worker(pg_url, take_over=True, caplog=caplog)


async def test_cut_off_past_its_lease_while_nobody_takes_over(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _cut_off_worker(pg_url, take_over=False, caplog=caplog)
