"""One definition of "the same submission" (ADR 60): an idempotency key sent through
Python and again over HTTP is a replay for the same submission, a conflict otherwise."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

# The API tests' live-server fixtures (a real uvicorn server on a fresh database).
from api.live import LiveServer, auth
from api.workflows import build_app
from tether import IdempotencyConflict
from tether.submission import submission_hash

BODY = {"workflow": "echo", "input": {"x": 5}, "priority": 3, "correlation_id": "order-7"}
DEADLINE = datetime(2030, 1, 1, tzinfo=UTC)
OPTIONS = {"tenant": "t1", "priority": 3, "correlation_id": "order-7"}
"""`BODY`'s options, as Python spells them."""


async def test_python_then_http_is_one_task(server: LiveServer) -> None:
    # A submitter of its own on the server's database: another caller, as a script is.
    app = build_app(server.settings.database_url, server.settings)
    try:
        first = await app.submit(
            "echo", {"x": 5}, idempotency_key="same-1", deadline=DEADLINE, **OPTIONS
        )
        assert first.created
        async with httpx.AsyncClient(base_url=server.url, headers=auth("t1")) as http:
            body = {**BODY, "deadline": "2030-01-01T00:00:00Z"}
            again = await http.post("/v1/tasks", json=body, headers={"Idempotency-Key": "same-1"})
            assert again.status_code == 202, again.text
            assert again.headers["Idempotent-Replayed"] == "true"
            assert again.json()["id"] == first.id

            # Another input under the same key: a conflict on both channels.
            other = {**body, "input": {"x": 6}}
            conflict = await http.post(
                "/v1/tasks", json=other, headers={"Idempotency-Key": "same-1"}
            )
            assert conflict.status_code == 422
            assert conflict.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
        with pytest.raises(IdempotencyConflict):
            await app.submit(
                "echo", {"x": 6}, idempotency_key="same-1", deadline=DEADLINE, **OPTIONS
            )
        # And the same submission through Python again: the same task, not created.
        replay = await app.submit(
            "echo", {"x": 5}, idempotency_key="same-1", deadline=DEADLINE.timestamp(), **OPTIONS
        )
        assert replay.id == first.id and not replay.created
    finally:
        await app.close()


async def test_http_then_python_is_one_task(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=auth("t1")) as http:
        first = await http.post("/v1/tasks", json=BODY, headers={"Idempotency-Key": "same-2"})
        assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    app = build_app(server.settings.database_url, server.settings)
    try:
        handle = await app.submit("echo", {"x": 5}, idempotency_key="same-2", **OPTIONS)
        assert handle.id == first.json()["id"] and not handle.created
        with pytest.raises(IdempotencyConflict):
            await app.submit("echo", {"x": 5}, idempotency_key="same-2", tenant="t1")
    finally:
        await app.close()


def test_the_hash_covers_what_runs_not_how_it_was_spelled() -> None:
    base = submission_hash("echo", '{"x":5}', queue="default", priority=3)
    assert base == submission_hash("echo", '{ "x": 5 }', queue="default", priority=3)
    for changed in (
        submission_hash("other", '{"x":5}', queue="default", priority=3),
        submission_hash("echo", '{"x":6}', queue="default", priority=3),
        submission_hash("echo", '{"x":5}', queue="q2", priority=3),
        submission_hash("echo", '{"x":5}', queue="default", priority=4),
        submission_hash("echo", '{"x":5}', queue="default", priority=3, correlation_id="c"),
        submission_hash("echo", '{"x":5}', queue="default", priority=3, deadline=1.0),
        submission_hash("echo", '{"x":5}', queue="default", priority=3, run_at=1.0),
    ):
        assert changed != base
