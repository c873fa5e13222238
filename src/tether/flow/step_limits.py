"""Step limits as a step gate (ADR 87, ADR 91): at most `max_running` steps calling an
integration run at once across every worker, enforced by the database.

Before each attempt of a limited step the gate takes a running slot
(`Store.acquire_step_slot`); with none free the step waits (`concurrency`), its task
suspended and its task slot freed, in the limit's line. After the attempt it frees the
slot, which the store hands to the oldest step in line and wakes its task: the waiter
runs next, whoever else arrives meanwhile. A holder whose worker died keeps nothing:
its slot is live only while its task runs with a live lease. A waiter also looks again
every `RECHECK` seconds, for the slots freed that way (no one frees them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tether.engine.gates import Hold, StepCall
from tether.errors import ConfigError
from tether.flow.breakers import Host
from tether.models import AttemptError, WaitReason
from tether.models.step_limits import StepLimit
from tether.models.steps import check_integration

log = logging.getLogger("tether.flow.step_limits")

RECHECK = 30.0
"""Seconds a step waiting for a slot waits before it looks again, at most: a freed slot
wakes it at once, so this bounds only the wait for a slot whose holder's worker died
(freed when that task's lease expires) or a wake-up that could not be delivered."""

ERROR_RECHECK = 5.0
"""Seconds a step waits when the limit could not be asked (the database is away)."""


class StepLimitGate:
    """The step limits of the integrations it has one for (`configure`)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.limits: dict[str, StepLimit] = {}
        """The limits, by integration."""
        self._held: set[tuple[str, int, int]] = set()

    def configure(self, integration: str, max_running: int) -> StepLimit:
        """Let at most `max_running` steps naming `integration` run at once, fleet-wide
        (every process must configure the same limit)."""
        check_integration(integration)
        limit = StepLimit(integration, max_running)
        self.limits[integration] = limit
        return limit

    async def before(self, call: StepCall) -> Hold | None:
        """Take a running slot for the step, or hold it (`concurrency`) in line."""
        limit = self.limits.get(call.integration) if call.integration else None
        if limit is None:
            return None
        task, now = call.task, self.host.clock.now()
        try:
            took = await self.host.store.acquire_step_slot(
                limit, task.id, call.seq, task.attempt, now
            )
        except Exception as exc:  # gates must not raise: never run over the limit
            log.warning("step limit of %s not read (%s); the step waits", limit.integration, exc)
            return Hold(WaitReason.CONCURRENCY, now + ERROR_RECHECK)
        if not took:
            return Hold(WaitReason.CONCURRENCY, now + RECHECK)
        self._held.add((task.id, call.seq, task.attempt))
        return None

    async def withdraw(self, call: StepCall) -> None:
        """The step given a slot will not run now: free it."""
        await self.after(call, None, {})

    async def after(
        self, call: StepCall, error: AttemptError | None, notes: dict[str, Any]
    ) -> None:
        """Free the attempt's slot (the next step in line gets it)."""
        key = (call.task.id, call.seq, call.task.attempt)
        if key not in self._held or call.integration is None:
            return
        self._held.discard(key)
        limit = self.limits[call.integration]
        try:
            await self.host.store.release_step_slot(
                limit, call.task.id, call.seq, call.task.attempt, self.host.clock.now()
            )
        except Exception as exc:  # freed anyway once the task stops running
            log.warning("step limit slot of %s not freed: %s", limit.integration, exc)


def limits_from_config(table: Mapping[str, Any] | None) -> dict[str, int]:
    """`max_running` by integration, from the `[tether.step_limits]` table
    (`crm = 5`). Raises `ConfigError` naming the key at fault."""
    out: dict[str, int] = {}
    for name, value in (table or {}).items():
        where = f"step_limits.{name}"
        try:
            check_integration(name, where)
            out[name] = StepLimit(name, value).max_running
        except ValueError as exc:
            raise ConfigError(
                str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
            ) from None
    return out
