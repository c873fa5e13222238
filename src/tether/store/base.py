"""The store interface: every database operation the engine and API need, by name.

The engine, the API and the CLI talk only to `Store`; SQLite and PostgreSQL implement
it, and one contract test suite runs against both. Operations a worker performs while
running tasks are sent in batches (`commit`), so that many tasks share one transaction
(group commit); every such operation is *fenced* by the task's attempt number, so a
worker that lost its lease cannot overwrite a newer attempt.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tether.models import (
    ApiKey,
    Approval,
    ApprovalFilter,
    Budget,
    Event,
    HookReceipt,
    SignalRecord,
    StepRecord,
    Task,
    TaskError,
    TaskFilter,
    TaskPhase,
    TaskStatus,
    WaitReason,
)
from tether.models.webhooks import WebhookSubscription
from tether.store.availability import Availability
from tether.store.breakers import BreakerStore
from tether.store.buckets import BucketStore
from tether.store.dlq import DlqStore
from tether.store.hub import Hub
from tether.store.notifications import NotificationStore
from tether.store.outbox import OutboxStore
from tether.store.rollouts import RolloutStore
from tether.store.schedules import ScheduleStore
from tether.store.spend import SpendStore
from tether.store.step_limits import StepLimitStore


@dataclass
class NewTask:
    """A task to create. `input` is the JSON text of the validated input."""

    id: str
    tenant: str
    workflow: str
    workflow_version: int
    queue: str
    input: str
    input_hash: str
    priority: int = 0
    idempotency_key: str | None = None
    idempotency_ttl: float = 86400.0
    correlation_id: str | None = None
    created_by: str | None = None
    deadline: float | None = None
    run_at: float | None = None
    forked_from: str | None = None
    fork_from_seq: int | None = None
    parent_id: str | None = None
    """A child task's parent (`ctx.start_child`), of the same tenant."""
    parent_seq: int | None = None
    """The parent's call site: the step-log position where it records this child's
    outcome."""
    parent_policy: str | None = None
    """What happens to this child when its parent ends first: `cancel` or `abandon`."""
    callback: WebhookSubscription | None = None
    """The task's own webhook subscription (`callback_url`), created with it."""
    fair_key: str | None = None
    """The key fair claiming serves this task by (None: its tenant; ADR 88)."""
    fair_weight: float = 1.0
    """Its key's share against other keys: a key of weight 2 gets two turns to one."""
    concurrency_key: str | None = None
    """The concurrency key it is admitted under (ADR 89), with its limit:"""
    concurrency_max: int = 0
    phase: TaskPhase = TaskPhase.EXECUTION
    """A fork's phase: `compensation` for an operator's compensate (ADR 83); a new
    task's is always `execution`."""
    spend_budget: Budget | None = None
    """The task's own limit on spend (`spend_budget=`), None for none (ADR 92)."""


@dataclass
class Submitted:
    """What `submit` did for one `NewTask`: created it, or found it by idempotency key."""

    task: Task
    created: bool
    claimed: Claimed | None = None
    """Set when the task was created already claimed for an `Eager` worker."""
    callback: WebhookSubscription | None = None
    """The task's callback subscription, when the submission asked for one (on a
    replay, the one made the first time)."""


@dataclass
class Eager:
    """Create up to `limit` of a submission's new tasks already claimed by `worker` (of
    the submitting process), leased until `lease_until`: tasks due now, of its `queues`,
    not forks. They skip the queue and the claim round trip (ADR 47)."""

    worker: str
    lease_until: float
    limit: int
    queues: list[str]


@dataclass
class Claimed:
    """A task a worker now holds, with what replay needs."""

    task: Task
    steps: dict[int, StepRecord]
    signals: list[SignalRecord]
    approvals: dict[int, Approval]
    recovered: bool = False
    """True when the task was taken over after another worker's lease expired."""


@dataclass
class ClaimOutcome:
    """What one claim did: the tasks it took, and the tasks it failed instead of
    recovering them (their lease had expired `max_lease_expiries` times in a row:
    error `WorkerLost`), as they now stand."""

    claimed: list[Claimed]
    lost: list[Task]


