"""Every input refused cleanly, on every backend, over a real uvicorn server: a NUL
character anywhere (path, query, body, a token's claims), an integer beyond 64 bits, a
number JSON does not have (NaN, Infinity), nesting past 128. Each answers a 4xx
problem naming the field (PostgreSQL used to answer 500 for a NUL, and a big integer in
a signal or a decision's changes 500 on both), nothing is stored, and the Python API
refuses the same values with `NotStorable` before anything reaches the database."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from api.live import SECRET, LiveServer, auth, make_settings
from tether import Context, InputValidationError, NotStorable, Tether
from tether.api import problem_types
from tether.auth import create_token
from tether.engine.approvals import Requirement, RiskPolicy

PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}
BIG = b"123456789012345678901234567890"
ANN = {"Authorization": f"Bearer {create_token(SECRET, 't1', ['approver'], 'ann')}"}
"""An approver who did not submit the tasks (a submitter never decides its own)."""


def build(database_url: str, settings: Any) -> Tether:
    app = Tether(database_url, settings=settings)
    app.policies.set(RiskPolicy(levels={"high": Requirement.ONE}), tenant="t1")

    @app.workflow("anything")
    async def anything(ctx: Context, value: Any = None) -> Any:
        return value

    @app.workflow("gate")
    async def gate(ctx: Context) -> Any:
        return await ctx.wait_for_signal("go")

    @app.workflow("review")
    async def review(ctx: Context) -> Any:
        decision = await ctx.approval(summary="check it", risk="high")
        return decision.changes

    return app


@pytest.fixture
async def server(store_url: str) -> AsyncIterator[LiveServer]:
    settings = make_settings(store_url)
    srv = LiveServer(settings, workers=True)
    srv.app = build(store_url, settings)
    await asyncio.to_thread(srv.start)
    yield srv
    await asyncio.to_thread(srv.stop)


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, headers=auth(), timeout=30) as client:
        yield client


def refused(r: httpx.Response, loc: list[Any], kind: str) -> None:
    """A 422 `invalid-request` problem whose one field error is at `loc`."""
    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM), r.text
    body = r.json()
    assert body["type"] == problem_types.INVALID_REQUEST.uri, body
    assert [(e["loc"], e["type"]) for e in body["errors"]] == [(loc, kind)], body


async def _started(http: httpx.AsyncClient, workflow: str) -> str:
    r = await http.post("/v1/tasks", json={"workflow": workflow})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def _waiting(http: httpx.AsyncClient, task_id: str) -> None:
    deadline = time.monotonic() + 15
    while (await http.get(f"/v1/tasks/{task_id}")).json()["status"] != "waiting":
        assert time.monotonic() < deadline, "the task never waited"
        await asyncio.sleep(0.01)


async def _approval(http: httpx.AsyncClient, task_id: str) -> str:
    deadline = time.monotonic() + 15
    while True:
        items = (await http.get("/v1/approvals", params={"task_id": task_id})).json()["items"]
        if items:
            return str(items[0]["id"])
        assert time.monotonic() < deadline, "no approval was requested"
        await asyncio.sleep(0.01)


async def test_a_nul_anywhere_is_a_422_naming_the_field(http: httpx.AsyncClient) -> None:
    task_id = await _started(http, "gate")
    await _waiting(http, task_id)
    refused(await http.get("/v1/tasks/a%00b"), ["path", "task_id"], "string_nul")
    refused(await http.post("/v1/tasks/a%00b/cancel"), ["path", "task_id"], "string_nul")
    for name in ("correlation_id", "workflow", "cursor"):
        r = await http.get("/v1/tasks", params={name: "a\x00b"})
        refused(r, ["query", name], "string_nul")
    refused(
        await http.get("/v1/webhooks", params={"task_id": "\x00"}),
        ["query", "task_id"],
        "string_nul",
    )
    r = await http.post(f"/v1/tasks/{task_id}/signals/g%00o", json=1)
    refused(r, ["path", "name"], "string_nul")
    r = await http.post(
        "/v1/tasks",
        content=b'{"workflow": "anything", "correlation_id": "order\\u0000"}',
        headers=JSON,
    )
    refused(r, ["body", "correlation_id"], "string_nul")
    r = await http.post(
        "/v1/tasks", content=b'{"workflow": "anything", "input": {"k\\u0000": 1}}', headers=JSON
    )
    refused(r, ["body", "input", "k\\u0000"], "string_nul")
    r = await http.post(
        f"/v1/tasks/{task_id}/signals/go", content=b'{"note": "\\ud800"}', headers=JSON
    )
    refused(r, ["body", "note"], "string_surrogate")

    review = await _started(http, "review")
    approval_id = await _approval(http, review)
    r = await http.post(
        f"/v1/approvals/{approval_id}/decision",
        content=b'{"approve": true, "reason": "fine\\u0000"}',
        headers={**JSON, **ANN},
    )
    refused(r, ["body", "reason"], "string_nul")
    # a cursor whose JSON spells a NUL is not one this list handed out
    forged = "WyJ0YXNrcyIsIlx1MDAwMCJd"  # base64url of ["tasks","\u0000"]
    r = await http.get("/v1/tasks", params={"cursor": forged})
    assert r.json()["type"] == problem_types.INVALID_CURSOR.uri, r.text

    # nothing was stored, and the tasks that were are untouched
    listed = (await http.get("/v1/tasks")).json()["items"]
    assert sorted(t["workflow"] for t in listed) == ["gate", "review"]
    r = await http.post(
        f"/v1/approvals/{approval_id}/decision", json={"approve": True, "reason": "ok"}, headers=ANN
    )
    assert r.status_code == 200, r.text


async def test_numbers_beyond_json_or_64_bits_are_refused(http: httpx.AsyncClient) -> None:
    task_id = await _started(http, "gate")
    await _waiting(http, task_id)
    signal = f"/v1/tasks/{task_id}/signals/go"
    refused(
        await http.post(signal, content=b'{"n": ' + BIG + b"}", headers=JSON),
        ["body", "n"],
        "int_range",
    )
    refused(
        await http.post(signal, content=b"[NaN]", headers=JSON), ["body", 0], "number_not_finite"
    )
    refused(await http.post(signal, content=b"1e999", headers=JSON), ["body"], "number_not_finite")
    deep = b"[" * 200 + b"]" * 200  # no scan word in it: refused where it would be stored
    r = await http.post(signal, content=deep, headers=JSON)
    refused(r, ["body", *([0] * 128)], "too_deep")
    for body in (
        b'{"workflow": "anything", "input": ' + BIG + b"}",
        b'{"workflow": "anything", "input": -' + BIG + b"}",
        b'{"workflow": "anything", "input": {"x": Infinity}}',
        b'{"workflow": "anything", "input": [-Infinity]}',
        b'{"workflow": "anything", "priority": NaN}',
    ):
        r = await http.post("/v1/tasks", content=body, headers=JSON)
        assert (r.status_code, r.json()["errors"][0]["loc"][:2]) in (
            (422, ["body", "input"]),
            (422, ["body", "priority"]),
        ), r.text
    review = await _started(http, "review")
    approval_id = await _approval(http, review)
    decision = f"/v1/approvals/{approval_id}/decision"
    r = await http.post(
        decision,
        content=b'{"approve": true, "reason": "r", "changes": {"amount": ' + BIG + b"}}",
        headers={**JSON, **ANN},
    )
    refused(r, ["body", "changes", "amount"], "int_range")
    # 64 bits is still fine, and is what the workflow gets
    r = await http.post(signal, json={"n": 2**64 - 1, "m": -(2**63)})
    assert r.status_code == 202, r.text
    changes = {"approve": True, "reason": "r", "changes": {"a": 2**63}}
    r = await http.post(decision, json=changes, headers=ANN)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 15
    while (task := (await http.get(f"/v1/tasks/{task_id}")).json())["status"] != "succeeded":
        assert time.monotonic() < deadline, task
        await asyncio.sleep(0.01)
    assert task["result"] == {"n": 2**64 - 1, "m": -(2**63)}


async def test_the_contract_cases_schemathesis_found(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    task_id = await _started(http, "anything")
    events = f"/v1/tasks/{task_id}/events"
    # `Last-Event-ID` is an event id or absent; the document no longer offers `null`
    refused(
        await http.get(events, headers={"Last-Event-ID": "null"}),
        ["header", "Last-Event-ID"],
        "int_parsing",
    )
    assert (await http.get(events, headers={"Last-Event-ID": "0"})).status_code == 200
    schema = (await http.get("/openapi.json")).json()
    answer = schema["paths"]["/v1/tasks/{task_id}/cancel"]["post"]["responses"]["422"]
    assert list(answer["content"]) == [PROBLEM]


@pytest.mark.parametrize(
    ("claims", "claim"),
    [({"sub": "a\x00", "tenant": "t1"}, "sub"), ({"sub": "a", "tenant": "t1\x00"}, "tenant")],
)
async def test_a_token_claim_with_a_nul_is_a_401(
    server: LiveServer, claims: dict[str, str], claim: str
) -> None:
    token = jwt.encode(
        {**claims, "roles": ["admin"], "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for request in (
            client.build_request("GET", "/v1/tasks"),
            client.build_request("POST", "/v1/tasks", json={"workflow": "anything"}),
        ):
            request.headers["Authorization"] = f"Bearer {token}"
            r = await client.send(request)
            assert (r.status_code, r.headers["content-type"]) == (401, PROBLEM), r.text
            assert f"the token's {claim} claim contains a NUL" in r.json()["detail"]


async def test_the_python_api_refuses_the_same_values(server: LiveServer) -> None:
    app = build(server.settings.database_url, server.settings)
    try:
        with pytest.raises(InputValidationError) as bad_input:
            app.new_task("anything", {"x": [math.nan]})
        assert bad_input.value.errors[0]["loc"] == ("input", "x", 0)
        for field, options in (
            ("correlation_id", {"correlation_id": "a\x00"}),
            ("idempotency_key", {"idempotency_key": "k\x00"}),
            ("priority", {"priority": 2**40}),
            ("deadline", {"deadline": math.inf}),
        ):
            with pytest.raises(NotStorable) as caught:
                app.new_task("anything", 1, **options)
            assert caught.value.field == field
        handle = await app.submit("gate")
        with pytest.raises(NotStorable) as caught:
            await app.signal(handle.id, "go", {"n": 2**64})
        assert (caught.value.field, caught.value.loc) == ("payload", ("n",))
        with pytest.raises(NotStorable):
            await app.signal(handle.id, "g\x00", 1)
        with pytest.raises(NotStorable) as caught:
            await app.decide("any", reviewer="ann", approve=True, changes={"a": math.nan})
        assert (caught.value.field, caught.value.loc) == ("changes", ("a",))
        with pytest.raises(NotStorable):
            await app.decide("any", reviewer="ann\x00", approve=True)
    finally:
        await app.close()
