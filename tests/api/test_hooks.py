"""Inbound signed webhooks against a real uvicorn server, on both backends: signed
with the `standardwebhooks` library's own signer, as a sending agent would."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks import Webhook

from api.live import LiveServer, auth, make_settings

SECRET = "whsec_" + base64.b64encode(b"inbound-hook-secret-0123456789ab").decode()
OTHER = "whsec_" + base64.b64encode(b"someone-else-entirely-0123456789").decode()


@pytest.fixture
def server(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setenv("REPORT_HOOK_SECRET", SECRET)
    hooks = {
        # from the config file's shape: start a workflow, the input at a dotted path
        "report": {
            "secret_env": "REPORT_HOOK_SECRET",
            "tenant": "t1",
            "workflow": "echo",
            "input": "data",
        },
        # signal a task named by a header
        "go": {
            "secret": SECRET,
            "tenant": "t1",
            "signal": "go",
            "task_header": "X-Task",
            "payload": "data",
        },
    }
    srv = LiveServer(make_settings(store_url, hooks=hooks, hook_max_body_bytes=2048))
    # and one in code: the task id from the body by a function
    srv.app.hook(
        "go-body", secret=SECRET, tenant="t1", signal="go", task_id=lambda body, _: body["task"]
    )
    with srv:
        yield srv


def _signed(
    body: dict[str, Any],
    msg_id: str,
    *,
    secret: str = SECRET,
    at: datetime | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[bytes, dict[str, str]]:
    data = orjson.dumps(body)
    when = at or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, when, data.decode())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        **(extra or {}),
    }
    return data, headers


def _wait_task(server: LiveServer, task_id: str, status: str) -> dict[str, Any]:
    end = time.monotonic() + 15
    while True:
        task = httpx.get(f"{server.url}/v1/tasks/{task_id}", headers=auth("t1")).json()
        if task["status"] == status or time.monotonic() > end:
            assert task["status"] == status, task
            return dict(task)
        time.sleep(0.05)


def test_a_signed_delivery_starts_the_workflow_once(server: LiveServer) -> None:
    data, headers = _signed({"type": "report.ready", "data": {"x": 21}}, "msg_report_1")
    first = httpx.post(f"{server.url}/v1/hooks/report", content=data, headers=headers)
    assert first.status_code == 202, first.text
    receipt = first.json()
    assert receipt["action"] == "started" and receipt["replayed"] is False
    task = _wait_task(server, receipt["task_id"], "succeeded")
    assert task["result"] == {"x": 21, "doubled": 42}
    assert task["created_by"] == "hook:report"

    # The sender retries (a new timestamp and signature, the same webhook-id): the same
    # outcome, and no second task.
    later = datetime.now(UTC) + timedelta(seconds=30)
    data, headers = _signed({"type": "report.ready", "data": {"x": 21}}, "msg_report_1", at=later)
    again = httpx.post(f"{server.url}/v1/hooks/report", content=data, headers=headers)
    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == {**receipt, "replayed": True}
    listed = httpx.get(f"{server.url}/v1/tasks", headers=auth("t1")).json()
    assert [t["id"] for t in listed["items"]] == [receipt["task_id"]]


def test_a_signed_delivery_signals_a_task(server: LiveServer) -> None:
    submitted = httpx.post(
        f"{server.url}/v1/tasks", json={"workflow": "gate", "input": {}}, headers=auth("t1")
    ).json()
    _wait_task(server, submitted["id"], "waiting")
    data, headers = _signed({"data": {"ok": True}}, "msg_go_1", extra={"X-Task": submitted["id"]})
    sent = httpx.post(f"{server.url}/v1/hooks/go", content=data, headers=headers)
    assert sent.status_code == 202, sent.text
    assert sent.json()["action"] == "signalled" and sent.json()["signal_id"] is not None
    replay = httpx.post(f"{server.url}/v1/hooks/go", content=data, headers=headers)
    assert replay.json() == {**sent.json(), "replayed": True}
    task = _wait_task(server, submitted["id"], "succeeded")
    assert task["result"]["payload"] == {"ok": True}
    end = time.monotonic() + 15  # on PostgreSQL events can lag a moment (ADR 13)
    while True:
        events = httpx.get(
            f"{server.url}/v1/tasks/{submitted['id']}/events", headers=auth("t1")
        ).json()["items"]
        if events[-1]["type"] == "task.succeeded" or time.monotonic() > end:
            break
        time.sleep(0.05)
    assert [e["type"] for e in events].count("signal.received") == 1  # one signal, not two


def test_the_task_id_mapped_in_code_and_refusals(server: LiveServer) -> None:
    url = f"{server.url}/v1/hooks/go-body"
    # A task of another tenant does not exist for this hook's tenant.
    theirs = httpx.post(
        f"{server.url}/v1/tasks", json={"workflow": "gate", "input": {}}, headers=auth("t2")
    ).json()
    data, headers = _signed({"task": theirs["id"]}, "msg_other_tenant")
    assert httpx.post(url, content=data, headers=headers).status_code == 404
    # The body lacks what the mapping needs: 422, and nothing was remembered.
    data, headers = _signed({"no": "task"}, "msg_unmapped")
    missing = httpx.post(url, content=data, headers=headers)
    assert missing.status_code == 422
    assert missing.headers["content-type"] == "application/problem+json"
    # An ended task takes no signal: 409.
    done = httpx.post(
        f"{server.url}/v1/tasks", json={"workflow": "echo", "input": {"x": 1}}, headers=auth("t1")
    ).json()
    _wait_task(server, done["id"], "succeeded")
    data, headers = _signed({"task": done["id"]}, "msg_ended")
    assert httpx.post(url, content=data, headers=headers).status_code == 409


@pytest.mark.parametrize(
    "tamper",
    ["other-secret", "body-changed", "no-signature", "garbled", "too-old", "bearer-only"],
)
def test_a_bad_signature_is_401_and_does_nothing(server: LiveServer, tamper: str) -> None:
    body = {"data": {"x": 5}}
    if tamper == "other-secret":
        data, headers = _signed(body, "msg_bad", secret=OTHER)
    elif tamper == "too-old":
        data, headers = _signed(body, "msg_bad", at=datetime.now(UTC) - timedelta(minutes=10))
    else:
        data, headers = _signed(body, "msg_bad")
    if tamper == "body-changed":
        data = orjson.dumps({"data": {"x": 6}})
    elif tamper == "no-signature":
        del headers["webhook-signature"]
    elif tamper == "garbled":
        headers["webhook-signature"] = "v1"
    elif tamper == "bearer-only":
        headers = {"content-type": "application/json", **auth("t1")}
    answer = httpx.post(f"{server.url}/v1/hooks/report", content=data, headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert SECRET not in answer.text
    listed = httpx.get(f"{server.url}/v1/tasks", headers=auth("t1")).json()
    assert listed["items"] == []
    # The refused id was not remembered: a good delivery with it now acts.
    data, headers = _signed(body, "msg_bad")
    good = httpx.post(f"{server.url}/v1/hooks/report", content=data, headers=headers)
    assert good.status_code == 202 and good.json()["replayed"] is False


def test_unknown_hook_oversized_body_and_bad_input(server: LiveServer) -> None:
    data, headers = _signed({"data": {"x": 1}}, "msg_1")
    unknown = httpx.post(f"{server.url}/v1/hooks/nope", content=data, headers=headers)
    assert unknown.status_code == 404
    data, headers = _signed({"data": {"x": 1}, "pad": "x" * 4096}, "msg_big")
    big = httpx.post(f"{server.url}/v1/hooks/report", content=data, headers=headers)
    assert big.status_code == 413
    data, headers = _signed({"data": {"x": "not a number"}}, "msg_bad_input")
    invalid = httpx.post(f"{server.url}/v1/hooks/report", content=data, headers=headers)
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["loc"][:2] == ["body", "input"]