@dataclass
class WorkerPresence:
    """A worker as it records itself: what it claims, when it started, when last seen."""

    id: str
    queues: list[str]
    workflows: list[tuple[str, int]]
    """The (workflow, version) pairs it claims."""
    started_at: float
    seen_at: float


@dataclass
class QueuedVersion:
    """The runnable queued tasks of one (queue, workflow, version)."""

    queue: str
    workflow: str
    version: int
    tasks: int
    oldest: float
    """Age in seconds of the one that became runnable first."""


@dataclass
class InboundHook:
    """A verified inbound webhook to act on: start `start`, or send the signal
    `signal_name` (JSON `signal_payload`) to `signal_task`. Its receipt is kept for
    `ttl` seconds under (`hook`, `webhook_id`)."""

    hook: str
    webhook_id: str
    tenant: str
    ttl: float
    start: NewTask | None = None
    signal_task: str | None = None
    signal_name: str | None = None
    signal_payload: str = "null"


# Operations a worker commits in batches ------------------------------------------------


@dataclass
class StepWrite:
    """Record (or update a pending) step-log entry; optionally consume a signal."""

    task_id: str
    attempt: int
    record: StepRecord
    consume_signal: int | None = None


@dataclass
class OpenApproval:
    """Store the approval request made at step `approval.seq`."""

    task_id: str
    attempt: int
    approval: Approval


@dataclass
class ExpireApproval:
    """Apply the timeout of the approval `approval_id` (of this task) if it is still
    pending; a decision that committed first stands. The run reads the outcome back."""

    task_id: str
    attempt: int
    approval_id: str


@dataclass
class Finish:
    """Move the task to a terminal state, after recording `steps` (step results the
    workflow had not waited for: its last steps before returning) in the same
    transaction: all of it applies, or none (ADR 44)."""

    task_id: str
    attempt: int
    status: TaskStatus
    result: str | None = None
    error: TaskError | None = None
    decision: str | None = None
    steps: tuple[StepWrite, ...] = ()
    parent_id: str | None = None
    """The task's parent, when it is a child: its end wakes the parent if it waits."""
    children: bool = False
    """The task started children: its end cancels those still running whose policy is
    `cancel` (ADR 82)."""


@dataclass
class Suspend:
    """Put the task in `waiting`, free its lease, wake it at `run_at` (None: never by time).

    If a signal named in `signals` is already there, the task is queued again at once
    instead, so a signal that raced the suspension is not lost.
    """

    task_id: str
    attempt: int
    reason: WaitReason
    run_at: float | None
    signals: list[str] = field(default_factory=list)
    children: bool = False
    """The task waits for children: if one ended whose outcome its log lacks (it ended
    while the task ran), the task is queued again at once instead."""


@dataclass
class Release:
    """Hand the task back to the queue (worker shutdown), to resume from its log."""

    task_id: str
    attempt: int
    decision: str = "worker_shutdown"
    queue: str | None = None
    """Hand it to this queue instead of its own (`routed`: a step that names a queue;
    ADR 93); the queue it was submitted to is kept as its `home_queue`."""


Op = StepWrite | OpenApproval | ExpireApproval | Finish | Suspend | Release


EVENT_SETTLE_SECONDS = 6.0
"""After this long every event of an ended task is visible to readers (ADR 13)."""


def is_final_event(event: Event) -> bool:
    """The event that ends a task (its transition to a terminal state)."""
    return event.new_status in ("succeeded", "failed", "cancelled")


def events_complete(task: Task, saw_final_event: bool, now: float) -> bool:
    """Whether a reader tailing `task`'s events has seen them all: the task ended and its
    final event was read, or it ended long enough ago that nothing can be held back (on
    PostgreSQL, events of transactions still settling are, for a moment: ADR 13)."""
    if not task.status.terminal:
        return False
    return saw_final_event or (task.finished_at or 0.0) <= now - EVENT_SETTLE_SECONDS


