"""Routing new tasks by rollout: which version of its workflow a task starts on (ADR 84).

Each process keeps the rollouts in memory (`RolloutBook`), read from the database when
the app opens and again every `REFRESH` seconds, so a change made anywhere (the API,
the CLI, another process) routes every process's new tasks within that time. Routing
is a dictionary lookup and a hash: nothing on a submit's path waits for the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Iterable

from tether.models.rollouts import EVERY_TENANT, Rollout
from tether.store.base import Store

log = logging.getLogger("tether.rollouts")

REFRESH = 1.0
"""Seconds between two reads of the rollouts by a process: how long a change takes to
route every process's new tasks."""


def bucket(task_id: str) -> float:
    """Where a task id falls in [0, 1): a canary with share `s` takes the ids below
    `s`. A hash, so that one task (an idempotent submission sent again) always lands on
    the same side, and the shares hold for ids made in any order."""
    digest = hashlib.blake2b(task_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def route(rollout: Rollout | None, task_id: str, registered: Iterable[int]) -> int | None:
    """The version a new task `task_id` starts on under `rollout`, given the versions
    this process registers (None: the newest, as without a rollout)."""
    if rollout is None:
        return None
    versions = sorted(registered)
    canary = rollout.canary
    if canary is not None and canary in versions and bucket(task_id) < rollout.share:
        return canary
    if rollout.stable is not None:
        return rollout.stable
    others = [v for v in versions if v != canary]
    return others[-1] if others else None


class RolloutBook:
    """The rollouts as this process last read them, by (tenant, workflow)."""

    def __init__(self) -> None:
        self._rollouts: dict[tuple[str, str], Rollout] = {}
        self._refresher: asyncio.Task[None] | None = None

    def lookup(self, tenant: str, workflow: str) -> Rollout | None:
        """The rollout that applies to `tenant`'s new tasks of `workflow`: its own, else
        the one for every tenant, else None."""
        if not self._rollouts:
            return None
        found = self._rollouts.get((tenant, workflow))
        return found if found is not None else self._rollouts.get((EVERY_TENANT, workflow))

    def replace(self, rollouts: Iterable[Rollout]) -> None:
        """Take `rollouts` as the whole set (a fresh read of the database)."""
        self._rollouts = {(r.tenant, r.workflow): r for r in rollouts}

    def changed(self, tenant: str, workflow: str, rollout: Rollout | None) -> None:
        """A change this process made: seen at once here (others within `REFRESH`)."""
        if rollout is None:
            self._rollouts.pop((tenant, workflow), None)
        else:
            self._rollouts[(tenant, workflow)] = rollout

    async def start(self, store: Store) -> None:
        """Read the rollouts now, then keep reading them every `REFRESH` seconds (a
        first read that fails is logged and tried again with the next)."""
        try:
            self.replace(await store.list_rollouts())
        except Exception as exc:
            log.warning("rollouts not read (tried again in %s s): %s", REFRESH, exc)
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(self._refresh(store))

    async def stop(self) -> None:
        """Stop reading (the app closes)."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._refresher
            self._refresher = None

    async def _refresh(self, store: Store) -> None:
        while True:
            await asyncio.sleep(REFRESH)
            try:
                self.replace(await store.list_rollouts())
            except Exception as exc:  # the database is down: route by what was last read
                log.debug("rollouts not read again: %s", exc)
