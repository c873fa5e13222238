"""The dead-letter endpoints on a live server, on both backends: groups with counts
and trend, a group's tasks paged, retry in bulk from the failed step (finished steps
counted: not run again), escalate, dismiss, the audit trail, idempotent actions, the
role matrix, problems, `tether.Client.dlq`, and every action across tenants a 404."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api import workflows
from api.live import LiveServer, auth, make_settings, token
from tether import Client, TaskStatus
from tether.api import problem_types
from tether.client import NotFoundError

PROBLEM = "application/problem+json"


@pytest.fixture
async def server(store_url: str) -> AsyncIterator[LiveServer]:
    workflows.RUNS.clear()
    workflows.BROKEN.clear()
    workflows.BROKEN.update({"charge", "pack"})
    srv = LiveServer(make_settings(store_url), workers=True)
    await asyncio.to_thread(srv.start)
    yield srv
    await asyncio.to_thread(srv.stop)
    workflows.BROKEN.clear()


async def _failed(client: Client, n: int, **input: Any) -> list[str]:
    tasks = [await client.submit("pay", {"order": i, **input}) for i in range(n)]
    for t in tasks:
        assert (await client.wait(t.id, timeout=30)).status == TaskStatus.FAILED
    return [t.id for t in tasks]


async def test_groups_tasks_actions_and_the_trail(server: LiveServer) -> None:
    async with (
        Client(server.url, token=token()) as admin,
        Client(server.url, token=token("t2")) as other,
        httpx.AsyncClient(base_url=server.url, timeout=30, headers=auth()) as http,
    ):
        charges = await _failed(admin, 30)
        packs = await _failed(admin, 2, at="pack")
        theirs = await _failed(other, 3)
        assert workflows.RUNS == {"prepare": 35, "charge": 33, "pack": 2}

        r = await http.get("/v1/dlq", params={"limit": 1})
        assert r.status_code == 200, r.text
        first = r.json()
        (pack,) = first["items"]  # the latest failure first
        assert (pack["step"], pack["open"], pack["failures"]) == ("pack", 2, 2)
        page2 = (await http.get("/v1/dlq", params={"cursor": first["next_cursor"]})).json()
        (charge,) = page2["items"]
        assert page2["next_cursor"] is None
        fp = charge["fingerprint"]
        assert (charge["open"], charge["workflows"], charge["status"]) == (30, ["pay"], "open")
        assert charge["example_error"]["message"].startswith("card declined for order ")
        assert sum(charge["trend"]["hourly"]) == 30 and len(charge["trend"]["daily"]) == 7

        detail = (await http.get(f"/v1/dlq/{fp}", params={"limit": 10})).json()
        assert "card declined" in detail["group"]["example_traceback"]
        seen = [m["task_id"] for m in detail["tasks"]["items"]]
        cursor = detail["tasks"]["next_cursor"]
        while cursor is not None:
            page = (await http.get(f"/v1/dlq/{fp}/tasks", params={"cursor": cursor})).json()
            seen += [m["task_id"] for m in page["items"]]
            cursor = page["next_cursor"]
        assert sorted(seen) == sorted(charges)

        # Dismiss two (another tenant's task named is skipped), escalate, retry the rest.
        body = {"action": "dismiss", "reason": "test orders", "task_ids": [*charges[:2], theirs[0]]}
        r = await http.post(f"/v1/dlq/{fp}/actions", json=body, headers={"Idempotency-Key": "d1"})
        assert r.status_code == 201, r.text
        dismissed = r.json()
        assert sorted(dismissed["task_ids"]) == sorted(charges[:2])
        assert dismissed["skipped"] == [theirs[0]] and dismissed["actor"] == "t1-user"
        replay = await http.post(
            f"/v1/dlq/{fp}/actions", json=body, headers={"Idempotency-Key": "d1"}
        )
        assert replay.json()["id"] == dismissed["id"]
        assert replay.headers["idempotent-replayed"] == "true"
        escalated = await admin.dlq.escalate(fp, "ana@example.com", note="card processor?")
        assert escalated.assignee == "ana@example.com"

        workflows.BROKEN.discard("charge")
        retried = await admin.dlq.retry(fp, reason="processor fixed")
        assert sorted(retried.task_ids) == sorted(charges[2:]) and len(retried.created) == 28
        for new in retried.created:
            assert (await admin.wait(new, timeout=30)).status == TaskStatus.SUCCEEDED
        # The forks reused their `prepare` step: it ran for the 35 originals only.
        assert workflows.RUNS == {"prepare": 35, "charge": 33 + 28, "pack": 2}
        group, members, _ = await admin.dlq.group(fp)
        assert (group.open, group.status, group.assignee) == (0, "retried", "ana@example.com")
        states = {m.task_id: m.state for m in members}
        assert {states[t] for t in charges[:2]} == {"dismissed"}
        assert len(members) == 30 and sum(s == "retried" for s in states.values()) == 28
        trail, _ = await admin.dlq.actions(fp)
        assert [a.action for a in trail] == ["retry", "escalate", "dismiss"]
        assert [a.actor for a in trail] == ["t1-user"] * 3
        assert trail[0].reason == "processor fixed" and trail[1].reason == "card processor?"
        assert (await http.get("/v1/dlq")).json()["items"][0]["step"] == "pack"
        everything = (await http.get("/v1/dlq", params={"status": "all"})).json()["items"]
        assert {g["fingerprint"] for g in everything} == {fp, pack["fingerprint"]}

        # The other tenant's group of the same cause is untouched.
        (own,), _ = await other.dlq.groups()
        assert (own.fingerprint, own.open) == (fp, 3)

        # Compensate the `pack` group over HTTP: linked tasks that succeed (nothing in
        # `pay` declares a compensation, so they undo nothing), members `compensated`.
        r = await http.post(
            f"/v1/dlq/{pack['fingerprint']}/actions",
            json={"action": "compensate", "reason": "undo the packing"},
        )
        assert r.status_code == 201, r.text
        undo = r.json()
        assert sorted(undo["task_ids"]) == sorted(packs) and len(undo["created"]) == 2
        for new in undo["created"]:
            ended = await admin.wait(new, timeout=30)
            assert ended.status == TaskStatus.SUCCEEDED and ended.phase == "compensation"
            assert ended.result["compensated"] == []
        group, _, _ = await admin.dlq.group(pack["fingerprint"])
        assert (group.open, group.status) == (0, "compensated")


async def test_every_action_across_tenants_answers_404(server: LiveServer) -> None:
    async with (
        Client(server.url, token=token()) as mine,
        httpx.AsyncClient(base_url=server.url, timeout=30, headers=auth("t2")) as them,
    ):
        packs = await _failed(mine, 2, at="pack")
        (group,), _ = await mine.dlq.groups()
        fp = group.fingerprint
        for method, path, body in (
            ("GET", f"/v1/dlq/{fp}", None),
            ("GET", f"/v1/dlq/{fp}/tasks", None),
            ("GET", f"/v1/dlq/{fp}/actions", None),
            ("POST", f"/v1/dlq/{fp}/actions", {"action": "retry"}),
            ("POST", f"/v1/dlq/{fp}/actions", {"action": "retry", "task_ids": packs}),
            ("POST", f"/v1/dlq/{fp}/actions", {"action": "compensate"}),
            ("POST", f"/v1/dlq/{fp}/actions", {"action": "dismiss", "reason": "x"}),
            ("POST", f"/v1/dlq/{fp}/actions", {"action": "escalate", "assignee": "eve"}),
        ):
            r = await them.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
            assert r.headers["content-type"].startswith(PROBLEM)
            assert r.json()["type"] == problem_types.DLQ_GROUP_NOT_FOUND.uri
        assert (await them.get("/v1/dlq")).json()["items"] == []
        after, members, _ = await mine.dlq.group(fp)
        assert after.open == 2 and {m.state for m in members} == {"open"}
        assert (await mine.dlq.actions(fp))[0] == []
        async with Client(server.url, token=token("t2")) as client:
            with pytest.raises(NotFoundError):
                await client.dlq.retry(fp)


async def test_roles_and_problems(server: LiveServer) -> None:
    async with (
        Client(server.url, token=token()) as mine,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        await _failed(mine, 1, at="pack")
        (group,), _ = await mine.dlq.groups()
        path = f"/v1/dlq/{group.fingerprint}"
        for roles, read, act in (
            (("viewer",), 200, 403),
            (("submitter",), 403, 403),
            (("approver",), 403, 403),
            (("operator",), 200, 201),
        ):
            headers = auth(roles=roles)
            assert (await http.get("/v1/dlq", headers=headers)).status_code == read, roles
            assert (await http.get(path, headers=headers)).status_code == read, roles
            r = await http.post(
                f"{path}/actions", json={"action": "escalate", "assignee": "a"}, headers=headers
            )
            assert r.status_code == act, (roles, r.text)
        ops = auth(roles=("operator",))
        for body, field in (
            ({"action": "dismiss"}, "reason"),
            ({"action": "escalate"}, "assignee"),
            ({"action": "undo"}, "action"),
            ({"action": "retry", "task_ids": []}, "task_ids"),
        ):
            r = await http.post(f"{path}/actions", json=body, headers=ops)
            assert r.status_code == 422, (body, r.text)
            assert field in r.text
        r = await http.get("/v1/dlq", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=ops)
        assert r.json()["type"] == problem_types.INVALID_CURSOR.uri
        r = await http.get("/v1/dlq/0123456789abcdef", headers=ops)
        assert r.status_code == 404 and r.json()["type"] == problem_types.DLQ_GROUP_NOT_FOUND.uri