class Store(
    OutboxStore,
    NotificationStore,
    ScheduleStore,
    RolloutStore,
    DlqStore,
    BucketStore,
    BreakerStore,
    StepLimitStore,
    SpendStore,
    abc.ABC,
):
    """One database, seen through the operations Tether needs (the webhook outbox's
    among them: `tether.store.outbox`; the notification outbox's:
    `tether.store.notifications`; the schedules': `tether.store.schedules`; the
    dead-letter queue's: `tether.store.dlq`; the rate-limit buckets':
    `tether.store.buckets`; the step gates': `tether.store.breakers` and
    `tether.store.step_limits`)."""

    hub: Hub
    """In-process notifications: new work, task changes (fed by PostgreSQL NOTIFY too)."""

    url_for_display: str = ""

    availability: Availability
    """Whether the database can be used now, as this store's operations found it; an
    operation that cannot reach it raises `tether.errors.StoreUnavailable` (ADR 71)."""

    # life cycle -----------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self, *, check_schema: bool = True) -> None:
        """Connect; raise `SchemaOutOfDate` when `check_schema` and migrations are due."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection and thread."""

    @abc.abstractmethod
    async def migrate(self) -> list[int]:
        """Apply pending schema migrations; return the versions applied."""

    @abc.abstractmethod
    async def schema_version(self) -> int:
        """The version of the schema in the database (0 when empty)."""

    # intake ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def submit(
        self, tasks: list[NewTask], now: float, eager: Eager | None = None
    ) -> list[Submitted]:
        """Create tasks in one transaction; all or nothing. With `eager`, some may be
        created already claimed (see `Eager`).

        A task whose (tenant, idempotency key) is already in its retention window returns
        the existing task when the input hash matches and raises `IdempotencyConflict`
        otherwise (the whole batch is rolled back).
        """

    # queries --------------------------------------------------------------------------
    @abc.abstractmethod
    async def get_task(self, task_id: str, tenant: str | None = None) -> Task | None:
        """A task by id, or None; with `tenant`, None for another tenant's task."""

    @abc.abstractmethod
    async def list_tasks(self, flt: TaskFilter) -> list[Task]:
        """Tasks newest first, at most `flt.limit`."""

    @abc.abstractmethod
    async def get_steps(self, task_id: str) -> list[StepRecord]:
        """The step log of a task, in sequence order."""

    @abc.abstractmethod
    async def list_events(
        self,
        *,
        tenant: str | None = None,
        task_id: str | None = None,
        after: int = 0,
        limit: int = 500,
    ) -> list[Event]:
        """Events with id greater than `after`, oldest first."""

    @abc.abstractmethod
    async def count_by_status(self, tenant: str | None = None) -> dict[tuple[str, str], int]:
        """Task counts by (queue, status), for queue health and metrics."""

    @abc.abstractmethod
    async def oldest_queued(self, now: float, tenant: str | None = None) -> dict[str, float]:
        """Per queue, the age in seconds of the oldest runnable queued task (of `tenant`,
        or of all tenants)."""

    @abc.abstractmethod
    async def next_wake(self, queues: list[str]) -> float | None:
        """The earliest time a queued or waiting task of `queues` becomes runnable, or
        None when none will by time alone."""

    # workers --------------------------------------------------------------------------
    @abc.abstractmethod
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
        """Take up to `limit` runnable tasks: queued and due, waiting and due, or running
        with an expired lease; of the given (workflow, version) pairs only, when
        `workflows` is given (None: any). Each claim increments the task's attempt
        number. A task whose lease expired for the `max_lease_expiries`-th time in a
        row, with no step recorded since the previous expiry, is failed (`WorkerLost`,
        decision `worker_lost`) instead of taken; it counts against `limit` (0: no
        such limit)."""

    @abc.abstractmethod
    async def commit(self, ops: list[Op], worker: str, now: float) -> list[bool]:
        """Apply worker operations in one transaction. An entry is False when the op was
        fenced off (the worker no longer holds that attempt of the task)."""

    @abc.abstractmethod
    async def heartbeat(
        self, worker: str, task_ids: list[str], now: float, lease_until: float
    ) -> dict[str, bool]:
        """Extend, in one statement, the leases `worker` holds on `task_ids` (the tasks
        it is running: a run it abandoned must be left to expire). Returns the tasks it
        still holds, each with whether its cancellation was requested."""

    @abc.abstractmethod
    async def worker_seen(self, worker: WorkerPresence) -> None:
        """Record that `worker` is alive (at `worker.seen_at`) and what it claims; forget
        workers not seen for a day."""

    @abc.abstractmethod
    async def worker_gone(self, worker_id: str) -> None:
        """Forget a worker that stopped."""

    @abc.abstractmethod
    async def live_workers(self, seen_since: float) -> list[WorkerPresence]:
        """The workers seen at or after `seen_since`."""

    @abc.abstractmethod
    async def queued_by_version(self, now: float) -> list[QueuedVersion]:
        """Runnable queued tasks counted by (queue, workflow, version), every tenant."""

    # control --------------------------------------------------------------------------
    @abc.abstractmethod
    async def cancel(
        self,
        task_id: str,
        tenant: str | None,
        by: str | None,
        now: float,
        compensate: bool = False,
    ) -> Task:
        """Cancel a queued or waiting task now, or ask its worker to cancel a running one.
        With `compensate`, a run ends it after undoing its completed steps (a task not
        running is queued for that run). Raises `TaskNotFound` or `InvalidTransition`
        (terminal task)."""

    @abc.abstractmethod
    async def send_signal(
        self, task_id: str, tenant: str | None, name: str, payload: str, now: float
    ) -> SignalRecord:
        """Store a signal for a task; wake it when it waits for signals."""

    @abc.abstractmethod
    async def fork(
        self, task_id: str, tenant: str | None, new: NewTask, from_seq: int | None, now: float
    ) -> Task:
        """Create `new` as a re-run of a failed or cancelled task, copying its succeeded
        step-log entries below `from_seq` (all when None) so they are not run again."""

    @abc.abstractmethod
    async def ended_children(self, parent_id: str) -> dict[int, Task]:
        """The children of `parent_id` that ended and whose outcome the parent's step log
        does not hold yet, by the parent's call site (`NewTask.parent_seq`)."""

    # approvals ------------------------------------------------------------------------
    @abc.abstractmethod
    async def get_approval(self, approval_id: str, tenant: str | None = None) -> Approval | None:
        """An approval by id, or None (also for another tenant's)."""

    @abc.abstractmethod
    async def list_approvals(self, flt: ApprovalFilter) -> list[Approval]:
        """Approvals newest first (ties by id, descending), from `flt.before` on."""

    @abc.abstractmethod
    async def decide(
        self,
        approval_id: str,
        tenant: str | None,
        decision: dict[str, Any],
        now: float,
    ) -> Approval:
        """Add a reviewer's decision (`reviewer`, `approve`, `reason`, `changes`).

        Closes the approval when enough distinct approvers agreed or anyone rejected,
        and wakes the task. Raises `InvalidTransition` when it is closed already or past
        its timeout (the outcome that stands is in the exception's `approval`)."""

    # API keys -------------------------------------------------------------------------
    @abc.abstractmethod
    async def create_api_key(self, key: ApiKey) -> None:
        """Store a new API key (its secret already hashed)."""

    @abc.abstractmethod
    async def get_api_key(self, key_id: str) -> ApiKey | None:
        """An API key by id (revoked ones too), or None."""

    @abc.abstractmethod
    async def revoke_api_key(self, key_id: str, tenant: str | None, now: float) -> bool:
        """Revoke a key; False when there is no such live key (for this tenant)."""

    # inbound webhooks -------------------------------------------------------------------
    @abc.abstractmethod
    async def receive_hook(self, hook: InboundHook, now: float) -> HookReceipt:
        """Act on a verified inbound webhook once: start its task or send its signal in
        the transaction that stores its receipt. A live receipt for the same hook and
        webhook-id is returned instead (`replayed`), and nothing happens again. Raises
        `TaskNotFound` / `InvalidTransition` for a signal to a missing or ended task."""

    # housekeeping ---------------------------------------------------------------------
    @abc.abstractmethod
    async def purge(
        self, finished_before: float, batch: int = 500, now: float | None = None
    ) -> int:
        """Delete up to `batch` terminal tasks finished before the cutoff, with their
        steps, signals, approvals and events; return how many were deleted. Failed tasks
        still open in the dead-letter queue leave their groups, with an `expire` entry
        in each group's audit trail at `now` (default: the cutoff)."""
