"""`Tether`: the application object. Registers workflows and steps, submits tasks,
runs workers, and answers queries; the HTTP API and the CLI call these same methods."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from tether import egress, serde, storable
from tether.agents.prices import PriceTable
from tether.clock import Clock, SystemClock
from tether.config import Settings, load_settings, local_identity
from tether.dlq import DeadLetters
from tether.engine.approvals import PolicyBook, RiskPolicy
from tether.engine.children import ChildOptions
from tether.engine.gates import StepGate
from tether.engine.registry import (
    Registry,
    StepDef,
    WorkflowDef,
    WorkflowFn,
    WorkflowVersion,
    workflow_name,
)
from tether.engine.worker import Worker
from tether.errors import (
    Classifier,
    ConfigError,
    InputValidationError,
    InvalidTransition,
    TaskNotFound,
    UnknownStep,
)
from tether.flow import BudgetBook, RateLimit, RateLimitGate, RateLimits, SpendGate
from tether.flow.breakers import BreakerGate, policies_from_config
from tether.flow.integrations import IntegrationGate
from tether.flow.step_limits import StepLimitGate, limits_from_config
from tether.handle import WAIT_POLL_FIRST, WAIT_POLL_MAX, TaskHandle
from tether.ids import new_id
from tether.inbound import HookBook
from tether.models import (
    Approval,
    ApprovalFilter,
    Budget,
    DaySpend,
    SignalRecord,
    SpendLine,
    StepRecord,
    Task,
    TaskFilter,
    TaskPhase,
    TaskStatus,
)
from tether.models.breakers import BreakerPolicy
from tether.models.budgets import check_day, utc_day
from tether.models.schedules import Schedule
from tether.models.step_limits import StepLimit
from tether.models.webhooks import TERMINAL_EVENTS, WebhookSubscription
from tether.notify import Notifications
from tether.pipelines import Subscriptions, event_key
from tether.registration import DeclaredSchedule, Registration
from tether.rollouts import RolloutBook, route
from tether.schedules.scheduler import Scheduler, SchedulerOptions
from tether.store import open_store
from tether.store.base import Claimed, Eager, NewTask, Store
from tether.submission import batch_item_key, submission_hash
from tether.webhooks import DisabledHook, DispatchConfig, Dispatcher
from tether.webhooks.signing import new_secret

if TYPE_CHECKING:
    from tether.models import Notification

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["WAIT_POLL_FIRST", "WAIT_POLL_MAX", "TaskHandle", "Tether"]


def _timestamp(value: datetime | float | None) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else value


class Tether(Registration):
    """A Tether application: workflows, steps, a store, and the ways to run them.

    `database_url` (else `TETHER_DATABASE_URL`, the config file, or a SQLite file in the
    working directory) picks the store. The store opens on first use, creating the
    schema in an empty database; an older schema must be migrated (`tether migrate`).
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        store: Store | None = None,
        clock: Clock | None = None,
        classifiers: Sequence[Classifier] = (),
    ) -> None:
        self.settings = settings or load_settings({"database_url": database_url})
        self.store: Store = store or open_store(self.settings.database_url)
        self.clock: Clock = clock or SystemClock()
        self.classifiers: list[Classifier] = list(classifiers)
        self.identity: str = self.settings.identity or local_identity()
        """Who this process's submissions are by when they do not say (`created_by`):
        the `identity` setting, else the OS login name. The submitter of a task never
        decides its approvals, so the rule holds for in-process work too."""
        """Extra failure classifiers: return True (transient), False (permanent), None."""
        self.policies = PolicyBook.from_config(self.settings.approval_policy)
        """Risk policies for approvals, by workflow and tenant (config file, then `set`)."""
        self.notifications = Notifications(self.settings)
        self.dlq = DeadLetters(self)
        """The dead-letter queue: groups of failed tasks, retry, escalate, dismiss."""
        """Notification channels and routes (config file, then `channel` / `route`)."""
        self.hooks = HookBook.from_config(self.settings.hooks)
        """Inbound signed webhooks by name (config file, then `hook`)."""
        self.workflows = Registry()
        """The registered workflows, by name and version; as a mapping, each name's
        newest version."""
        self.step_defs: dict[str, StepDef] = {}
        self.schedule_decls: list[DeclaredSchedule] = []
        self.subscriptions = Subscriptions()
        self.workers: list[Worker] = []
        self.on_webhook_disabled: list[DisabledHook] = []
        """Called when a dispatcher of this app disables a webhook subscription (410
        Gone, or too many failed deliveries): the hook for notifying operators."""
        self.on_webhook_disabled.append(
            lambda sub: self.notifications.webhook_disabled(self.store, self.clock, sub)
        )
        self.egress_policy = egress.EgressPolicy.from_settings(self.settings)
        """What outbound HTTP (webhooks) may reach: `egress_allow` and the limits."""
        self.model_prices = PriceTable.from_config(self.settings.model_prices)
        """What model calls (`tether.agents`) cost: the built-in prices, the
        `model_prices` setting on top, then `set` in code."""
        self.rollouts = RolloutBook()
        """The workflow rollouts new tasks are routed by (`tether.services.rollouts`)."""
        self.budgets = BudgetBook.from_config(self.settings.budgets)
        """Spend limits by tenant and workflow (the `budgets` setting, then `set_daily`
        and `set_task`; docs/flow-control.md)."""
        self.step_gates: list[StepGate] = [SpendGate(self)]
        """Flow-control policies asked before every step attempt (`tether.engine.gates`);
        the first keeps steps within their spend budgets (`tether.flow.SpendGate`)."""
        self.rate_limits = RateLimits.from_config(self.settings.rate_limits)
        """Rate limits by integration (the `rate_limits` setting, then `rate_limit`)."""
        self._rate_gate: RateLimitGate | None = None
        if self.rate_limits:
            self._rate_limited()
        self.breakers = BreakerGate(self, self.notifications.circuit_opened)
        """Circuit breakers by integration (`breaker`; `tether.services.breakers`)."""
        self.step_limits = StepLimitGate(self)
        """Fleet-wide limits of running steps by integration (`step_limit`)."""
        for name, policy in policies_from_config(self.settings.breakers).items():
            self.breakers.configure(name, policy)
        for name, most in limits_from_config(self.settings.step_limits).items():
            self.step_limits.configure(name, most)
        self._gate_integrations()
        self._opened = False
        self._open_lock: asyncio.Lock | None = None

    # flow control (`tether.flow`) -------------------------------------------------------
    def rate_limit(
        self,
        integration: str,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        burst_seconds: float = 1.0,
        tokens_per_call: float | None = None,
        tenant: str | None = None,
        per_tenant: bool = False,
    ) -> RateLimit:
        """Hold the steps that call `integration` (`@app.step(integration=...)`, a
        model call's provider) to `requests_per_minute` attempts and, for model calls,
        `tokens_per_minute` tokens, in buckets every worker and server shares through
        the database. One bucket for all tenants, or with `per_tenant` one per tenant,
        or with `tenant` that tenant's own (instead of the per-tenant one). A step over
        its limit waits (`waiting`, reason `rate_limit`) holding no slot, and runs when
        the bucket allows. Replaces the limit of that integration and scope; raises
        ValueError for a limit that makes no sense (docs/flow-control.md)."""
        limit = RateLimit(
            integration,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            burst_seconds=burst_seconds,
            tokens_per_call=tokens_per_call,
            tenant=tenant,
            per_tenant=per_tenant,
        )
        self.rate_limits.set(limit)
        self._rate_limited()
        return limit

    def _rate_limited(self) -> None:
        """Ask the rate-limit gate about every step from now on (once)."""
        if self._rate_gate is None:
            self._rate_gate = RateLimitGate(self.rate_limits, self)
            self.step_gates.append(self._rate_gate)

    def breaker(
        self,
        integration: str,
        *,
        failures: int | None = 5,
        failure_rate: float | None = None,
        window: float = 60.0,
        min_calls: int = 20,
        cool_down: float = 30.0,
        probes: int = 1,
        per_tenant: bool = False,
    ) -> BreakerPolicy:
        """Give `integration` a circuit breaker: it opens after `failures` transient
        failures in a row, or (with `failure_rate`) when that share of the calls of the
        last `window` seconds failed, `min_calls` at least; steps calling it then wait
        (`circuit_open`) for `cool_down` seconds, then `probes` at a time try it, and a
        success closes it. One breaker for the fleet, or with `per_tenant` one per
        tenant (`BreakerPolicy`). Raises `ConfigError` for a bad name or setting."""
        try:
            policy = BreakerPolicy(
                failures, failure_rate, window, min_calls, cool_down, probes, per_tenant
            )
            self.breakers.configure(integration, policy)
        except ValueError as exc:
            raise ConfigError(f"breaker {integration!r}: {exc}") from None
        self._gate_integrations()
        return policy

    def step_limit(self, integration: str, max_running: int) -> StepLimit:
        """Let at most `max_running` steps naming `integration` run at once across every
        worker: the others wait (`concurrency`), holding no task slot, and start as
        holders finish. Every process must set the same limit. Raises `ConfigError`."""
        try:
            limit = self.step_limits.configure(integration, max_running)
        except ValueError as exc:
            raise ConfigError(f"step limit {integration!r}: {exc}") from None
        self._gate_integrations()
        return limit

    def _gate_integrations(self) -> None:
        """Ask the breakers and step limits about steps once either has a policy (until
        then, steps pay nothing for them)."""
        if not (self.breakers.policies or self.step_limits.limits):
            return
        if not any(isinstance(g, IntegrationGate) for g in self.step_gates):
            self.step_gates.append(IntegrationGate(self.breakers, self.step_limits))

    # the engine's runtime (`tether.engine.runtime.Runtime`) ----------------------------
    def registry_lookup(self, workflow: str, version: int | None = None) -> WorkflowDef:
        """Version `version` of the registered workflow `workflow` (None: its newest);
        raises `UnknownWorkflow` otherwise."""
        return self.workflows.lookup(workflow, version)

    def step_lookup(self, name: str) -> StepDef:
        """The step declared with `@app.step` as `name`; raises `UnknownStep` otherwise."""
        definition = self.step_defs.get(name)
        if definition is None:
            raise UnknownStep(f"no step is declared with @app.step as {name!r}")
        return definition

    def workflow_versions(self) -> list[WorkflowVersion]:
        """The registered (workflow, version) pairs, sorted: what this app's workers
        claim."""
        return self.workflows.versions()

    def approval_policy(self, tenant: str, workflow: str) -> RiskPolicy:
        """The risk policy for approvals of `workflow` for `tenant` (`policies`)."""
        return self.policies.lookup(tenant, workflow)

    async def send_notification(
        self,
        tenant: str,
        workflow: str,
        notification: Notification,
        channels: Sequence[str] | None,
        key: str,
    ) -> list[str]:
        """Send `notification` now on `channels` (None: those the routes give the
        `notify` trigger of `tenant`'s `workflow`); what `ctx.notify` runs in its step."""
        return await self.notifications.send_now(tenant, workflow, notification, channels, key)

    def child_task(
        self, parent: Task, seq: int, workflow: str | WorkflowFn, input: Any, options: ChildOptions
    ) -> NewTask:
        """The child task `parent` starts at call site `seq` (ADR 82): validated like
        any submission, in the parent's tenant, by the parent's submitter, with the
        idempotency key `child:<parent id>:<seq>` (the call site's)."""
        new = self.new_task(
            workflow_name(workflow),
            input,
            idempotency_key=f"child:{parent.id}:{seq}",
            tenant=parent.tenant,
            queue=options.queue,
            priority=parent.priority if options.priority is None else options.priority,
            correlation_id=options.correlation_id or parent.correlation_id,
            created_by=parent.created_by,
            version=options.version,
        )
        # Not in the key's hash (a replay's clock differs): relative to the start.
        if options.deadline is not None:
            new.deadline = self.clock.now() + options.deadline
        new.parent_id, new.parent_seq, new.parent_policy = parent.id, seq, options.on_parent_end
        return new

    async def emit_from(self, task: Task, event: str, payload: Any, key: str) -> list[str]:
        """`ctx.emit` of `task`: the event `key` (its step's idempotency key) starts the
        subscribers in `task`'s tenant, with its correlation id; their ids."""
        handles = await self.emit(
            event, payload, tenant=task.tenant, key=key, correlation_id=task.correlation_id
        )
        return [h.id for h in handles]

    async def start_children(self, tasks: list[NewTask]) -> list[Task]:
        """Store child tasks in one transaction (`submit_batch`: a local worker with free
        slots starts them at once); a call site's child stored before is returned."""
        return [handle.initial for handle in await self.submit_batch(tasks)]

    # what a scheduler fires (`tether.schedules.scheduler.ScheduleSource`) --------------
    def schedule_workflows(self) -> list[str]:
        """The workflows whose schedules this app's schedulers fire: those registered."""
        return sorted({name for name, _ in self.workflows.versions()})

    def declared_schedules(self, now: float) -> list[Schedule]:
        """The `@app.schedule` declarations as rows (see `resolve_schedules`)."""
        return self.resolve_schedules(self.settings.tenant, now)

    def schedule_task(self, schedule: Schedule, tick: float | None, key: str) -> NewTask:
        """The task a tick of `schedule` starts (`tick` None: started by hand): the
        schedule's workflow and input, created by `schedule:NAME`, due at the tick."""
        return self.new_task(
            schedule.workflow,
            schedule.input,
            idempotency_key=key,
            tenant=schedule.tenant,
            created_by=f"schedule:{schedule.name}",
            run_at=tick,
        )

    # life cycle -----------------------------------------------------------------------
    async def open(self) -> None:
        """Connect the store (creating the schema in an empty database)."""
        if self._opened:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._opened:
                return
            await self.store.open(check_schema=False)
            if await self.store.schema_version() == 0:
                await self.store.migrate()
            else:
                await self.store.close()
                await self.store.open(check_schema=True)
            await self.rollouts.start(self.store)
            self._opened = True

    async def close(self) -> None:
        """Stop workers started with `worker()` and close the store."""
        for worker in list(self.workers):
            await worker.stop()
        await self.rollouts.stop()
        await self.breakers.stop()
        await self.store.close()
        self._opened = False

    async def __aenter__(self) -> Tether:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def worker(
        self,
        concurrency: int | None = None,
        *,
        queues: list[str] | None = None,
        worker_id: str | None = None,
        lease_ttl: float | None = None,
        poll_interval: float | None = None,
        grace: float | None = None,
        retention: bool = True,
        eager: bool = True,
        webhooks: bool | None = None,
        schedules: bool | None = None,
    ) -> Worker:
        """A worker for this app; use as `async with app.worker(...)`. With `retention`
        it also purges ended tasks older than `settings.retention_days`; with `eager`
        it runs tasks submitted in this process at once while it has free slots; with
        `webhooks` (default: `settings.webhooks`) a webhook dispatcher runs with it, and
        with `schedules` (default: `settings.schedules`) a scheduler."""
        s = self.settings
        run_webhooks = s.webhooks if webhooks is None else webhooks
        worker = Worker(
            self,
            concurrency=concurrency or s.concurrency,
            queues=queues or s.queue_list,
            worker_id=worker_id,
            lease_ttl=lease_ttl or s.lease_ttl,
            poll_interval=poll_interval or s.poll_interval,
            grace=s.shutdown_grace if grace is None else grace,
            retention=s.retention_days * 86400 if retention else None,
            dlq_retention=s.dlq_retention_days * 86400,
            eager=eager,
            gc_threshold=s.gc_threshold,
            max_lease_expiries=s.max_lease_expiries,
            companions=[self.dispatcher()] if run_webhooks else [],
        )
        notifier = self.notifications.notifier(self.store, self.clock, worker.id)
        if notifier is not None:
            worker.companions.append(notifier)
        if s.schedules if schedules is None else schedules:
            worker.companions.append(self.scheduler())
        self.workers.append(worker)
        return worker

    def scheduler(self) -> Scheduler:
        """A scheduler for this app (`async with app.scheduler():`): stores the
        `@app.schedule` declarations, then fires due schedules of the workflows this app
        registers. Workers and servers run one each (ADR 77)."""
        options = SchedulerOptions(poll_interval=self.settings.schedule_poll_interval)
        return Scheduler(self.store, self.clock, self, options, open=self.open)

    def dispatcher(self) -> Dispatcher:
        """A webhook dispatcher for this app (`async with app.dispatcher():`): fans events
        out to subscriptions and delivers them. Workers and servers run one each."""
        return Dispatcher(
            self.store,
            self.clock,
            DispatchConfig.from_settings(self.settings),
            policy=self.egress_policy,
            on_disabled=self.on_webhook_disabled,
            open=self.open,
        )

    # intake -----------------------------------------------------------------------------
    def new_task(
        self,
        workflow: str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        tenant: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        correlation_id: str | None = None,
        deadline: datetime | float | None = None,
        created_by: str | None = None,
        run_at: datetime | float | None = None,
        version: int | None = None,
        callback_url: str | None = None,
        spend_budget: Budget | None = None,
    ) -> NewTask:
        """Validate a submission and build the row to store (no I/O; the callback URL's
        address is checked by `submit_batch`). `version` picks a registered version of
        the workflow (None: the newest); `created_by` defaults to this app's
        `identity`. Raises `UnknownWorkflow`, `InputValidationError` (the input, held
        to its signature and to `tether.storable`'s rules) or `NotStorable` (another
        field: a NUL in a string, a priority beyond 32 bits, a non-finite time). Without
        `version`, the workflow's rollout for the tenant (`rollouts`) may pick one.
        `spend_budget` limits the task's spend (default: its workflow's, `budgets`)."""
        task_id = new_id()
        tenant = tenant or self.settings.tenant
        if version is None and (rollout := self.rollouts.lookup(tenant, workflow)) is not None:
            version = route(rollout, task_id, self.workflows.versions_of(workflow))
        wf = self.registry_lookup(workflow, version)
        encoded = wf.encode_input(input)
        for name, text in (
            ("idempotency_key", idempotency_key),
            ("tenant", tenant),
            ("queue", queue),
            ("correlation_id", correlation_id),
            ("created_by", created_by),
            ("callback_url", callback_url),
        ):
            storable.check_text(text, name)
        storable.check_int(priority, "priority", storable.INT32_MIN, storable.INT32_MAX)
        storable.check(_timestamp(deadline), "deadline")
        storable.check(_timestamp(run_at), "run_at")
        digest = ""
        if idempotency_key is not None:
            digest = submission_hash(
                wf.name,
                encoded,
                queue=queue or wf.queue,
                priority=priority,
                correlation_id=correlation_id,
                deadline=_timestamp(deadline),
                run_at=_timestamp(run_at),
                callback_url=callback_url,
                spend_budget=None if spend_budget is None else spend_budget.to_json(),
            )
        absolute_deadline = _timestamp(deadline)
        if absolute_deadline is None and wf.deadline is not None:
            absolute_deadline = self.clock.now() + wf.deadline
        callback = None
        if callback_url is not None:
            now = self.clock.now()
            callback = WebhookSubscription(
                id=new_id(),
                tenant=tenant,
                url=callback_url,
                event_types=list(TERMINAL_EVENTS),
                secret=new_secret(),
                task_id=task_id,
                description=f"callback of task {task_id}",
                created_at=now,
                updated_at=now,
                created_by=created_by or self.identity,
            )
        return NewTask(
            id=task_id,
            tenant=tenant,
            workflow=wf.name,
            workflow_version=wf.version,
            queue=queue or wf.queue,
            input=encoded,
            input_hash=digest,
            priority=priority,
            idempotency_key=idempotency_key,
            idempotency_ttl=self.settings.idempotency_ttl,
            correlation_id=correlation_id,
            created_by=created_by or self.identity,
            deadline=absolute_deadline,
            run_at=_timestamp(run_at),
            callback=callback,
            **self._fairness(wf, tenant, encoded),
            **_concurrency(wf, tenant, encoded),
            spend_budget=spend_budget or self.budgets.task_default(wf),
        )

    def _fairness(self, wf: WorkflowDef, tenant: str, encoded: str) -> dict[str, Any]:
        """`fair_key` and `fair_weight` of a new task of `wf` (ADR 88): the workflow's
        key from the input, within the tenant, else the tenant; weighted by the
        `fair_weights` setting, else the workflow's weight. With `fair_claims` off
        every task of a queue shares one key: first come, first served."""
        if not self.settings.fair_claims:
            return {"fair_key": ""}
        key, weight = tenant, 1.0
        if wf.fairness is not None:
            weight = wf.fairness.weight
            if wf.fairness.key is not None:
                try:
                    value = wf.fairness.key(serde.loads(encoded))
                except Exception as exc:
                    raise InputValidationError(
                        wf.name, [{"loc": ("input",), "msg": f"no fairness key in it: {exc!r}"}]
                    ) from None
                key = f"{tenant}/{value}"
                storable.check_text(key, "fairness key")
        return {"fair_key": key, "fair_weight": self.settings.fair_weights.get(key, weight)}

    async def submit(self, workflow: str, input: Any = None, **options: Any) -> TaskHandle:
        """Validate and store a task; return its handle at once (nothing runs here).

        Options: `idempotency_key`, `tenant`, `queue`, `priority`, `correlation_id`,
        `deadline`, `created_by` (default: `identity`), `run_at`, `version` (default:
        the newest registered version of the workflow), `callback_url` (a webhook of the
        task's end, signed with `handle.callback.secret`: docs/webhooks.md),
        `spend_budget` (a `Budget`: the task's limit on spend; default: its workflow's,
        docs/flow-control.md). The same key
        with the same input returns the existing task (`handle.created` is False); with
        another input it raises `IdempotencyConflict`.
        """
        await self.open()  # the rollouts are read: the task's version may depend on them
        (handle,) = await self.submit_batch([self.new_task(workflow, input, **options)])
        return handle

    async def submit_many(
        self, workflow: str, inputs: Sequence[Any], **options: Any
    ) -> list[TaskHandle]:
        """Submit many tasks of one workflow in one transaction (all or nothing).

        With `idempotency_key` K, task i gets the key `K/i` (`batch_item_key`, the rule
        of the HTTP batch route): the same batch again returns the same tasks.
        """
        key = options.pop("idempotency_key", None)
        await self.open()
        return await self.submit_batch(
            [
                self.new_task(workflow, item, idempotency_key=batch_item_key(key, i), **options)
                for i, item in enumerate(inputs)
            ]
        )

    async def emit(
        self,
        event: str,
        payload: Any = None,
        *,
        tenant: str | None = None,
        key: str | None = None,
        correlation_id: str | None = None,
        created_by: str | None = None,
    ) -> list[TaskHandle]:
        """Publish an event: start each workflow subscribed to `event` (`on=`) whose
        `when` accepts `payload`, with `payload` as its input, in one transaction (all
        or none: an input that fits no subscriber raises before anything is stored).
        Each start's idempotency key is `event:<key>:<workflow>`, so emitting the same
        `key` again (default: a new one) starts nobody twice. Subscribers are created by
        `event:<event>`; the handles, one per subscriber started (docs/pipelines.md)."""
        storable.check_text(event, "event")
        key = key or new_id()
        matching = self.subscriptions.matching(event, payload)
        if not matching:
            return []
        await self.open()
        tasks = [
            self.new_task(
                s.workflow,
                payload,
                idempotency_key=event_key(key, s.workflow),
                tenant=tenant,
                correlation_id=correlation_id,
                created_by=created_by or f"event:{event}",
            )
            for s in matching
        ]
        return await self.submit_batch(tasks)

    async def submit_batch(self, tasks: list[NewTask]) -> list[TaskHandle]:
        """Store prepared tasks (see `new_task`) in one transaction. A worker of this
        app running in this process with free slots gets them directly (ADR 47)."""
        for t in tasks:
            if t.callback is not None:  # before anything is stored: `EgressRefused`
                t.callback.url = await egress.check_url(t.callback.url, self.egress_policy)
        await self.open()
        now = self.clock.now()
        worker, reserved = None, 0
        for candidate in self.workers:
            reserved = candidate.reserve(len(tasks))
            if reserved:
                worker = candidate
                break
        if worker is None:
            done = await self.store.submit(tasks, now)
            return [TaskHandle(self, s.task, s.created, s.callback) for s in done]
        eager = Eager(worker.id, now + worker.lease_ttl, reserved, worker.queues)
        claimed: list[Claimed] = []
        try:
            done = await self.store.submit(tasks, now, eager)
            claimed = [s.claimed for s in done if s.claimed is not None]
        finally:
            worker.adopt(claimed, reserved)
        return [TaskHandle(self, s.task, s.created, s.callback) for s in done]

    # queries and control --------------------------------------------------------------
    def handle(self, task_id: str, tenant: str | None = None) -> TaskHandle:
        """A handle for an existing task id (not checked until used)."""
        stub = Task(
            id=task_id,
            tenant=tenant or self.settings.tenant,
            workflow="",
            workflow_version=0,
            queue="",
            priority=0,
            status=TaskStatus.QUEUED,
            input=None,
            created_at=0.0,
            updated_at=0.0,
        )
        return TaskHandle(self, stub, created=False)

    async def get(self, task_id: str, *, tenant: str | None = None) -> Task:
        """A task by id; `TaskNotFound` when missing or another tenant's."""
        await self.open()
        task = await self.store.get_task(task_id, tenant)
        if task is None:
            raise TaskNotFound(task_id)
        return task

    async def list_tasks(self, flt: TaskFilter | None = None) -> list[Task]:
        """Tasks, newest first."""
        await self.open()
        return await self.store.list_tasks(flt or TaskFilter())

    async def steps(self, task_id: str, *, tenant: str | None = None) -> list[StepRecord]:
        """The step log of a task."""
        await self.get(task_id, tenant=tenant)
        return await self.store.get_steps(task_id)

    async def task_spend(self, task_id: str, *, tenant: str | None = None) -> SpendLine:
        """What a task spent and holds reserved, and its limit (docs/flow-control.md);
        `TaskNotFound` when missing or another tenant's."""
        return await self.spend_of(await self.get(task_id, tenant=tenant))

    async def spend_of(self, task: Task) -> SpendLine:
        """`task_spend` of a task already read."""
        line = await self.store.task_spend(task.id, task.tenant)
        line = line or SpendLine(tenant=task.tenant, scope="task", subject=task.id, day="")
        budget = task.spend_budget
        if budget is None or line.limit_usd is not None or line.limit_tokens is not None:
            return line
        # Nothing reserved on it yet (the limits are booked with the first reservation).
        return replace(line, limit_usd=budget.usd, limit_tokens=budget.tokens)

    async def spend(self, *, day: str | None = None, tenant: str | None = None) -> DaySpend:
        """What `tenant` (default: the `tenant` setting) spent on UTC `day` (`YYYY-MM-DD`,
        default: today), in all and by workflow. Raises ValueError for a bad day."""
        await self.open()
        when = utc_day(self.clock.now()) if day is None else check_day(day)
        return await self.store.day_spend(tenant or self.settings.tenant, when)

    async def cancel(
        self,
        task_id: str,
        *,
        tenant: str | None = None,
        by: str | None = None,
        compensate: bool = False,
    ) -> Task:
        """Cancel a task: queued and waiting ones at once, running ones cooperatively.
        With `compensate`, a run first undoes its completed steps (their compensations,
        latest first; docs/sagas.md): a task not running is queued for that run."""
        await self.open()
        task = await self.store.cancel(task_id, tenant, by, self.clock.now(), compensate)
        for worker in self.workers:
            worker.cancel_local(task_id)
        return task

    async def compensate(
        self, task_id: str, *, tenant: str | None = None, created_by: str | None = None
    ) -> TaskHandle:
        """Undo a failed or cancelled task's completed steps: a new task, linked to it
        (`forked_from`), in phase `compensation`, runs the compensations of the steps it
        reuses, latest first (those the original ran are not run again), and succeeds
        with `{"compensated": [steps undone], "of": task_id}` as its result (or fails
        `CompensationFailed`). Raises `InvalidTransition` for a task that has not ended
        or that succeeded."""
        old = await self.get(task_id, tenant=tenant)
        new = self.compensation_task(old, created_by=created_by)
        task = await self.store.fork(task_id, tenant, new, None, self.clock.now())
        return TaskHandle(self, task)

    def compensation_task(self, old: Task, *, created_by: str | None = None) -> NewTask:
        """The row of the compensation of `old` (what `compensate` and the dead-letter
        compensate store): its re-run's row (`rerun_task`) in phase `compensation`.
        Raises `InvalidTransition` unless `old` failed or was cancelled."""
        if old.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise InvalidTransition(
                f"task {old.id} is {old.status}; only failed or cancelled tasks are compensated"
            )
        new = self.rerun_task(old, created_by=created_by)
        new.phase = TaskPhase.COMPENSATION
        return new

    async def signal(
        self, task_id: str, name: str, payload: Any = None, *, tenant: str | None = None
    ) -> SignalRecord:
        """Send a signal; kept until the workflow waits for it, in order per name.
        Raises `NotStorable` for a payload or name `tether.storable` refuses."""
        storable.check_text(name, "name")
        encoded = storable.encode(payload, "payload")
        await self.open()
        return await self.store.send_signal(task_id, tenant, name, encoded, self.clock.now())

    async def approvals(self, flt: ApprovalFilter | None = None) -> list[Approval]:
        """Approval requests, newest first: of `flt.tenant` (None: every tenant's), and
        of `flt.status`, `risk`, `task_id` or `short_id` when given. Each carries its
        request (summary, evidence, ...), the decisions so far and, once closed, the
        outcome; decide with `decide(approval.id, ...)`."""
        await self.open()
        return await self.store.list_approvals(flt or ApprovalFilter())

    async def decide(
        self,
        approval_id: str,
        *,
        reviewer: str,
        approve: bool,
        reason: str | None = None,
        changes: dict[str, Any] | None = None,
        tenant: str | None = None,
    ) -> Approval:
        """Record a reviewer's decision on an approval request. Raises `NotStorable`
        for a reviewer, reason or changes `tether.storable` refuses."""
        storable.check_text(reviewer, "reviewer")
        storable.check_text(reason, "reason")
        storable.check(changes, "changes")
        await self.open()
        return await self.store.decide(
            approval_id,
            tenant,
            {"reviewer": reviewer, "approve": approve, "reason": reason, "changes": changes},
            self.clock.now(),
        )

    def rerun_task(
        self, old: Task, *, created_by: str | None = None, version: int | None = None
    ) -> NewTask:
        """The row of a re-run of `old` (what `rerun` and the dead-letter retry store):
        its workflow, input, tenant, queue, priority and correlation id, on `version`;
        by default on `old`'s version when this app still registers it (the reused steps
        were recorded by that code), else the newest."""
        if version is None and self.workflows.has(old.workflow, old.workflow_version):
            version = old.workflow_version
        return self.new_task(
            old.workflow,
            old.input,
            tenant=old.tenant,
            queue=old.queue,
            priority=old.priority,
            correlation_id=old.correlation_id,
            created_by=created_by,
            version=version,
            spend_budget=old.spend_budget,
        )

    async def rerun(
        self,
        task_id: str,
        *,
        from_seq: int | None = None,
        tenant: str | None = None,
        created_by: str | None = None,
        version: int | None = None,
    ) -> TaskHandle:
        """Re-run an ended task as a new linked task that reuses its finished steps
        (all of them, or those before `from_seq`). It runs on `version` of the
        workflow; by default on the version of the original when this app still
        registers it (the reused steps were recorded by that code), else the newest."""
        old = await self.get(task_id, tenant=tenant)
        new = self.rerun_task(old, created_by=created_by, version=version)
        task = await self.store.fork(task_id, tenant, new, from_seq, self.clock.now())
        return TaskHandle(self, task)


def _concurrency(wf: WorkflowDef, tenant: str, encoded: str) -> dict[str, Any]:
    """`concurrency_key` and `concurrency_max` of a new task of `wf` (ADR 89)."""
    limit = wf.concurrency
    if limit is None:
        return {}
    name: Any = wf.name if limit.key is None else limit.key
    if callable(name):
        try:
            name = name(serde.loads(encoded))
        except Exception as exc:
            raise InputValidationError(
                wf.name, [{"loc": ("input",), "msg": f"no concurrency key in it: {exc!r}"}]
            ) from None
    key = f"{'*' if limit.fleet else tenant}/{name}"
    storable.check_text(key, "concurrency key")
    return {"concurrency_key": key, "concurrency_max": limit.max}
