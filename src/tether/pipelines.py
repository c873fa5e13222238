"""Event pipelines: workflows started by events (issue 18 part 3, ADR 85).

`@app.workflow(..., on="research.complete")` subscribes a workflow to an event type,
with an optional `when` predicate on the payload. `app.emit(event, payload)` (or, from a
workflow, the durable `ctx.emit`) starts each matching subscriber with the payload as
its input, all in one transaction, each with the idempotency key
`event:<event key>:<workflow>`: the same event emitted again (a retried or replayed
emitter presents the same key) starts nobody twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Predicate = Callable[[Any], bool]


@dataclass(frozen=True)
class Subscription:
    """Workflow `workflow` starts on each event of type `event` whose payload `when`
    accepts (None: every one)."""

    event: str
    workflow: str
    when: Predicate | None = None


def event_key(key: str, workflow: str) -> str:
    """The idempotency key of the task event `key` starts for `workflow`."""
    return f"event:{key}:{workflow}"


class Subscriptions:
    """The subscriptions of an app, by event type."""

    def __init__(self) -> None:
        self._by_event: dict[str, dict[str, Subscription]] = {}

    def add(self, workflow: str, events: str | Iterable[str], when: Predicate | None) -> None:
        """Subscribe `workflow` to `events` (once per event type: its versions share it,
        and the last declaration's `when` stands)."""
        for event in [events] if isinstance(events, str) else list(events):
            if not event:
                raise ValueError("on= names an event type: a non-empty string")
            self._by_event.setdefault(event, {})[workflow] = Subscription(event, workflow, when)

    def matching(self, event: str, payload: Any) -> list[Subscription]:
        """The subscriptions an event of type `event` with `payload` starts, by workflow
        name. A `when` that raises is an error of the emitter's (it propagates)."""
        subs = self._by_event.get(event, {})
        return [s for _, s in sorted(subs.items()) if s.when is None or s.when(payload)]

    def events(self) -> list[str]:
        """The event types something subscribes to."""
        return sorted(self._by_event)
