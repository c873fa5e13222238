"""The approval endpoints over HTTP: a real uvicorn server with embedded workers, on
every backend. Inbox, detail, decisions, roles, tenancy and the 409 bodies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

import tether.client
from api.live import SECRET, LiveServer, make_settings
from tether import ApprovalClosed, Client, Context, Tether
from tether.api import problem_types
from tether.auth import create_token
from tether.client import ApiError, ConflictError, NotFoundError
from tether.engine.approvals import Requirement, RiskPolicy

PROBLEM = "application/problem+json"


def who(subject: str, roles: tuple[str, ...], tenant: str = "t1") -> dict[str, str]:
    """Headers of a caller: a subject of a tenant with roles."""
    return {"Authorization": f"Bearer {create_token(SECRET, tenant, list(roles), subject)}"}


SAM = who("sam", ("submitter",))  # submits the tasks
ANN = who("ann", ("approver",))
BOB = who("bob", ("approver",))
VERA = who("vera", ("viewer",))
SAM_APPROVER = who("sam", ("approver",))  # the submitter, holding the approver role too
OTHER = who("olga", ("admin",), tenant="t2")


def build(database_url: str, settings: Any) -> Tether:
    app = Tether(database_url, settings=settings)
    app.policies.set(
        RiskPolicy(levels={"high": Requirement.ONE, "critical": Requirement.TWO}),
        tenant="t1",
    )

    @app.workflow("refund")
    async def refund(ctx: Context, amount: int) -> dict[str, Any]:
        draft = await ctx.step("draft", lambda: f"Refund of {amount} EUR approved.")
        d = await ctx.approval(
            summary=f"Refund {amount} EUR to customer 4411",
            risk="critical" if amount > 100 else "high",
            evidence=["ticket #4411", {"order": 77}],
            impact="money leaves the account",
            rollback="claw back within 14 days",
            timeout=float(amount) / 100 if amount < 100 else None,  # small ones expire fast
        )
        amount_paid = (d.changes or {}).get("amount", amount) if d.approved else 0
        return {
            "draft": draft,
            "status": d.status,
            "resolution": d.resolution,
            "reviewers": d.reviewers,
            "paid": amount_paid,
            "reason": d.reason,
        }

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
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def _submit(http: httpx.AsyncClient, amount: int) -> str:
    r = await http.post(
        "/v1/tasks", json={"workflow": "refund", "input": {"amount": amount}}, headers=SAM
    )
    assert r.status_code == 202, r.text
    assert r.json()["created_by"] == "sam"
    return str(r.json()["id"])


async def _poll(fetch: Callable[[], Any], ok: Callable[[Any], bool], what: str) -> Any:
    end = time.monotonic() + 15
    while True:
        value = await fetch()
        if ok(value):
            return value
        assert time.monotonic() < end, f"timed out waiting for {what}: {value}"
        await asyncio.sleep(0.02)


async def _approval_of(http: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    async def fetch() -> list[dict[str, Any]]:
        r = await http.get("/v1/approvals", params={"status": "pending"}, headers=VERA)
        assert r.status_code == 200, r.text
        return [a for a in r.json()["items"] if a["task_id"] == task_id]

    (found,) = await _poll(fetch, bool, f"the approval of {task_id}")
    return dict(found)


async def _result(http: httpx.AsyncClient, task_id: str) -> Any:
    async def fetch() -> dict[str, Any]:
        r = await http.get(f"/v1/tasks/{task_id}", headers=VERA)
        return dict(r.json())

    task = await _poll(fetch, lambda t: t["status"] in ("succeeded", "failed"), "the task")
    assert task["status"] == "succeeded", task
    return task["result"]


async def _decide(
    http: httpx.AsyncClient, approval_id: str, headers: dict[str, str], **body: Any
) -> httpx.Response:
    body.setdefault("reason", "looked at it")
    return await http.post(f"/v1/approvals/{approval_id}/decision", json=body, headers=headers)


async def test_inbox_detail_and_an_approval_with_changes(http: httpx.AsyncClient) -> None:
    task_id = await _submit(http, 150)  # critical: two approvers
    small = await _submit(http, 70)  # high: one approver, expires in 0.7 s
    listed = await _approval_of(http, task_id)
    assert listed["summary"] == "Refund 150 EUR to customer 4411"
    assert (listed["risk"], listed["required_approvers"], listed["submitter"]) == (
        "critical",
        2,
        "sam",
    )

    async def task() -> dict[str, Any]:
        return dict((await http.get(f"/v1/tasks/{task_id}", headers=VERA)).json())

    # The request is listed as soon as its step is stored; the task parks a moment later.
    await _poll(task, lambda t: t["status"] == "waiting", "the task to wait for its approval")
    r = await http.get(f"/v1/approvals/{listed['id']}", headers=VERA)
    assert r.status_code == 200, r.text
    detail = r.json()
    assert detail["evidence"] == ["ticket #4411", {"order": 77}]
    assert detail["impact"] == "money leaves the account"
    assert detail["rollback"] == "claw back within 14 days"
    assert detail["decisions"] == [] and detail["status"] == "pending"
    assert detail["task"]["id"] == task_id and detail["task"]["status"] == "waiting"
    assert [(s["name"], s["status"]) for s in detail["steps"]] == [
        ("draft", "succeeded"),
        ("approval", "pending"),
    ]
    assert detail["steps"][0]["result"] == "Refund of 150 EUR approved."

    r = await http.get("/v1/approvals", params={"risk": "critical"}, headers=ANN)
    assert [a["id"] for a in r.json()["items"]] == [listed["id"]]
    r = await http.get("/v1/approvals", params={"status": "maybe"}, headers=ANN)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM

    # two distinct approvers; the first leaves the task waiting
    r = await _decide(http, listed["id"], ANN, approve=True, changes={"amount": 120})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["approvals"]) == ("pending", 1)
    r = await _decide(http, listed["id"], ANN, approve=True)
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    assert r.json()["type"] == problem_types.ALREADY_DECIDED.uri
    assert "already decided" in r.json()["detail"]
    assert r.json()["approval"]["status"] == "pending"
    assert [d["reviewer"] for d in r.json()["approval"]["decisions"]] == ["ann"]
    r = await _decide(http, listed["id"], SAM_APPROVER, approve=True)
    assert r.status_code == 403 and "submitter" in r.json()["detail"]
    assert r.json()["type"] == problem_types.SELF_APPROVAL.uri
    r = await http.get(f"/v1/tasks/{task_id}", headers=VERA)
    assert (r.json()["status"], r.json()["wait_reason"]) == ("waiting", "approval")

    r = await _decide(http, listed["id"], BOB, approve=True, reason="matches the ticket")
    assert r.status_code == 200, r.text
    closed = r.json()
    assert (closed["status"], closed["resolution"]) == ("approved", "reviewer")
    assert closed["changes"] == {"amount": 120}
    assert [(d["reviewer"], d["approve"]) for d in closed["decisions"]] == [
        ("ann", True),
        ("bob", True),
    ]
    assert await _result(http, task_id) == {
        "draft": "Refund of 150 EUR approved.",
        "status": "approved",
        "resolution": "reviewer",
        "reviewers": ["ann", "bob"],
        "paid": 120,
        "reason": "matches the ticket",
    }

    # a decision on the closed approval: 409, with the outcome that stands
    r = await _decide(http, listed["id"], who("carl", ("admin",)), approve=False)
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    assert r.json()["type"] == problem_types.APPROVAL_CLOSED.uri
    assert r.json()["approval"]["status"] == "approved"
    assert r.json()["approval"]["resolution"] == "reviewer"

    # the small refund timed out meanwhile (0.7 s, on_timeout reject): too late
    assert (await _result(http, small))["resolution"] == "timeout"
    r = await http.get("/v1/approvals", params={"status": "rejected"}, headers=VERA)
    (expired,) = r.json()["items"]
    r = await _decide(http, expired["id"], ANN, approve=True)
    assert r.status_code == 409 and r.json()["type"] == problem_types.APPROVAL_CLOSED.uri
    assert (r.json()["approval"]["status"], r.json()["approval"]["resolution"]) == (
        "rejected",
        "timeout",
    )


async def test_a_rejection_reaches_the_workflow(http: httpx.AsyncClient) -> None:
    task_id = await _submit(http, 100)  # high, no timeout
    approval = await _approval_of(http, task_id)
    r = await _decide(http, approval["id"], ANN, approve=False, reason="wrong customer")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["reason"]) == ("rejected", "wrong customer")
    result = await _result(http, task_id)
    assert (result["status"], result["paid"], result["reason"]) == (
        "rejected",
        0,
        "wrong customer",
    )


async def test_roles_and_tenancy(http: httpx.AsyncClient) -> None:
    task_id = await _submit(http, 100)
    approval = await _approval_of(http, task_id)
    path = f"/v1/approvals/{approval['id']}"
    # another tenant sees nothing: 404, never 403
    assert (await http.get(path, headers=OTHER)).status_code == 404
    r = await _decide(http, approval["id"], OTHER, approve=True)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert r.json()["type"] == problem_types.APPROVAL_NOT_FOUND.uri
    r = await http.get("/v1/approvals", headers=OTHER)
    assert r.status_code == 200 and r.json()["items"] == []
    # a viewer reads but cannot decide; a submitter can neither read the inbox nor decide
    assert (await http.get(path, headers=VERA)).status_code == 200
    assert (await _decide(http, approval["id"], VERA, approve=True)).status_code == 403
    assert (await http.get("/v1/approvals", headers=SAM)).status_code == 403
    assert (await _decide(http, approval["id"], SAM, approve=True)).status_code == 403
    assert (await http.get("/v1/approvals")).status_code == 401
    # bad bodies
    r = await http.post(f"{path}/decision", json={"approve": True}, headers=ANN)
    assert r.status_code == 422  # a reason is required
    r = await http.post(
        f"{path}/decision", json={"approve": True, "reason": "x", "as": "y"}, headers=ANN
    )
    assert r.status_code == 422
    assert (await http.get("/v1/approvals/nope", headers=ANN)).status_code == 404
    # the approver decides; its subject is the reviewer, whatever the body says
    r = await _decide(http, approval["id"], ANN, approve=True)
    assert r.status_code == 200 and r.json()["decisions"][0]["reviewer"] == "ann"
    assert (await _result(http, task_id))["reviewers"] == ["ann"]


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def test_the_client_lists_reads_and_decides(
    http: httpx.AsyncClient, server: LiveServer
) -> None:
    """`tether.Client`'s approval methods, and the `task_id` and `short_id` filters."""
    task_id = await _submit(http, 150)  # critical: two approvers
    other_task = await _submit(http, 100)
    listed = await _approval_of(http, task_id)
    await _approval_of(http, other_task)
    async with (
        Client(server.url, token=_token(ANN)) as ann,
        Client(server.url, token=_token(BOB)) as bob,
        Client(server.url, token=_token(OTHER)) as olga,
    ):
        (mine,) = await ann.approvals(task_id=task_id)
        assert (mine.id, mine.task_id, mine.tenant, mine.seq) == (listed["id"], task_id, "t1", 2)
        assert mine.request["summary"] == "Refund 150 EUR to customer 4411"
        assert (mine.required, mine.submitter, mine.status) == (2, "sam", "pending")
        assert [a.id for a in await ann.approvals(short_id=mine.id[-12:])] == [mine.id]
        assert len(await ann.approvals(status="pending")) == 2
        assert await ann.approvals(status="approved") == []
        assert await olga.approvals(task_id=task_id) == []
        with pytest.raises(NotFoundError):
            await olga.approval(mine.id)
        got = await ann.approval(mine.id)
        assert got.request["evidence"] == ["ticket #4411", {"order": 77}]

        half = await ann.decide(mine.id, approve=True, reason="ok", changes={"amount": 90})
        assert half.status == "pending" and [d["reviewer"] for d in half.decisions] == ["ann"]
        assert isinstance(half.decisions[0]["at"], float)
        with pytest.raises(ConflictError, match="already decided"):
            await ann.decide(mine.id, approve=True, reason="again")
        done = await bob.decide(mine.id, approve=True, reason="fine")
        assert (done.status, done.resolution, done.changes) == (
            "approved",
            "reviewer",
            {"amount": 90},
        )
        with pytest.raises(ApprovalClosed) as closed:
            await bob.decide(mine.id, approve=False, reason="too late")
        assert closed.value.approval.status == "approved"
        assert closed.value.approval.decided_at is not None
    async with Client(server.url, token=_token(SAM_APPROVER)) as sam:
        (theirs,) = await sam.approvals(task_id=other_task)
        with pytest.raises(ApiError) as refused:
            await sam.decide(theirs.id, approve=True, reason="mine")
        assert refused.value.status == 403
    r = await http.get("/v1/approvals", params={"short_id": "abc"}, headers=ANN)
    assert r.status_code == 422, "a short id has at least 4 characters"


