"""`Operations`: what the task, approval and schedule commands do, and the two ways to
do it.

Each command has one code path: it talks to an `Operations`, which is either the local
facade on the database (`LocalOperations`, `tether.cli.local`) or a Tether server over
its HTTP API and auth (`RemoteOperations`, `tether.cli.remote`). `open_operations` picks
one from the resolved settings: a server (`--server`, `TETHER_SERVER`) means HTTP.

Both act for one identity. Locally it is the tenant given (`--tenant`) and the login
name (or `--as` for decisions); over HTTP it is the credential's subject and tenant,
which no flag can change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from tether.cli.breaker_ops import BreakerOperations
from tether.cli.common import EXIT_USAGE, CLIError, build_app, run
from tether.cli.dlq_ops import DlqOperations
from tether.cli.options import Env
from tether.cli.rollout_ops import RolloutOperations
from tether.cli.schedule_ops import ScheduleOperations
from tether.models import (
    Approval,
    Budget,
    DaySpend,
    Event,
    SpendLine,
    StepRecord,
    Task,
    TaskStatus,
)

T = TypeVar("T")


class Operations(Protocol):
    """The operations of the task, approval and schedule commands, for one tenant and
    identity."""

    @property
    def schedules(self) -> ScheduleOperations:
        """`tether schedules ...` (`tether.cli.schedule_ops`)."""
        ...

    @property
    def rollouts(self) -> RolloutOperations:
        """`tether rollout ...` (`tether.cli.rollout_ops`)."""
        ...

    @property
    def dlq(self) -> DlqOperations:
        """`tether dlq ...` (`tether.cli.dlq_ops`)."""
        ...

    @property
    def breakers(self) -> BreakerOperations:
        """`tether breaker ...` (`tether.cli.breaker_ops`)."""
        ...

    async def submit(
        self,
        workflow: str,
        input: Any,
        *,
        idempotency_key: str | None,
        correlation_id: str | None,
        priority: int,
        queue: str | None,
        spend_budget: Budget | None = None,
    ) -> tuple[Task, bool]:
        """Submit a task; the task and whether it was created (False: a key replay)."""
        ...

    async def get(self, task_id: str) -> Task:
        """A task by its full id (`TaskNotFound` otherwise)."""
        ...

    async def steps(self, task_id: str) -> list[StepRecord]:
        """A task's step log."""
        ...

    async def tasks(
        self,
        *,
        status: list[TaskStatus] | None = None,
        workflow: str | None = None,
        short_id: str | None = None,
        limit: int = 50,
    ) -> list[Task]:
        """Tasks newest first, filtered (`short_id`: the id begins or ends with it)."""
        ...

    async def cancel(self, task_id: str, compensate: bool = False) -> Task:
        """Cancel a task (queued and waiting at once, running cooperatively); with
        `compensate`, after undoing its completed steps."""
        ...

    async def compensate(self, task_id: str) -> Task:
        """Undo a failed or cancelled task's completed steps; the new linked task."""
        ...

    async def signal(self, task_id: str, name: str, payload: Any) -> int:
        """Send a signal; its id."""
        ...

    async def rerun(self, task_id: str, from_step: int | None) -> Task:
        """Re-run an ended task as a new linked task; the new task."""
        ...

    async def approvals(
        self,
        *,
        status: str | None = None,
        risk: str | None = None,
        task_id: str | None = None,
        short_id: str | None = None,
        limit: int = 100,
    ) -> list[Approval]:
        """Approval requests newest first, filtered."""
        ...

    async def decide(
        self, approval_id: str, *, approve: bool, reason: str, changes: dict[str, Any] | None
    ) -> Approval:
        """Record this identity's decision; the approval as it now stands."""
        ...

    async def follow(self, task_id: str, on_event: Callable[[Event], None]) -> Task:
        """Feed the task's events to `on_event`, in order, until it ends; the ended task."""
        ...

    async def task_spend(self, task_id: str) -> SpendLine:
        """What a task spent and holds reserved, and its limit."""
        ...

    async def day_spend(self, day: str | None) -> DaySpend:
        """What this tenant spent on UTC `day` (None: today), in all and by workflow."""
        ...


@asynccontextmanager
async def open_operations(
    env: Env, *, needs_app: bool = False, identity: str | None = None
) -> AsyncIterator[Operations]:
    """The operations the settings ask for, open for the duration of the block.

    Over HTTP, the options that would name another identity or another database are
    refused rather than ignored. Locally, `needs_app` requires `--app` (to validate a
    submission), and `identity` is who cancels, re-runs and decides.
    """
    if env.server is None:
        from tether.cli.local import LocalOperations

        app = build_app(env, required=needs_app)
        await app.open()
        try:
            yield LocalOperations(app, env.tenant, identity or app.identity)
        finally:
            await app.close()
        return
    from tether.cli.remote import RemoteOperations

    for name, flag, why in (
        ("tenant", "--tenant", "the tenant is the credential's"),
        ("database_url", "--database-url", "the server has its own database"),
        ("app", "--app", "the server has its own app"),
    ):
        if getattr(env.given, name):
            raise CLIError(f"{flag} does not go with --server: {why}", EXIT_USAGE)
    token, api_key = env.settings.token, env.settings.api_key
    if token is None and api_key is None:
        raise CLIError(
            f"--server {env.server} needs a credential: --token JWT (env TETHER_TOKEN) or "
            "--api-key KEY (env TETHER_API_KEY)",
            EXIT_USAGE,
        )
    remote = RemoteOperations(
        env.server,
        token=None if token is None else token.get_secret_value(),
        api_key=None if api_key is None else api_key.get_secret_value(),
    )
    try:
        yield remote
    finally:
        await remote.aclose()


def run_with(
    env: Env,
    work: Callable[[Operations], Awaitable[T]],
    *,
    needs_app: bool = False,
    identity: str | None = None,
) -> T:
    """Run `work` on the operations the settings ask for (see `open_operations`)."""

    async def main() -> T:
        async with open_operations(env, needs_app=needs_app, identity=identity) as ops:
            return await work(ops)

    return run(main())
