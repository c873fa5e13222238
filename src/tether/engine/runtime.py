"""`Runtime`: what the engine needs from whoever hosts it, and nothing more.

A worker and the runs it drives see the application only through this interface: a
store to claim from and read, a clock, failure classifiers, approval policies, model prices, the
workflows it may run, a way to send notifications (`ctx.notify`) and to start child
tasks (`ctx.start_child`). The application,
`Tether`, satisfies it (it passes itself to `Worker`); tests and embedders may pass
anything else that does. The engine never imports the application, the API or the CLI
(ADR 59).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from tether.clock import Clock
from tether.engine.approvals import RiskPolicy
from tether.engine.children import ChildOptions
from tether.engine.gates import StepGate
from tether.engine.registry import StepDef, WorkflowDef, WorkflowFn, WorkflowVersion
from tether.errors import Classifier
from tether.models import Notification, Task
from tether.store.base import NewTask, Store

if TYPE_CHECKING:
    from tether.agents.prices import PriceTable


class Runtime(Protocol):
    """The engine's view of its host. Writes a run makes go through the worker's
    committer; `store` is for claims, heartbeats, retention and reads."""

    @property
    def store(self) -> Store:
        """The database the worker claims from and its committer writes to."""
        ...

    @property
    def clock(self) -> Clock:
        """Wall-clock time for timers, leases and records (a fake one in tests)."""
        ...

    @property
    def classifiers(self) -> list[Classifier]:
        """Extra failure classifiers: True (transient), False (permanent), None (no say)."""
        ...

    @property
    def model_prices(self) -> PriceTable:
        """The price table model calls are costed at (`tether.agents`; `ctx.model_prices`)."""
        ...

    @property
    def step_gates(self) -> Sequence[StepGate]:
        """The flow-control policies asked before and told after every step attempt."""
        ...

    def approval_policy(self, tenant: str, workflow: str) -> RiskPolicy:
        """The risk policy that decides how many approvers an approval of `workflow`
        for `tenant` needs (or whether it is approved automatically)."""
        ...

    def registry_lookup(self, workflow: str, version: int | None = None) -> WorkflowDef:
        """Version `version` of `workflow` (None: the newest); raises `UnknownWorkflow`
        when it is not known."""
        ...

    def step_lookup(self, name: str) -> StepDef:
        """The step declared with `@app.step` as `name` (a compensation is found so);
        raises `UnknownStep` when none is."""
        ...

    def workflow_versions(self) -> list[WorkflowVersion]:
        """The (workflow, version) pairs a worker may claim tasks of, sorted (claims
        name them: a task never runs on code of another version; ADR 64)."""
        ...

    async def send_notification(
        self,
        tenant: str,
        workflow: str,
        notification: Notification,
        channels: Sequence[str] | None,
        key: str,
    ) -> list[str]:
        """Send `notification` now on `channels` (None: those the routes give the
        `notify` trigger of `tenant`'s `workflow`), as `ctx.notify` does from inside its
        step; `key` is the step's idempotency key. Returns the channels it went to."""
        ...

    def child_task(
        self, parent: Task, seq: int, workflow: str | WorkflowFn, input: Any, options: ChildOptions
    ) -> NewTask:
        """The child task `parent` starts at call site `seq` (`ctx.start_child`),
        validated (raises `UnknownWorkflow`, `InputValidationError`): in the parent's
        tenant, with the idempotency key `child:<parent id>:<seq>`. No I/O."""
        ...

    async def emit_from(self, task: Task, event: str, payload: Any, key: str) -> list[str]:
        """Publish `event` from `task` (`ctx.emit`): start its subscribers in the task's
        tenant, each once per `key` (the emitting step's idempotency key); their ids."""
        ...

    async def start_children(self, tasks: list[NewTask]) -> list[Task]:
        """Store child tasks (built by `child_task`) in one transaction; a child whose
        key is stored already is returned as it is, not started again."""
        ...

    async def open(self) -> None:
        """Make `store` usable (connect, create the schema); idempotent."""
        ...
