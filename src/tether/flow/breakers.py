"""Circuit breakers as a step gate (ADR 87, ADR 91), their state in the database.

The gate answers from memory while a step's breakers are closed: this process keeps
every breaker row (`list_breakers`), read again every `REFRESH` seconds and updated by
its own writes, so a closed breaker costs a step nothing. A breaker that is not closed
sends the step to the database (`Store.enter_breaker`): held (`circuit_open`) until the
cool-down ends, or let through, as a probe when it is half-open. Outcomes: a transient
failure is written at once (it may open the breaker, and the opening is announced in
that transaction); a success is written at once only when it ends a run of failures or
closes a probe, else counted here and written with the next refresh (only failure-rate
policies need the count); a permanent failure counts for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from tether.clock import Clock
from tether.engine.gates import Hold, StepCall
from tether.errors import ConfigError
from tether.models import AttemptError, WaitReason
from tether.models.breakers import FLEET, Breaker, BreakerPolicy, BreakerState
from tether.models.steps import check_integration
from tether.store.base import Store
from tether.store.breakers import Announce, Outcome

log = logging.getLogger("tether.flow.breakers")

REFRESH = 1.0
"""Seconds between two reads of the breakers by a process (how soon it sees a breaker
another process opened), and between two writes of the successes it counted."""

STALE = 3 * REFRESH
"""Seconds after which what this process last read of the breakers is too old to answer
from: the next step reads them again first (a new process reads them before its first
step; a refresher that kept failing is not trusted)."""

ERROR_RECHECK = 5.0
"""Seconds a step waits when its breaker could not be asked (the database is away)."""


class Host(Protocol):
    """What the gate uses of its application: its store and clock, as they are now (a
    test environment swaps both)."""

    store: Store
    clock: Clock


def outcome_of(error: AttemptError | None) -> Outcome:
    """What an attempt means for its integration's breaker: a success, a transient
    failure, or (a permanent failure: a validation error, a 4xx, a bug of the step's
    own) nothing either way."""
    if error is None:
        return Outcome.SUCCESS
    return Outcome.FAILURE if error.transient else Outcome.NEUTRAL


class BreakerGate:
    """The circuit breakers of the integrations it has a policy for (`configure`)."""

    def __init__(self, host: Host, announce: Announce) -> None:
        self.host = host
        self.announce = announce
        """The notifications an opening calls for (`circuit.opened`)."""
        self.policies: dict[str, BreakerPolicy] = {}
        """The breakers' policies, by integration."""
        self._seen: dict[tuple[str, str], Breaker] = {}
        self._successes: dict[tuple[str, str], int] = {}
        self._probes: dict[tuple[str, int, int], tuple[str, tuple[str, ...]]] = {}
        """Steps let through as probes: their integration and the breakers' scopes."""
        self._refresher: asyncio.Task[None] | None = None
        self._read_at: float | None = None
        """Event-loop time of the last read of every breaker (None: never read)."""
        self._reading: asyncio.Task[None] | None = None

    def configure(self, integration: str, policy: BreakerPolicy) -> BreakerPolicy:
        """Give `integration` a breaker with `policy` (replacing its policy)."""
        check_integration(integration)
        self.policies[integration] = policy
        return policy

    # what this process knows -------------------------------------------------------------
    def changed(self, breaker: Breaker) -> None:
        """A breaker as it now stands, from a write of this process."""
        self._seen[(breaker.tenant, breaker.integration)] = breaker

    def _closed(self, tenant: str, integration: str) -> bool:
        for scope in (FLEET, tenant):
            b = self._seen.get((scope, integration))
            if b is not None and b.state != BreakerState.CLOSED:
                return False
        return True

    # the gate ---------------------------------------------------------------------------
    async def before(self, call: StepCall) -> Hold | None:
        """Let the step through while its breakers are closed (from memory); else ask
        the database: held until the cool-down ends, or through as a probe."""
        policy = self.policies.get(call.integration) if call.integration else None
        if policy is None or call.integration is None:
            return None
        self._keep_refreshing()
        task = call.task
        if await self._recent() and self._closed(task.tenant, call.integration):
            return None
        now = self.host.clock.now()
        try:
            entry = await self.host.store.enter_breaker(
                task.tenant, call.integration, policy, task.id, call.seq, task.attempt, now
            )
        except Exception as exc:  # gates must not raise: wait, then ask again
            log.warning("breaker of %s not read (%s); the step waits", call.integration, exc)
            return Hold(WaitReason.CIRCUIT_OPEN, now + ERROR_RECHECK)
        for b in entry.breakers:
            self.changed(b)
        if entry.go:
            if entry.probes:
                self._probes[(task.id, call.seq, task.attempt)] = (call.integration, entry.probes)
            return None
        return Hold(WaitReason.CIRCUIT_OPEN, entry.until or now + policy.cool_down)

    async def withdraw(self, call: StepCall) -> None:
        """The step let through will not run now (another gate holds it): give its
        probe, if it took one, to the next step in line."""
        task = call.task
        probing = self._probes.pop((task.id, call.seq, task.attempt), None)
        if probing is not None:
            integration, scopes = probing
            for scope in scopes:
                await self._write(call, integration, Outcome.NEUTRAL, probe=scope)

    async def after(
        self, call: StepCall, error: AttemptError | None, notes: dict[str, Any]
    ) -> None:
        """Count the attempt's outcome (`outcome_of`) on its integration's breaker."""
        policy = self.policies.get(call.integration) if call.integration else None
        if policy is None or call.integration is None:
            return
        task = call.task
        result = outcome_of(error)
        probing = self._probes.pop((task.id, call.seq, task.attempt), None)
        if probing is not None:
            for scope in probing[1]:
                await self._write(call, call.integration, result, probe=scope)
            return
        key = (policy.scope(task.tenant), call.integration)
        if result == Outcome.FAILURE:
            await self._write(call, call.integration, result)
        elif result == Outcome.SUCCESS:
            known = self._seen.get(key)
            if known is not None and known.state == BreakerState.CLOSED and known.failures:
                await self._write(call, call.integration, result)  # ends a run of failures
            elif policy.failure_rate is not None:
                self._successes[key] = self._successes.get(key, 0) + 1

    async def _write(
        self, call: StepCall, integration: str, result: Outcome, *, probe: str | None = None
    ) -> None:
        """Write an outcome on the breaker counting the step's tenant, or, for a probe,
        on the breaker of scope `probe` it probed."""
        policy = self.policies[integration]
        task = call.task
        tenant = task.tenant if probe is None else probe
        key = (policy.scope(task.tenant), integration)
        successes = self._successes.pop(key, 0) if probe is None else 0
        try:
            moved = await self.host.store.breaker_outcome(
                tenant,
                integration,
                policy,
                result,
                self.host.clock.now(),
                self.announce,
                successes=successes,
                probe=None if probe is None else (task.id, call.seq, task.attempt),
            )
        except Exception as exc:  # gates must not raise: this outcome goes uncounted
            log.warning("breaker of %s not updated: %s", integration, exc)
            return
        self.changed(moved.breaker)
        if moved.opened:
            log.warning(
                "circuit breaker of %s (%s) opened: %s",
                integration,
                "every tenant" if key[0] == FLEET else f"tenant {key[0]}",
                moved.breaker.reason,
            )

    # reading the breakers again ----------------------------------------------------------
    async def _recent(self) -> bool:
        """Whether what this process knows of the breakers may answer a step: read
        within `STALE` seconds, else read now (one read for every step that asks
        meanwhile). False when they cannot be read: then the database is asked."""
        loop = asyncio.get_running_loop()
        if self._read_at is not None and loop.time() - self._read_at <= STALE:
            return True
        if self._reading is None or self._reading.done():
            self._reading = loop.create_task(self._read())
        try:
            await asyncio.shield(self._reading)
        except Exception:
            return False
        return True

    async def _read(self) -> None:
        rows = await self.host.store.list_breakers()
        self._seen = {(b.tenant, b.integration): b for b in rows}
        self._read_at = asyncio.get_running_loop().time()

    def _keep_refreshing(self) -> None:
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(
                self._refresh(), name="tether-breakers"
            )

    async def refresh(self) -> None:
        """Write the successes counted since the last time, then read every breaker."""
        counted, self._successes = self._successes, {}
        for (scope, integration), n in counted.items():
            policy = self.policies.get(integration)
            if policy is None:
                continue
            moved = await self.host.store.breaker_outcome(
                scope,  # the policy's scope of the scope's own steps is itself
                integration,
                policy,
                Outcome.NEUTRAL,
                self.host.clock.now(),
                self.announce,
                successes=n,
            )
            self.changed(moved.breaker)
        await self._read()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH)
            try:
                await self.refresh()
            except Exception as exc:  # the database is away: go by what was last read
                log.debug("breakers not read again: %s", exc)

    async def stop(self) -> None:
        """Stop reading (the app closes); successes not written yet are dropped."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._refresher
            self._refresher = None


BREAKER_KEYS = frozenset(
    ("failures", "failure_rate", "window", "min_calls", "cool_down", "probes", "per_tenant")
)


def policies_from_config(table: Mapping[str, Any] | None) -> dict[str, BreakerPolicy]:
    """Breaker policies from the `[tether.breakers]` table, by integration:

        [tether.breakers.crm]
        failures = 5          # transient failures in a row that open it
        cool_down = 30        # seconds open before a probe
        failure_rate = 0.5    # optional: or half the calls of the last `window` s
        window = 60
        min_calls = 20
        probes = 1
        per_tenant = false

    Raises `ConfigError` naming the key at fault."""
    out: dict[str, BreakerPolicy] = {}
    for name, spec in (table or {}).items():
        where = f"breakers.{name}"
        try:
            check_integration(name, where)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: expected a table of the breaker's settings")
        unknown = sorted(set(spec) - BREAKER_KEYS)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)} ({', '.join(sorted(BREAKER_KEYS))})"
            )
        try:
            out[name] = BreakerPolicy(**dict(spec))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return out
