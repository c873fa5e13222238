"""Workflow rollouts: which version new tasks of a workflow start on (ADR 84).

Without a rollout a task starts on its workflow's newest registered version. A rollout
pins the `stable` version and may name a `canary` taking a `share` of new tasks, chosen
by task id (`tether.rollouts.bucket`), so one task always lands on the same side. It is
kept in the database, for one tenant or for all (`tenant` "*"), and every process reads
it again within `tether.rollouts.REFRESH` seconds: promoting or rolling back needs no
deploy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EVERY_TENANT = "*"
"""The `tenant` of a rollout that applies to every tenant without one of its own."""


@dataclass
class Rollout:
    """How new tasks of `workflow` (of `tenant`, or `EVERY_TENANT`) pick their version."""

    tenant: str
    workflow: str
    stable: int | None = None
    """The version tasks start on outside the canary share (None: the newest
    registered version other than the canary)."""
    canary: int | None = None
    """The version a `share` of new tasks start on (None: no canary)."""
    share: float = 0.0
    """The part of new tasks, 0 to 1, that start on `canary`."""
    started_at: float | None = None
    """When the canary began (its figures count tasks created since)."""
    updated_by: str | None = None
    updated_at: float = 0.0


@dataclass
class VersionFigures:
    """How the tasks of one version of a workflow fare, created since a time."""

    version: int
    counts: dict[str, int] = field(default_factory=dict)
    """Tasks by status."""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def ended(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("succeeded", "failed", "cancelled"))

    @property
    def failure_rate(self) -> float | None:
        """Failed over ended (None before any ended)."""
        return self.counts.get("failed", 0) / self.ended if self.ended else None


@dataclass
class RolloutView:
    """A workflow's rollout as it applies to a tenant, with its versions' figures."""

    workflow: str
    tenant: str
    rollout: Rollout | None
    """The rollout that applies (the tenant's, else every tenant's; None: the newest
    version takes every new task)."""
    registered: list[int]
    """The versions this app registers."""
    since: float
    """The figures count tasks created since then: the canary's start, else a day ago."""
    figures: list[VersionFigures]
