"""`tether dlq ...` on the database and against a server (`--server`): list, show
(with the example's traceback), dismiss, escalate, retry, history, usage errors, the
role and tenant checks of the API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_cli import CLI, assert_one_line_error

from api import workflows
from api.live import SECRET, LiveServer, make_settings
from apps.procs import cli_env, run_cli
from tether import Client, Context, TaskStatus, Tether
from tether.auth import create_token
from tether.testing import TestEnvironment


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path)


async def _boom(url: str, n: int) -> list[str]:
    """`n` failed tasks of `boom` (as apps.crashy has it, the CLI's app) on the CLI's
    database."""
    app = Tether(url)

    @app.workflow("boom")
    async def boom(ctx: Context) -> None:
        def explode() -> None:
            raise ValueError("kaboom")

        await ctx.step("explode", explode)

    async with TestEnvironment(app, in_memory=False) as env:
        handles = await app.submit_many("boom", [None] * n)
        await env.run_until_idle(skip_time=False)
    return [h.id for h in handles]


def test_the_dlq_commands_on_the_database(cli: CLI) -> None:
    ids = asyncio.run(_boom(cli.db_url, 3))
    (group,) = cli.json("dlq", "list", local=True)  # type: ignore[misc]
    fp = group["fingerprint"]
    assert (group["open"], group["step"], group["error_type"]) == (3, "explode", "ValueError")
    assert fp in cli.ok("dlq", "list", local=True)
    shown = cli.ok("dlq", "show", fp, local=True)
    assert "kaboom" in shown and "raise ValueError" in shown and ids[0] in shown

    dismissed = cli.json("dlq", "dismiss", fp, "--reason", "test", "--task", ids[0], local=True)
    assert isinstance(dismissed, dict) and dismissed["task_ids"] == [ids[0]]
    escalated = cli.json("dlq", "escalate", fp, "--to", "ana", "--note", "look", local=True)
    assert isinstance(escalated, dict) and escalated["assignee"] == "ana"
    retried = cli.json("dlq", "retry", fp, local=True)
    assert isinstance(retried, dict)
    assert sorted(retried["task_ids"]) == sorted(ids[1:]) and len(retried["created"]) == 2
    trail = cli.json("dlq", "history", fp, local=True)
    assert isinstance(trail, list) and [a["action"] for a in trail] == [
        "retry",
        "escalate",
        "dismiss",
    ]
    assert {a["actor"] for a in trail} == {trail[0]["actor"]} and trail[2]["reason"] == "test"
    assert cli.json("dlq", "list", local=True) == []
    assert "retried" in cli.ok("dlq", "list", "--status", "all", local=True)

    out = cli.local("dlq", "show", "0123456789abcdef")
    assert out.returncode == 1
    assert_one_line_error(out, "no dead-letter group")
    out = cli("dlq", "dismiss", fp)  # a real subprocess: --reason is required
    assert out.returncode == 2 and "--reason" in out.stderr
    out = cli.local("dlq", "escalate", fp, "--to", " ")
    assert out.returncode == 2
    assert_one_line_error(out, "assignee")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    workflows.RUNS.clear()
    workflows.BROKEN.clear()
    workflows.BROKEN.add("charge")
    srv = LiveServer(make_settings(f"sqlite:///{tmp_path / 'server.db'}"), workers=True)
    await asyncio.to_thread(srv.start)
    yield srv
    await asyncio.to_thread(srv.stop)
    workflows.BROKEN.clear()


async def test_the_dlq_commands_drive_a_server(server: LiveServer, tmp_path: Path) -> None:
    folder = tmp_path / "cli"
    folder.mkdir()
    admin = create_token(SECRET, "t1", ["admin"], "ops-admin")
    viewer = create_token(SECRET, "t1", ["viewer"], "ops-viewer")
    stranger = create_token(SECRET, "t2", ["admin"], "t2-admin")
    async with Client(server.url, token=admin) as client:
        ids = [(await client.submit("pay", {"order": i})).id for i in range(4)]
        for task_id in ids:
            assert (await client.wait(task_id, timeout=30)).status == TaskStatus.FAILED

    async def tether(credential: str, *args: str) -> Any:
        return await asyncio.to_thread(
            run_cli, "--server", server.url, "--token", credential, *args, env=cli_env(), cwd=folder
        )

    async def ok(*args: str, credential: str = admin) -> Any:
        out = await tether(credential, *args, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    (group,) = await ok("dlq", "list", credential=viewer)
    fp = group["fingerprint"]
    shown = await ok("dlq", "show", fp, credential=viewer)
    assert sorted(t["task_id"] for t in shown["tasks"]) == sorted(ids)
    refused = await tether(viewer, "dlq", "retry", fp)
    assert refused.returncode == 1 and "dlq:act" in refused.stderr
    for args in (["show", fp], ["retry", fp], ["dismiss", fp, "--reason", "x"]):
        out = await tether(stranger, "dlq", *args)
        assert out.returncode == 1 and "(HTTP 404)" in out.stderr, out.stderr

    dismissed = await ok("dlq", "dismiss", fp, "--reason", "dup", "--task", ids[0])
    assert dismissed["task_ids"] == [ids[0]] and dismissed["actor"] == "ops-admin"
    workflows.BROKEN.clear()
    retried = await ok("dlq", "retry", fp, "--reason", "fixed")
    assert sorted(retried["task_ids"]) == sorted(ids[1:])
    async with Client(server.url, token=admin) as client:
        for new in retried["created"]:
            assert (await client.wait(new, timeout=30)).status == TaskStatus.SUCCEEDED
    assert workflows.RUNS["prepare"] == 4  # the retries reused it
    trail = await ok("dlq", "history", fp, credential=viewer)
    assert [a["action"] for a in trail] == ["retry", "dismiss"]
    assert not list(folder.iterdir()), "a command opened a local database"
