"""Limits and problem responses: body cap, media type, malformed JSON, rate limit, 405,
validation errors, health and metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from api.live import LiveServer, auth

PROBLEM = "application/problem+json"


@pytest.fixture
def small(start_server: Callable[..., LiveServer]) -> Iterator[httpx.Client]:
    server = start_server(max_body_bytes=2048, submit_rate=2, submit_burst=3)
    with httpx.Client(base_url=server.url, headers=auth(), timeout=30) as client:
        yield client


def _is_problem(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["title"]
    assert "Traceback" not in r.text
    return dict(body)


def test_body_over_the_cap_is_413(small: httpx.Client) -> None:
    big = {"workflow": "echo", "input": {"x": 1}, "correlation_id": "c" * 150, "pad": "x" * 4000}
    _is_problem(small.post("/v1/tasks", json=big), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        yield b'{"workflow": "echo", "input": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    r = small.post("/v1/tasks", content=chunks(), headers={"Content-Type": "application/json"})
    _is_problem(r, 413)
    # Just under the cap is fine (and validated normally).
    ok = small.post("/v1/tasks", json={"workflow": "echo", "input": {"x": 1}})
    assert ok.status_code == 202


def test_malformed_json_and_media_type(small: httpx.Client) -> None:
    json_header = {"Content-Type": "application/json"}
    _is_problem(small.post("/v1/tasks", content=b'{"workflow": ', headers=json_header), 400)
    _is_problem(small.post("/v1/tasks", content=b"[1, 2", headers=json_header), 400)
    text = {"Content-Type": "text/plain"}
    _is_problem(small.post("/v1/tasks", content=b'{"workflow": "echo"}', headers=text), 415)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    _is_problem(small.post("/v1/tasks", content=b"workflow=echo", headers=form), 415)
    # Missing body entirely: a validation error naming the body.
    body = _is_problem(small.post("/v1/tasks", headers=json_header), 422)
    assert body["errors"]


def test_validation_errors_list_fields(small: httpx.Client) -> None:
    r = small.post(
        "/v1/tasks",
        json={"workflow": "", "priority": 99999, "deadline": "tomorrow", "extra": 1},
    )
    body = _is_problem(r, 422)
    locs = {tuple(e["loc"]) for e in body["errors"]}  # type: ignore[union-attr]
    assert {("body", "workflow"), ("body", "priority"), ("body", "deadline")} <= locs
    assert ("body", "extra") in locs
    body = _is_problem(small.post("/v1/tasks", json={"workflow": "nope"}), 422)
    assert body["errors"][0]["loc"] == ["body", "workflow"]  # type: ignore[index]
    body = _is_problem(small.post("/v1/tasks", json={"workflow": "echo", "input": {"x": "a"}}), 422)
    assert body["errors"][0]["loc"] == ["body", "input", "x"]  # type: ignore[index]
    _is_problem(small.get("/v1/tasks", params={"status": "sleeping"}), 422)
    _is_problem(small.get("/v1/tasks", params={"limit": 0}), 422)


def test_submission_rate_limit_is_per_tenant(small: httpx.Client) -> None:
    body = {"workflow": "echo", "input": {"x": 1}}
    statuses = [small.post("/v1/tasks", json=body).status_code for _ in range(3)]
    assert statuses == [202, 202, 202]  # the burst
    r = small.post("/v1/tasks", json=body)
    _is_problem(r, 429)
    assert int(r.headers["Retry-After"]) >= 1
    # Another tenant has a bucket of its own; reads are not limited.
    assert small.post("/v1/tasks", json=body, headers=auth("t2")).status_code == 202
    assert small.get("/v1/tasks").status_code == 200
    # A batch costs one token per task.
    batch = {"tasks": [body] * 3}
    assert small.post("/v1/tasks:batch", json=batch, headers=auth("t3")).status_code == 202
    _is_problem(small.post("/v1/tasks", json=body, headers=auth("t3")), 429)


def test_other_errors_are_problems(small: httpx.Client) -> None:
    body = _is_problem(small.delete("/v1/tasks"), 405)
    assert body["instance"] == "/v1/tasks"
    _is_problem(small.get("/v1/nothing-here"), 404)
    _is_problem(small.put("/v1/tasks/abc", json={}), 405)


def test_health_ready_and_metrics(small: httpx.Client) -> None:
    assert small.get("/healthz").json() == {"status": "ok", "detail": None}
    assert small.get("/readyz").json()["status"] == "ok"
    for _ in range(2):
        assert small.post("/v1/tasks", json={"workflow": "gate", "input": {}}).status_code == 202
    text = small.get("/metrics").text  # an admin of t1: t1's queue figures
    assert 'tether_tasks{queue="default",status=' in text
    assert 'tether_queue_oldest_seconds{queue="default"}' in text


def test_unexpected_errors_are_500_problems_without_details(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server()

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("db password is hunter2")

    server.app.store.list_tasks = broken  # type: ignore[method-assign]
    with httpx.Client(base_url=server.url, headers=auth(), timeout=30) as client:
        body = _is_problem(client.get("/v1/tasks"), 500)
        assert "hunter2" not in str(body) and "RuntimeError" not in str(body)
        assert client.get("/healthz").status_code == 200  # the server lives on
