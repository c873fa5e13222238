"""Step limits: at most `max_running` steps calling one integration run at once across
the fleet, counting only running steps (ADR 91). A step over the limit waits
(`concurrency`) holding no task slot, and is handed the slot of a holder that finishes;
a holder whose worker died loses its slot with its task's lease."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepLimit:
    """At most `max_running` steps naming `integration` run at once, fleet-wide."""

    integration: str
    max_running: int

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_running, int)
            or isinstance(self.max_running, bool)
            or self.max_running < 1
        ):
            raise ValueError(f"max_running: a whole number of at least 1, not {self.max_running!r}")


@dataclass
class StepLimitUsage:
    """How full a step limit is now."""

    integration: str
    max_running: int
    """The limit, as the workers last stored it."""
    running: int
    """Steps holding a slot (or handed one, not yet started)."""
    waiting: int
    """Steps waiting for a slot."""
