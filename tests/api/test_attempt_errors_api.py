"""`GET /v1/tasks/{id}/steps` shows every failed attempt of a step (error, bounded
traceback, times, classification, retry decision), and `Client.steps` reads it back;
on both backends (ADR 62)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import httpx
import pytest

import flaky
from api.live import LiveServer, auth, make_settings, token
from tether import Client, Tether
from tether.models import RetryDecision
from tether.models.times import format_time, parse_time


async def test_the_steps_endpoint_shows_each_attempts_error(
    make_app: Callable[[], Tether], store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky.durable_backoffs_from(monkeypatch)
    app = make_app()
    flaky.register(app)
    task_id = await flaky.run_to_failure(app)
    (stored,) = await app.steps(task_id)

    with LiveServer(make_settings(store_url), workers=False) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=auth("default")) as http:
            response = await http.get(f"/v1/tasks/{task_id}/steps")
            assert response.status_code == 200, response.text
            (step,) = response.json()["items"]
            other = await http.get(f"/v1/tasks/{task_id}/steps", headers=auth("t2"))
            assert other.status_code == 404  # another tenant sees nothing of it
            schema = (await http.get("/openapi.json")).json()["components"]["schemas"]
        async with Client(server.url, token=token("default")) as client:
            (read_back,) = await client.steps(task_id)

    attempts = step["attempt_errors"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [(a["type"], a["transient"], a["classified_by"]) for a in attempts] == [
        ("ConnectionResetError", True, "network or timeout error"),
        ("Transient", True, "Transient"),
        ("ValueError", False, "default"),
    ]
    assert [(a["decision"], a["reason"], a["retry_in"]) for a in attempts] == [
        ("retry", "backoff", 0.01),
        ("retry_backoff", "retry_after", flaky.RETRY_AFTER),
        ("give_up", "permanent", None),
    ]
    for shown, kept in zip(attempts, stored.attempt_errors, strict=True):
        # every field, as stored: traceback and times too (times as RFC 3339, ADR 65)
        times = {k: format_time(kept.to_json()[k]) for k in ("started_at", "finished_at")}
        assert shown == {**kept.to_json(), **times}
        assert "Traceback (most recent call last)" in shown["traceback"]
    assert step["error"]["type"] == "ValueError" and step["error"]["permanent"] is True

    # read back through RFC 3339: times to the microsecond the API shows
    assert read_back.attempt_errors == tuple(
        dataclasses.replace(
            a,
            started_at=parse_time(format_time(a.started_at)),
            finished_at=parse_time(format_time(a.finished_at)),
        )
        for a in stored.attempt_errors
    )
    flaky.check_attempts(read_back)
    assert read_back.attempt_errors[1].decision == RetryDecision.RETRY_BACKOFF

    described = schema["StepOut"]["properties"]["attempt_errors"]
    assert described["items"]["$ref"].endswith("/AttemptErrorOut")
    assert "classified_by" in schema["AttemptErrorOut"]["required"]
