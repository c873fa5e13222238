"""Fan-out: which subscriptions an event goes to, and the delivery rows that says.

`plan` is the pure function the store calls inside its fan-out (and replay)
transaction: it gets a page of events, the summaries of their tasks and the active
subscriptions that may want them, and returns the deliveries to insert.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from tether.ids import new_id
from tether.models import Event
from tether.models.webhooks import WebhookSubscription
from tether.store.outbox import NewDelivery, TaskSummary
from tether.webhooks import payload


def plan(
    events: list[Event],
    tasks: Mapping[str, TaskSummary],
    subscriptions: list[WebhookSubscription],
    now: float,
) -> list[NewDelivery]:
    """The deliveries of `events` to the `subscriptions` that select them."""
    by_tenant: dict[str, list[WebhookSubscription]] = defaultdict(list)
    by_task: dict[str, list[WebhookSubscription]] = defaultdict(list)
    for sub in subscriptions:
        if sub.task_id is None:
            by_tenant[sub.tenant].append(sub)
        else:
            by_task[sub.task_id].append(sub)
    out: list[NewDelivery] = []
    for event in events:
        candidates = by_tenant.get(event.tenant, []) + by_task.get(event.task_id, [])
        if not candidates:
            continue
        task = tasks.get(event.task_id)
        workflow = str(task["workflow"]) if task is not None else None
        text: str | None = None
        for sub in candidates:
            if sub.tenant != event.tenant or not sub.selects(event.type, workflow, event.task_id):
                continue
            text = text or payload.body(event, task)
            out.append(
                NewDelivery(
                    id=new_id(),
                    subscription_id=sub.id,
                    tenant=event.tenant,
                    event_id=event.id,
                    task_id=event.task_id,
                    event_type=event.type,
                    webhook_id=payload.webhook_id(sub.id, event.id),
                    body=text,
                )
            )
    return out
