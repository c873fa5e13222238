"""The schedule endpoints on a live server: the life cycle (create, read with next
ticks, pause, resume, trigger, delete), validation as problems, the role matrix,
tenancy (another tenant's schedule does not exist), `tether.Client.schedules`, and a
per-second schedule firing on the server's embedded worker, on time."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from api.live import LiveServer, auth, token
from apps.procs import wait_until
from tether import Client
from tether.api import problem_types
from tether.client import ApiError, NotFoundError
from tether.models.times import parse_time
from tether.schedules import scheduled_tick

DAILY = {
    "name": "morning",
    "workflow": "echo",
    "cron": "0 7 * * *",
    "input": {"x": 2},
    "timezone": "Europe/Lisbon",
}


def _create(http: httpx.Client, **changes: Any) -> httpx.Response:
    return http.post("/v1/schedules", json={**DAILY, **changes})


def test_a_schedule_life_cycle(shared_server: LiveServer) -> None:
    with httpx.Client(base_url=shared_server.url, headers=auth("life")) as http:
        r = _create(http)
        assert r.status_code == 201, r.text
        assert r.headers["location"] == "/v1/schedules/morning"
        body = r.json()
        assert body["status"] == "active" and body["origin"] == "api"
        assert body["missed"] == "once" and body["max_missed"] == 10
        assert body["created_by"] == "life-user"
        upcoming = [parse_time(t) for t in body["upcoming"]]
        assert len(upcoming) == 5 and upcoming[0] == parse_time(body["next_run_at"])
        assert upcoming[0] > time.time()
        assert all(b - a in (82800, 86400, 90000) for a, b in itertools.pairwise(upcoming))
        assert _create(http).json()["type"] == problem_types.SCHEDULE_EXISTS.uri
        listed = http.get("/v1/schedules").json()
        assert [s["name"] for s in listed["items"]] == ["morning"]
        assert http.get("/v1/schedules/morning").json()["input"] == {"x": 2}

        paused = http.post("/v1/schedules/morning/pause").json()
        assert paused["status"] == "paused"
        assert paused["next_run_at"] is None and paused["upcoming"] == []
        resumed = http.post("/v1/schedules/morning/resume").json()
        assert resumed["status"] == "active" and resumed["next_run_at"] == body["next_run_at"]

        t = http.post("/v1/schedules/morning/trigger", headers={"Idempotency-Key": "k"})
        assert t.status_code == 202
        task = t.json()
        assert t.headers["location"] == f"/v1/tasks/{task['id']}"
        assert task["workflow"] == "echo" and task["input"] == {"x": 2}
        again = http.post("/v1/schedules/morning/trigger", headers={"Idempotency-Key": "k"})
        assert again.json()["id"] == task["id"]
        assert again.headers["idempotent-replayed"] == "true"

        assert http.delete("/v1/schedules/morning").status_code == 204
        gone = http.get("/v1/schedules/morning")
        assert gone.status_code == 404
        assert gone.json()["type"] == problem_types.SCHEDULE_NOT_FOUND.uri
        assert http.delete("/v1/schedules/morning").status_code == 404


@pytest.mark.parametrize(
    ("changes", "kind", "field"),
    [
        ({"cron": "61 * * * *"}, problem_types.INVALID_REQUEST, "cron"),
        ({"timezone": "Mars/Olympus"}, problem_types.INVALID_REQUEST, "timezone"),
        ({"missed": "sometimes"}, problem_types.INVALID_REQUEST, "missed"),
        ({"name": "no spaces"}, problem_types.INVALID_REQUEST, "name"),
        ({"workflow": "nope"}, problem_types.UNKNOWN_WORKFLOW, "workflow"),
        ({"input": {"x": "not a number"}}, problem_types.INVALID_INPUT, "input"),
    ],
)
def test_invalid_schedules_are_problems_and_store_nothing(
    shared_server: LiveServer, changes: dict[str, Any], kind: Any, field: str
) -> None:
    with httpx.Client(base_url=shared_server.url, headers=auth("invalid")) as http:
        r = _create(http, **changes)
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["type"] == kind.uri
        assert field in problem["errors"][0]["loc"]
        assert http.get("/v1/schedules").json()["items"] == []


def test_another_tenants_schedule_does_not_exist(shared_server: LiveServer) -> None:
    mine = httpx.Client(base_url=shared_server.url, headers=auth("tenant-a"))
    theirs = httpx.Client(base_url=shared_server.url, headers=auth("tenant-b"))
    with mine, theirs:
        assert _create(mine).status_code == 201
        for method, path in [
            ("GET", "/v1/schedules/morning"),
            ("POST", "/v1/schedules/morning/pause"),
            ("POST", "/v1/schedules/morning/resume"),
            ("POST", "/v1/schedules/morning/trigger"),
            ("DELETE", "/v1/schedules/morning"),
        ]:
            r = theirs.request(method, path)
            assert r.status_code == 404, (method, path)
            assert r.json()["type"] == problem_types.SCHEDULE_NOT_FOUND.uri
        assert theirs.get("/v1/schedules").json()["items"] == []
        # The same name in another tenant is another schedule.
        assert _create(theirs, input={"x": 9}).status_code == 201
        assert mine.get("/v1/schedules/morning").json()["input"] == {"x": 2}
        assert mine.get("/v1/schedules/morning").json()["status"] == "active"


@pytest.mark.parametrize(
    ("role", "read", "run", "manage"),
    [
        ("viewer", True, False, False),
        ("submitter", False, False, False),
        ("approver", False, False, False),
        ("operator", True, True, False),
        ("admin", True, True, True),
    ],
)
def test_the_role_matrix(
    shared_server: LiveServer, role: str, read: bool, run: bool, manage: bool
) -> None:
    tenant = f"roles-{role}"
    with httpx.Client(base_url=shared_server.url, headers=auth(tenant)) as admin:
        assert _create(admin).status_code == 201
    with httpx.Client(base_url=shared_server.url, headers=auth(tenant, (role,))) as http:

        def allowed(r: httpx.Response) -> bool:
            assert r.status_code != 403 or r.json()["type"] == problem_types.FORBIDDEN.uri
            return r.status_code != 403

        assert allowed(http.get("/v1/schedules")) is read
        assert allowed(http.get("/v1/schedules/morning")) is read
        assert allowed(http.post("/v1/schedules/morning/pause")) is run
        assert allowed(http.post("/v1/schedules/morning/resume")) is run
        assert allowed(http.post("/v1/schedules/morning/trigger")) is run
        assert allowed(_create(http, name="other")) is manage
        assert allowed(http.delete("/v1/schedules/morning")) is manage


async def test_the_client(shared_server: LiveServer) -> None:
    async with Client(shared_server.url, token=token("client")) as client:
        made = await client.schedules.create(
            "nightly",
            "echo",
            "30 1 * * *",
            timezone="Europe/Lisbon",
            input={"x": 1},
            missed="all",
            max_missed=3,
        )
        assert made.missed == "all" and made.max_missed == 3 and made.next_at is not None
        page, cursor = await client.schedules.list_schedules(limit=1)
        assert [s.name for s in page] == ["nightly"] and cursor is None
        assert (await client.schedules.pause("nightly")).paused
        assert (await client.schedules.resume("nightly")).next_at == made.next_at
        task = await client.schedules.trigger("nightly")
        assert task.workflow == "echo" and scheduled_tick(task.idempotency_key) is None
        done = await client.wait(task.id)
        assert done.result == {"x": 1, "doubled": 2}
        with pytest.raises(ApiError) as info:
            await client.schedules.create("nightly", "echo", "* * * * *", input={"x": 1})
        assert info.value.status == 409
        await client.schedules.delete("nightly")
        with pytest.raises(NotFoundError):
            await client.schedules.get("nightly")


async def test_a_per_second_schedule_fires_on_time_and_stops_when_paused(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server()
    async with Client(server.url, token=token("tick")) as client:
        await client.schedules.create("tick", "echo", "* * * * * *", input={"x": 3})

        async def ticked() -> list[Any]:
            page, _ = await client.list_tasks(limit=100)
            return [t for t in page if t.created_by == "schedule:tick"]

        async def three() -> bool:
            return len(await ticked()) >= 3

        await wait_until(three, 15, "three ticks")
        paused = await client.schedules.pause("tick")
        assert paused.last_tick_at is not None
        stopped_at = time.time()
        tasks = await ticked()
        ticks = sorted(scheduled_tick(t.idempotency_key) or 0 for t in tasks)
        assert len(set(ticks)) == len(ticks), "one task per tick"
        assert all(b - a == 1 for a, b in itertools.pairwise(ticks)), ticks
        for t in tasks:  # each task was made within a second of its tick
            tick = scheduled_tick(t.idempotency_key)
            assert tick is not None and 0 <= t.created_at - tick < 1.0, (t.created_at, tick)
        # Two more seconds pass: a paused schedule starts nothing.
        await wait_until(lambda: time.time() > stopped_at + 2, 5, "two seconds")
        later = await ticked()
        assert max(scheduled_tick(t.idempotency_key) or 0 for t in later) <= stopped_at
