"""`Runtime`: what the engine needs from whoever hosts it, and nothing more.

A worker and the runs it drives see the application only through this interface: a
store to claim from and read, a clock, failure classifiers, approval policies, the
workflows it may run, and a way to send notifications (`ctx.notify`). The application,
`Tether`, satisfies it (it passes itself to `Worker`); tests and embedders may pass
anything else that does. The engine never imports the application, the API or the CLI
(ADR 59).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tether.clock import Clock
from tether.engine.approvals import RiskPolicy
from tether.engine.registry import StepDef, WorkflowDef, WorkflowVersion
from tether.errors import Classifier
from tether.models import Notification
from tether.store.base import Store


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

    async def open(self) -> None:
        """Make `store` usable (connect, create the schema); idempotent."""
        ...
