"""`SQLStore`: the `Store` methods, mapped onto the shared logic in `tether.store.sql`.

A driver subclass supplies `_run` (one transaction around one unit of work) and the
life-cycle methods; everything else, and so every semantic, is common to both backends.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from tether.errors import ApprovalClosed
from tether.models import (
    ApiKey,
    Approval,
    ApprovalFilter,
    Event,
    HookReceipt,
    NotificationRecord,
    SignalRecord,
    StepRecord,
    Task,
    TaskFilter,
    TaskStatus,
    WaitReason,
)
from tether.store import sql
from tether.store.base import (
    Claimed,
    Eager,
    Finish,
    InboundHook,
    NewTask,
    Op,
    QueuedVersion,
    Release,
    Store,
    Submitted,
    Suspend,
    WorkerPresence,
)
from tether.store.coalesce import SubmitCoalescer
from tether.store.hub import Hub, TaskChange
from tether.store.sqlbuckets import SQLBuckets
from tether.store.sqldlq import SQLDlq
from tether.store.sqlgates import SQLBreakers, SQLStepLimits
from tether.store.sqloutbox import SQLOutbox
from tether.store.sqlrollouts import SQLRollouts
from tether.store.sqlschedules import SQLSchedules
from tether.store.sqlspend import SQLSpend

T = TypeVar("T")
log = logging.getLogger("tether.store")
_DECIDED_WAITS = (WaitReason.APPROVAL, WaitReason.BUDGET)
"""Waits a decision ends: one that raced the suspension re-queues the task in it."""
Work = Callable[[sql.Conn], Awaitable[T]]


class SQLStore(
    SQLOutbox,
    SQLSchedules,
    SQLRollouts,
    SQLDlq,
    SQLBuckets,
    SQLBreakers,
    SQLStepLimits,
    SQLSpend,
    Store,
    abc.ABC,
):
    """A `Store` whose semantics live in `tether.store.sql`."""

    dialect: sql.Dialect

    def __init__(self) -> None:
        self.hub = Hub()
        self._reads: list[tuple[str, str | None, asyncio.Future[Task | None]]] = []
        self._intake = SubmitCoalescer(self._write_submits)
        self._read_batches: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Future[None] | None = None
        self._refresh_again = False
        self._keyed = False
        """Tasks with a concurrency key were seen: an end may have queued a waiter
        (a trigger does it, ADR 89), so ends wake this process's claim loops."""

    @abc.abstractmethod
    async def _run(self, work: Work[T], *, write: bool = True, durable: bool = True) -> T:
        """Run `work` in a transaction of its own (drivers may group-commit writes).
        `durable=False`: a write that needs no flush of its own, committed without
        waiting for the disk where the driver can (ADR 75)."""

    async def _run_ops(self, ops: list[Op], worker: str, now: float) -> list[bool]:
        """Apply worker ops in one transaction. Drivers may override to batch further."""
        d = self.dialect

        async def work(conn: sql.Conn) -> list[bool]:
            return await sql.apply_ops(conn, d, ops, worker, now)

        return await self._run(work)

    # other processes ------------------------------------------------------------------
    def _tasks_changed_elsewhere(self) -> None:
        """Another process changed tasks (which ones, the driver's signal does not say):
        tell this process's waiters of those that ended or now wait, in one query, and
        again while more such news arrives meanwhile. A task whose row is the one its
        waiters last read (`Hub.saw`) is not news. Runs on the event loop."""
        self._refresh_again = True
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.ensure_future(self._refresh_watched())

    async def _stop_refresh(self) -> None:
        """On close: a refresh still running reads nothing more."""
        self._refresh_again = False
        if self._refresher is not None and not self._refresher.done():
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        self._refresher = None

    async def _refresh_watched(self) -> None:
        while self._refresh_again:
            self._refresh_again = False
            task_ids = self.hub.watched()
            if task_ids:
                await self._refresh(task_ids)

    async def _refresh(self, task_ids: list[str]) -> None:
        d = self.dialect
        try:
            ids = d.list_param(task_ids)

            async def work(conn: sql.Conn) -> list[sql.Row]:
                return await conn.fetchall(
                    f"SELECT id, status, updated_at FROM tasks WHERE id {d.any_of} AND "
                    "status IN ('waiting', 'succeeded', 'failed', 'cancelled')",
                    (ids,),
                )

            for row in await self._run(work, write=False):
                if self.hub.is_news(row["id"], row["updated_at"]):
                    self.hub.task_changed(row["id"], row["status"])
        except Exception as exc:  # a missed wake-up costs latency only: polling remains
            log.debug("refreshing watched tasks failed: %s", exc)

    # intake ---------------------------------------------------------------------------
    async def submit(
        self, tasks: list[NewTask], now: float, eager: Eager | None = None
    ) -> list[Submitted]:
        if eager is None:
            out = await self._intake.submit(tasks, now)
        else:  # tasks this process's worker claims as it stores them: written alone
            out = await self._write_submits(tasks, now, eager)
        for s in out:
            if s.created and s.claimed is None:
                self.hub.notify_work(s.task.queue)
        self.hub.notify_events()
        self._keyed = self._keyed or any(t.concurrency_key is not None for t in tasks)
        return out

    async def _write_submits(
        self, tasks: list[NewTask], now: float, eager: Eager | None = None
    ) -> list[Submitted]:
        d = self.dialect
        return await self._run(lambda c: sql.submit(c, d, tasks, now, eager))

    # queries --------------------------------------------------------------------------
    async def get_task(self, task_id: str, tenant: str | None = None) -> Task | None:
        # Reads of one event-loop turn share one query: 500 `handle.result()` calls, or
        # a crowd of pollers, cost one round trip instead of 500 queued behind the writes.
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Task | None] = loop.create_future()
        self._reads.append((task_id, tenant, fut))
        if len(self._reads) == 1:
            loop.call_soon(self._start_read_batch)
        return await fut

    def _start_read_batch(self) -> None:
        reads, self._reads = self._reads, []
        batch = asyncio.create_task(self._read_batch(reads))
        self._read_batches.add(batch)
        batch.add_done_callback(self._read_batches.discard)

    async def _read_batch(
        self, reads: list[tuple[str, str | None, asyncio.Future[Task | None]]]
    ) -> None:
        d = self.dialect
        ids = sorted({task_id for task_id, _, _ in reads})
        try:
            found = await self._run(lambda c: sql.get_tasks(c, d, ids), write=False)
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else RuntimeError("the read was cancelled")
            for _, _, fut in reads:
                if not fut.done():
                    fut.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        for task_id, tenant, fut in reads:
            task = found.get(task_id)
            if task is not None:
                self.hub.saw(task_id, task.updated_at)
            if task is not None and tenant is not None and task.tenant != tenant:
                task = None  # another tenant's task does not exist for this caller
            if not fut.done():
                fut.set_result(task)

    async def list_tasks(self, flt: TaskFilter) -> list[Task]:
        d = self.dialect
        return await self._run(lambda c: sql.list_tasks(c, d, flt), write=False)

    async def get_steps(self, task_id: str) -> list[StepRecord]:
        return await self._run(lambda c: sql.get_steps(c, task_id), write=False)

    async def list_events(
        self,
        *,
        tenant: str | None = None,
        task_id: str | None = None,
        after: int = 0,
        limit: int = 500,
    ) -> list[Event]:
        d = self.dialect
        return await self._run(
            lambda c: sql.list_events(c, d, tenant, task_id, after, limit), write=False
        )

    async def count_by_status(self, tenant: str | None = None) -> dict[tuple[str, str], int]:
        return await self._run(lambda c: sql.count_by_status(c, tenant), write=False)

    async def oldest_queued(self, now: float, tenant: str | None = None) -> dict[str, float]:
        return await self._run(lambda c: sql.oldest_queued(c, now, tenant), write=False)

    async def next_wake(self, queues: list[str]) -> float | None:
        d = self.dialect
        return await self._run(lambda c: sql.next_wake(c, d, queues), write=False)

    # workers --------------------------------------------------------------------------
    async def claim(
        self,
        worker: str,
        queues: list[str],
        limit: int,
        now: float,
        lease_until: float,
        workflows: Sequence[tuple[str, int]] | None = None,
        max_lease_expiries: int = 0,
    ) -> list[Claimed]:
        d = self.dialect
        outcome = await self._run(
            lambda c: sql.claim(
                c, d, worker, queues, limit, now, lease_until, workflows, max_lease_expiries
            ),
            durable=False,
        )
        self._announce_lost(outcome.lost)
        await self._lost_families(outcome.lost, now)
        if outcome.claimed or outcome.lost:
            self.hub.notify_events()
        if any(c.task.concurrency_key is not None for c in outcome.claimed):
            self._keyed = True
        if self._keyed and outcome.lost:
            self.hub.notify_all_work()
        return outcome.claimed

    async def _lost_families(self, lost: list[Task], now: float) -> None:
        """What the tasks a claim failed as `WorkerLost` do to their families (wake
        parents, cancel children; ADR 82): in a transaction after the claim's, as the
        PostgreSQL claim is one statement of its own."""
        if not lost:
            return
        d = self.dialect
        parents = [t.parent_id for t in lost if t.parent_id is not None]
        ended = [t.id for t in lost]
        await self._run(lambda c: sql.family_ended(c, d, parents, ended, now))
        self.hub.notify_all_work()

    async def ended_children(self, parent_id: str) -> dict[int, Task]:
        return await self._run(lambda c: sql.ended_children(c, parent_id), write=False)

    def _announce_lost(self, lost: list[Task]) -> None:
        """Tell this process's waiters of the tasks a claim failed as `WorkerLost` (the
        claim's own NOTIFY is not echoed to this process), and say so in the log."""
        for task in lost:
            log.warning(
                "task %s failed: %s", task.id, task.error.message if task.error else "worker lost"
            )
            self.hub.task_changed(
                task.id, TaskChange(str(task.status), ended=True, result=None, error=task.error)
            )

    async def commit(self, ops: list[Op], worker: str, now: float) -> list[bool]:
        results = await self._run_ops(ops, worker, now)
        self.hub.notify_events()
        if self._keyed and any(isinstance(op, Finish) for op in ops):
            self.hub.notify_all_work()  # a waiter of a concurrency key it may have queued
        for op, ok in zip(ops, results, strict=True):
            if not ok:
                continue
            if isinstance(op, Finish):
                if op.parent_id is not None or op.children:
                    self.hub.notify_all_work()  # a parent it woke, children it cancelled
                self.hub.task_changed(
                    op.task_id,
                    TaskChange(str(op.status), ended=True, result=op.result, error=op.error),
                )
            elif isinstance(op, Release):
                self.hub.notify_all_work()  # another local worker may take it at once
            elif isinstance(op, Suspend):
                self.hub.task_changed(op.task_id, str(TaskStatus.WAITING))
                # A signal or decision that raced the suspension re-queues the task
                # inside the commit: let local workers look at once.
                due = op.run_at is not None and op.run_at <= now
                if (
                    due
                    or op.signals
                    or op.children
                    or op.reason in (*_DECIDED_WAITS, *sql.GATE_REASONS)
                ):
                    self.hub.notify_all_work()
        return results

    async def heartbeat(
        self, worker: str, task_ids: list[str], now: float, lease_until: float
    ) -> dict[str, bool]:
        d = self.dialect
        return await self._run(lambda c: sql.heartbeat(c, d, worker, task_ids, lease_until))

    async def worker_seen(self, worker: WorkerPresence) -> None:
        await self._run(lambda c: sql.worker_seen(c, worker))

    async def worker_gone(self, worker_id: str) -> None:
        await self._run(lambda c: sql.worker_gone(c, worker_id))

    async def live_workers(self, seen_since: float) -> list[WorkerPresence]:
        return await self._run(lambda c: sql.live_workers(c, seen_since), write=False)

    async def queued_by_version(self, now: float) -> list[QueuedVersion]:
        return await self._run(lambda c: sql.queued_by_version(c, now), write=False)

    # control --------------------------------------------------------------------------
    async def cancel(
        self,
        task_id: str,
        tenant: str | None,
        by: str | None,
        now: float,
        compensate: bool = False,
    ) -> Task:
        d = self.dialect
        task = await self._run(lambda c: sql.cancel(c, d, task_id, tenant, by, now, compensate))
        self.hub.notify_events()
        self.hub.task_changed(task_id, str(task.status))
        if task.status == TaskStatus.QUEUED:
            self.hub.notify_work(task.queue)
        if task.concurrency_key is not None:
            self.hub.notify_all_work()  # a waiter of its key may be queued now
        return task

    async def send_signal(
        self, task_id: str, tenant: str | None, name: str, payload: str, now: float
    ) -> SignalRecord:
        d = self.dialect
        sig = await self._run(lambda c: sql.send_signal(c, d, task_id, tenant, name, payload, now))
        self.hub.notify_events()
        self.hub.notify_all_work()
        return sig

    async def fork(
        self, task_id: str, tenant: str | None, new: NewTask, from_seq: int | None, now: float
    ) -> Task:
        d = self.dialect
        task = await self._run(lambda c: sql.fork(c, d, task_id, tenant, new, from_seq, now))
        self.hub.notify_events()
        self.hub.notify_work(task.queue)
        return task

    # approvals ------------------------------------------------------------------------
    async def get_approval(self, approval_id: str, tenant: str | None = None) -> Approval | None:
        return await self._run(lambda c: sql.get_approval(c, approval_id, tenant), write=False)

    async def list_approvals(self, flt: ApprovalFilter) -> list[Approval]:
        return await self._run(lambda c: sql.list_approvals(c, flt), write=False)

    async def decide(
        self, approval_id: str, tenant: str | None, decision: dict[str, Any], now: float
    ) -> Approval:
        d = self.dialect
        approval, refusal = await self._run(
            lambda c: sql.decide(c, d, approval_id, tenant, decision, now)
        )
        self.hub.notify_events()
        if approval.status != "pending":
            self.hub.notify_all_work()
            self.hub.task_changed(approval.task_id, "queued")
        if refusal is not None:
            raise ApprovalClosed(refusal, approval)
        return approval

    # API keys -------------------------------------------------------------------------
    async def create_api_key(self, key: ApiKey) -> None:
        await self._run(lambda c: sql.create_api_key(c, key))

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        return await self._run(lambda c: sql.get_api_key(c, key_id), write=False)

    async def revoke_api_key(self, key_id: str, tenant: str | None, now: float) -> bool:
        return await self._run(lambda c: sql.revoke_api_key(c, key_id, tenant, now))

    # notifications (ADR 69) -------------------------------------------------------------
    async def notify_position(self, cursor: str, now: float) -> int:
        d = self.dialect
        return await self._run(lambda c: sql.notify_position(c, d, cursor, now))

    async def advance_notify_cursor(
        self,
        cursor: str,
        seen: int,
        position: int,
        records: list[NotificationRecord],
        now: float,
    ) -> bool:
        return await self._run(
            lambda c: sql.advance_notify_cursor(c, cursor, seen, position, records, now)
        )

    async def add_notifications(self, records: list[NotificationRecord], now: float) -> None:
        await self._run(lambda c: sql.add_notifications(c, records, now))

    async def claim_notifications(
        self, worker: str, limit: int, now: float, lease_until: float
    ) -> list[NotificationRecord]:
        d = self.dialect
        return await self._run(
            lambda c: sql.claim_notifications(c, d, worker, limit, now, lease_until)
        )

    async def settle_notification(
        self,
        record: NotificationRecord,
        worker: str,
        status: str,
        error: str | None,
        next_at: float | None,
        now: float,
    ) -> bool:
        return await self._run(
            lambda c: sql.settle_notification(c, record, worker, status, error, next_at, now)
        )

    async def list_notifications(
        self, *, tenant: str | None = None, task_id: str | None = None, limit: int = 500
    ) -> list[NotificationRecord]:
        return await self._run(
            lambda c: sql.list_notifications(c, tenant, task_id, limit), write=False
        )

    # inbound webhooks -------------------------------------------------------------------
    async def receive_hook(self, hook: InboundHook, now: float) -> HookReceipt:
        d = self.dialect
        receipt, submitted = await self._run(lambda c: sql.receive_hook(c, d, hook, now))
        if submitted is not None and submitted.created:
            self.hub.notify_work(submitted.task.queue)
        elif receipt.action == "signalled" and not receipt.replayed:
            self.hub.notify_all_work()
        return receipt

    # housekeeping ---------------------------------------------------------------------
    async def purge(
        self, finished_before: float, batch: int = 500, now: float | None = None
    ) -> int:
        d = self.dialect
        at = finished_before if now is None else now
        return await self._run(lambda c: sql.purge(c, d, finished_before, batch, at))