async def test_the_inbox_pages_with_a_cursor(http: httpx.AsyncClient) -> None:
    """Newest first, page by page, each approval once, on both backends; approvals made
    in the same instant are ordered by id, so none falls between two pages."""
    tasks = [await _submit(http, 100 + i) for i in range(5)]
    for task_id in tasks:
        await _approval_of(http, task_id)
    everything = (await http.get("/v1/approvals", headers=VERA)).json()
    assert everything["next_cursor"] is None and len(everything["items"]) == 5
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await http.get("/v1/approvals", params=params, headers=VERA)
        assert r.status_code == 200, r.text
        seen += r.json()["items"]
        pages += 1
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [a["id"] for a in seen] == [a["id"] for a in everything["items"]]
    assert [a["created_at"] for a in seen] == sorted((a["created_at"] for a in seen), reverse=True)
    # filters hold across pages; an approval id is not a cursor
    critical = {"risk": "critical"}  # amounts 101 to 104; 100 is high
    r = await http.get("/v1/approvals", params={**critical, "limit": 3}, headers=VERA)
    assert len(r.json()["items"]) == 3 and r.json()["next_cursor"] is not None
    r = await http.get(
        "/v1/approvals", params={**critical, "cursor": r.json()["next_cursor"]}, headers=VERA
    )
    assert len(r.json()["items"]) == 1 and r.json()["next_cursor"] is None
    r = await http.get("/v1/approvals", params={"cursor": seen[0]["id"]}, headers=VERA)
    assert r.status_code == 422 and r.json()["type"] == problem_types.INVALID_CURSOR.uri


async def test_the_client_follows_the_inbox_pages(
    server: LiveServer, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = [await _submit(http, 100 + i) for i in range(5)]
    for task_id in tasks:
        await _approval_of(http, task_id)
    monkeypatch.setattr(tether.client, "APPROVALS_PAGE", 2)  # five approvals: three pages
    async with Client(server.url, token=_token(VERA)) as vera:
        everything = await vera.approvals()
        assert sorted(a.task_id for a in everything) == sorted(tasks)
        assert [a.id for a in await vera.approvals(limit=3)] == [a.id for a in everything[:3]]
