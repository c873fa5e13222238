"""The API's contract over a live server: every error names its kind (problem `type`),
every time is RFC 3339 UTC and reads back, lists page with cursors that cannot be
forged into something else, a 405 names every method of its path, the tenant feed
resumes with `after=`, and the OpenAPI document says what is served."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from api.live import LiveServer, auth, build_app, token
from helpers import wait_status
from tether import Client, TaskStatus
from tether.api import problem_types
from tether.api.problem_types import ProblemType
from tether.models.times import format_time, parse_time

PROBLEM = "application/problem+json"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
MISSING = "01900000-0000-7000-8000-000000000000"


def assert_problem(r: httpx.Response, kind: ProblemType) -> dict[str, Any]:
    assert r.headers["content-type"] == PROBLEM, r.text
    body = r.json()
    assert (r.status_code, body["type"], body["title"], body["status"]) == (
        kind.status,
        kind.uri,
        kind.title,
        kind.status,
    ), r.text
    return dict(body)


async def test_every_error_names_its_kind(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(max_body_bytes=4096, submit_rate=0.01, submit_burst=3)
    async with httpx.AsyncClient(base_url=server.url, headers=auth(), timeout=30) as http:
        kinds = problem_types
        assert_problem(await http.get("/v1/nothing-here"), kinds.NOT_FOUND)
        assert_problem(await http.get(f"/v1/tasks/{MISSING}"), kinds.TASK_NOT_FOUND)
        assert_problem(await http.get(f"/v1/approvals/{MISSING}"), kinds.APPROVAL_NOT_FOUND)
        r = await http.delete("/v1/tasks")
        assert_problem(r, kinds.METHOD_NOT_ALLOWED)
        assert r.headers["allow"] == "GET, POST"
        headers = {"content-type": "application/json"}
        r = await http.post("/v1/tasks", content=b'{"workflow": ', headers=headers)
        assert_problem(r, kinds.MALFORMED_REQUEST)
        r = await http.post("/v1/tasks", content=b"workflow=echo", headers={"content-type": "a/b"})
        assert_problem(r, kinds.UNSUPPORTED_MEDIA_TYPE)
        r = await http.post("/v1/tasks", json={"workflow": "echo", "input": "x" * 5000})
        assert_problem(r, kinds.BODY_TOO_LARGE)
        r = await http.get("/v1/tasks", headers={"Authorization": ""})
        assert_problem(r, kinds.UNAUTHENTICATED)
        r = await http.post("/v1/tasks", json={"workflow": "echo"}, headers=auth(roles=("viewer",)))
        assert_problem(r, kinds.FORBIDDEN)
        body = assert_problem(
            await http.get("/v1/tasks", params={"limit": 0}), kinds.INVALID_REQUEST
        )
        assert body["errors"][0]["loc"] == ["query", "limit"]
        r = await http.post("/v1/tasks", json={"workflow": "nope"})
        assert_problem(r, kinds.UNKNOWN_WORKFLOW)
        r = await http.post("/v1/tasks", json={"workflow": "echo", "input": {"x": "many"}})
        assert assert_problem(r, kinds.INVALID_INPUT)["errors"][0]["loc"] == ["body", "input", "x"]
        r = await http.get("/v1/tasks", params={"cursor": "not-a-cursor"})
        assert assert_problem(r, kinds.INVALID_CURSOR)["errors"][0]["loc"] == ["query", "cursor"]
        # three submissions fit the burst: a gate task, cancelled twice; a key reused
        gate = {"workflow": "gate", "input": {}}
        r = await http.post("/v1/tasks", json=gate, headers={"Idempotency-Key": "k"})
        assert r.status_code == 202, r.text
        task_id = r.json()["id"]
        assert (await http.post(f"/v1/tasks/{task_id}/cancel")).status_code == 202
        # A worker may have started it: then it ends cancelled at its next step boundary.
        deadline = asyncio.get_running_loop().time() + 10
        while (await http.get(f"/v1/tasks/{task_id}")).json()["status"] != "cancelled":
            assert asyncio.get_running_loop().time() < deadline, "the task was not cancelled"
            await asyncio.sleep(0.01)
        assert_problem(await http.post(f"/v1/tasks/{task_id}/cancel"), kinds.INVALID_TRANSITION)
        r = await http.post(
            "/v1/tasks",
            json={**gate, "priority": 5},
            headers={"Idempotency-Key": "k"},
        )
        assert_problem(r, kinds.IDEMPOTENCY_CONFLICT)
        for _ in range(3):
            r = await http.post("/v1/tasks", json={"workflow": "echo", "input": 1})
        assert_problem(r, kinds.RATE_LIMITED)
        assert int(r.headers["retry-after"]) >= 1


def test_405_allow_lists_every_method_of_the_path(server: LiveServer) -> None:
    expected = {
        "/v1/tasks": "GET, POST",
        f"/v1/tasks/{MISSING}": "GET",
        f"/v1/tasks/{MISSING}/cancel": "POST",
        f"/v1/tasks/{MISSING}/signals/go": "POST",
        "/v1/tasks:batch": "POST",
        "/v1/approvals": "GET",
        "/v1/events": "GET",
        "/healthz": "GET",
    }
    with httpx.Client(base_url=server.url, headers=auth()) as http:
        for path, allow in expected.items():
            for method in ("PUT", "PATCH", "DELETE", "OPTIONS"):
                r = http.request(method, path)
                assert r.status_code == 405, (method, path, r.text)
                assert r.headers["allow"] == allow, (method, path)
                assert r.json()["type"] == problem_types.METHOD_NOT_ALLOWED.uri


async def test_times_are_rfc3339_everywhere_and_read_back(server: LiveServer) -> None:
    direct = build_app(server.settings.database_url, server.settings)
    async with direct, httpx.AsyncClient(base_url=server.url, headers=auth()) as http:
        r = await http.post(
            "/v1/tasks",
            json={"workflow": "gate", "input": {}, "deadline": "2030-01-01T01:00:00+01:00"},
        )
        assert r.status_code == 202, r.text
        task_id = r.json()["id"]
        assert r.json()["deadline"] == "2030-01-01T00:00:00.000000Z"
        await wait_status(direct, task_id, TaskStatus.WAITING)
        r = await http.post(f"/v1/tasks/{task_id}/signals/go", json={"ok": True})
        assert RFC3339_UTC.match(r.json()["created_at"]), r.text
        await wait_status(direct, task_id, TaskStatus.SUCCEEDED)

        task = (await http.get(f"/v1/tasks/{task_id}")).json()
        record = await direct.get(task_id)
        for name in ("created_at", "updated_at", "started_at", "finished_at"):
            assert RFC3339_UTC.match(task[name]), (name, task[name])
            assert parse_time(task[name]) == pytest.approx(getattr(record, name), abs=1e-6)
        steps = (await http.get(f"/v1/tasks/{task_id}/steps")).json()["items"]
        stamps = [s[f] for s in steps for f in ("started_at", "finished_at") if s[f] is not None]
        assert stamps and all(RFC3339_UTC.match(t) for t in stamps), steps
        events = (await http.get(f"/v1/tasks/{task_id}/events")).json()["items"]
        assert all(RFC3339_UTC.match(e["at"]) for e in events)
        assert [e["at"] for e in events] == sorted(e["at"] for e in events)

        # The client reads them back to the records' epoch seconds.
        async with Client(server.url, token=token()) as client:
            seen = await client.get(task_id)
            for name in ("created_at", "updated_at", "started_at", "finished_at"):
                assert getattr(seen, name) == pytest.approx(getattr(record, name), abs=1e-6)
            assert seen.deadline == 1893456000.0
            stored = await direct.steps(task_id)
            for got, want in zip(await client.steps(task_id), stored, strict=True):
                assert got.started_at == pytest.approx(want.started_at, abs=1e-6)
            stored_events = await direct.store.list_events(task_id=task_id)
            got_events = [e async for e in client.events(task_id, follow=False)]
            assert [e.at for e in got_events] == pytest.approx([e.at for e in stored_events])


async def test_correlation_id_defaults_to_the_task_id(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=auth("corr")) as http:
        one = (await http.post("/v1/tasks", json={"workflow": "echo", "input": 1})).json()
        assert one["correlation_id"] == one["id"]
        batch = await http.post(
            "/v1/tasks:batch", json={"tasks": [{"workflow": "echo", "input": 1}] * 2}
        )
        assert all(t["correlation_id"] == t["id"] for t in batch.json()["items"]), batch.text
        found = await http.get("/v1/tasks", params={"correlation_id": one["id"]})
        assert [t["id"] for t in found.json()["items"]] == [one["id"]]


async def test_time_query_parameters(server: LiveServer) -> None:
    """RFC 3339 with any offset (epoch seconds still read); a time read from a response
    and sent back as a bound finds exactly its own task (ADR 65: the text rounds the
    float, the filters compare at the microsecond it names)."""
    async with httpx.AsyncClient(base_url=server.url, headers=auth("times")) as http:
        tasks = []
        for _ in range(8):
            r = await http.post("/v1/tasks", json={"workflow": "gate", "input": {}})
            tasks.append((r.json()["id"], r.json()["created_at"]))

        async def listed(**params: Any) -> list[str]:
            r = await http.get("/v1/tasks", params=params)
            assert r.status_code == 200, r.text
            return [t["id"] for t in r.json()["items"]]

        newest_first = [task_id for task_id, _ in reversed(tasks)]
        for i, (_, shown) in enumerate(tasks):
            assert await listed(created_after=shown) == newest_first[: len(tasks) - i]
            assert await listed(created_before=shown) == newest_first[len(tasks) - i :]
            offset = format_time(parse_time(shown) + 7200)[:-1] + "+02:00"  # the same time
            assert await listed(created_after=offset) == newest_first[: len(tasks) - i]
        first = parse_time(tasks[0][1])
        assert await listed(created_after=str(first - 1)) == newest_first  # epoch seconds
        assert await listed(created_after="2999-12-31T22:00:00-01:00") == []
        for bad in ("2024-06-10T06:13:20", "yesterday", "1969-01-01T00:00:00Z"):
            r = await http.get("/v1/tasks", params={"created_after": bad})
            body = assert_problem(r, problem_types.INVALID_REQUEST)
            assert body["errors"][0]["loc"] == ["query", "created_after"], body


async def test_task_pages_and_bad_cursors(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=auth("pages")) as http:
        ids = []
        for i in range(5):
            r = await http.post("/v1/tasks", json={"workflow": "gate", "input": {"label": str(i)}})
            ids.append(r.json()["id"])
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/v1/tasks", params=params)).json()
            seen += [t["id"] for t in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert cursor not in ids, "a cursor is opaque, not a task id"
        assert seen == sorted(ids, reverse=True)

        first = (await http.get("/v1/tasks", params={"limit": 1})).json()["next_cursor"]
        approvals_cursor = "WyJhcHByb3ZhbHMiLDEuMCwieCJd"  # ["approvals", 1.0, "x"]
        assert (await http.get("/v1/approvals", params={"cursor": approvals_cursor})).is_success
        for bad in (ids[2], first[:-3], first + "AA", "", "%%%", "é"):
            for path in ("/v1/tasks", "/v1/approvals"):
                r = await http.get(path, params={"cursor": bad})
                assert_problem(r, problem_types.INVALID_CURSOR)
        # one list's cursor is refused by the other
        r = await http.get("/v1/tasks", params={"cursor": approvals_cursor})
        assert_problem(r, problem_types.INVALID_CURSOR)
        r = await http.get("/v1/approvals", params={"cursor": first})
        assert_problem(r, problem_types.INVALID_CURSOR)


async def test_the_tenant_feed_resumes_after_the_last_event(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=auth("feed")) as http:
        first = (await http.post("/v1/tasks", json={"workflow": "echo", "input": 1})).json()["id"]

        async def feed(after: int, limit: int = 500) -> dict[str, Any]:
            r = await http.get("/v1/events", params={"after": after, "limit": limit})
            assert r.status_code == 200, r.text
            return dict(r.json())

        async def settled(task_id: str) -> list[dict[str, Any]]:
            for _ in range(200):
                items = (await feed(0))["items"]
                if any(e["task_id"] == task_id and e["type"] == "task.succeeded" for e in items):
                    return list(items)
                await asyncio.sleep(0.05)
            raise AssertionError("the task did not succeed")

        before = await settled(first)
        mark = (await feed(0))["next_after"]
        assert mark == before[-1]["id"]
        assert (await feed(mark)) == {"items": [], "next_after": mark}
        second = (await http.post("/v1/tasks", json={"workflow": "echo", "input": 2})).json()["id"]
        everything = await settled(second)
        later = await feed(mark)
        assert later["items"] == everything[len(before) :], "exactly the events after the mark"
        assert {e["task_id"] for e in later["items"]} == {second}
        assert later["next_after"] == later["items"][-1]["id"]
        # Paging with a small limit visits every event once, in id order.
        paged: list[dict[str, Any]] = []
        after = 0
        while page := (await feed(after, limit=3))["items"]:
            paged += page
            after = page[-1]["id"]
        assert paged == everything
        assert [e["id"] for e in paged] == sorted({e["id"] for e in paged})


def test_openapi_says_what_is_served(server: LiveServer) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    ref = {"$ref": "#/components/schemas/Problem"}
    unvalidated = []
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            answers = op["responses"]
            takes_input = bool(op.get("parameters") or op.get("requestBody"))
            if takes_input and "422" not in answers:
                unvalidated.append(f"{method} {path}")
            for status, answer in answers.items():
                if status.startswith(("4", "5")):
                    assert answer["content"] == {PROBLEM: {"schema": ref}}, (method, path, status)
    assert not unvalidated, unvalidated
    components = schema["components"]["schemas"]
    assert "HTTPValidationError" not in components and "ValidationError" not in components
    assert set(components["Problem"]["properties"]["type"]["enum"]) == {
        *(k.uri for k in problem_types.PROBLEM_TYPES),
        "about:blank",
    }
    created = components["TaskOut"]["properties"]["created_at"]
    assert (created["type"], created["format"]) == ("string", "date-time")
    params = {p["name"]: p for p in schema["paths"]["/v1/tasks"]["get"]["parameters"]}
    assert {"type": "string", "format": "date-time"}.items() <= params["created_after"]["schema"][
        "anyOf"
    ][0].items()
    assert "cursor" in {p["name"] for p in schema["paths"]["/v1/approvals"]["get"]["parameters"]}


def test_openapi_states_the_input_rules(server: LiveServer) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    components = schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            if path.startswith("/v1/"):  # the input rules and an outage apply everywhere
                assert {"422", "503"} <= set(op["responses"]), (method, path)
            for parameter in op.get("parameters", ()):
                # absent or a value: FastAPI's `anyOf: [T, null]` is not what is read
                assert {"type": "null"} not in parameter["schema"].get("anyOf", ()), parameter
    events = schema["paths"]["/v1/tasks/{task_id}/events"]["get"]["parameters"]
    resume = next(p for p in events if p["name"] == "Last-Event-ID")["schema"]
    assert (resume["type"], resume["maximum"]) == ("integer", 2**53 - 1)
    submission = components["TaskSubmission"]["properties"]
    assert submission["workflow"]["pattern"] == "^[^\\u0000]*$"
    assert submission["input"]["$ref"] == "#/components/schemas/JsonValue"
    integer = next(b for b in components["JsonValue"]["anyOf"] if b.get("type") == "integer")
    assert (integer["minimum"], integer["maximum"]) == (-(2**63), 2**64 - 1)
    decision = components["DecisionIn"]["properties"]
    assert decision["reason"]["pattern"] == "^[^\\u0000]*$"
    # Response models are not input: their strings carry no pattern.
    assert "pattern" not in components["TaskOut"]["properties"]["workflow"]
