"""Signing per Standard Webhooks (checked with the library's own `verify`), the body a
delivery carries, and which subscriptions an event goes to (`fanout.plan`)."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tether.models import Event
from tether.models.webhooks import WebhookSubscription
from tether.webhooks import fanout, payload, signing


def _sub(**kw: object) -> WebhookSubscription:
    values: dict[str, object] = {
        "id": "0190f3c2-6b1e-7cc1-9d2a-1f2e3d4c5b6a",
        "tenant": "t1",
        "url": "https://hooks.example.com/x",
        "event_types": ["*"],
        "secret": signing.new_secret(),
    }
    values.update(kw)
    return WebhookSubscription(**values)  # type: ignore[arg-type]


def _event(id: int = 7, type: str = "task.succeeded", task: str = "task-1") -> Event:
    return Event(
        id=id, task_id=task, tenant="t1", at=1718000000.5, type=type, new_status="succeeded"
    )


def test_a_signed_delivery_verifies_with_the_library() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    body = payload.body(_event(), {"id": "task-1", "workflow": "wf", "status": "succeeded"})
    headers = signing.headers("msg_1", body, [secret], time.time())
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    parsed = Webhook(secret).verify(body, headers)
    assert parsed["type"] == "task.succeeded"
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("succeeded", "failed"), headers)


def test_during_a_rotation_both_secrets_verify() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    sub = _sub(secret=new, previous_secret=old, previous_secret_until=time.time() + 60)
    secrets = sub.signing_secrets(time.time())
    assert secrets == [new, old]
    headers = signing.headers("msg_2", "{}", secrets, time.time())
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify("{}", headers)
    Webhook(old).verify("{}", headers)
    # After the overlap window only the new secret signs.
    assert sub.signing_secrets(time.time() + 120) == [new]


def test_the_body_is_the_event_and_a_summary_never_input_or_result() -> None:
    task = {"id": "task-1", "workflow": "wf", "status": "succeeded", "tenant": "t1"}
    data = json.loads(payload.body(_event(), task))
    assert data["type"] == "task.succeeded"
    assert data["timestamp"] == "2024-06-10T06:13:20.500000Z"
    assert data["data"]["event"]["id"] == 7 and data["data"]["event"]["task_id"] == "task-1"
    assert data["data"]["task"] == task
    assert json.loads(payload.body(_event(), None))["data"]["task"] is None


def test_the_webhook_id_is_stable_per_subscription_and_event() -> None:
    sub = _sub()
    first = payload.webhook_id(sub.id, 42)
    assert first == payload.webhook_id(sub.id, 42) == "msg_0190f3c26b1e7cc19d2a1f2e3d4c5b6a_42"
    assert first != payload.webhook_id(sub.id, 43)


def test_plan_selects_by_type_workflow_task_and_tenant() -> None:
    tasks = {
        "task-1": {"id": "task-1", "workflow": "wf"},
        "task-2": {"id": "task-2", "workflow": "other"},
    }
    everything = _sub(id="s-all")
    ends = _sub(id="s-end", event_types=["task.succeeded"], workflows=["wf"])
    own = _sub(id="s-own", task_id="task-2", event_types=["task.created"])
    foreign = _sub(id="s-foreign", tenant="t2")
    events = [
        _event(1, "task.created", "task-1"),
        _event(2, "task.succeeded", "task-1"),
        _event(3, "task.created", "task-2"),
        _event(4, "task.succeeded", "task-2"),
    ]
    got = fanout.plan(events, tasks, [everything, ends, own, foreign], 0.0)
    pairs = sorted((d.subscription_id, d.event_id) for d in got)
    assert pairs == [
        ("s-all", 1),
        ("s-all", 2),
        ("s-all", 3),
        ("s-all", 4),
        ("s-end", 2),
        ("s-own", 3),
    ]
    bodies = {d.event_id: d.body for d in got}
    assert all(json.loads(bodies[i])["data"]["event"]["id"] == i for i in bodies)
    assert len({d.id for d in got}) == len(got)
