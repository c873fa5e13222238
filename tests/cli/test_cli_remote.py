"""The CLI driving a server: `tether --server URL` with a real token or API key, run as
subprocesses against a real uvicorn server (on a random port, on both backends). Every
task and approval command goes through the HTTP API and its auth; nothing opens the
database (the CLI is given none)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.live import SECRET, LiveServer, make_settings
from apps.procs import cli_env, run_cli
from tether import Client, Context, Tether
from tether.auth import create_token
from tether.engine.approvals import Requirement, RiskPolicy

FLAKY = {"broken": True}
"""Whether the `flaky` workflow's step fails (the server runs in this process)."""


def build(database_url: str, settings: Any) -> Tether:
    app = Tether(database_url, settings=settings)
    app.policies.set(RiskPolicy(levels={"high": Requirement.ONE}))

    @app.workflow("echo")
    async def echo(ctx: Context, x: int) -> int:
        return await ctx.step("double", lambda: 2 * x)

    @app.workflow("gate")
    async def gate(ctx: Context) -> Any:
        await ctx.step("before", lambda: "before")
        return await ctx.wait_for_signal("go")

    def charge() -> str:
        if FLAKY["broken"]:
            raise PermissionError("the payment API refused the token")
        return "charged"

    @app.workflow("flaky")
    async def flaky(ctx: Context) -> list[str]:
        return [await ctx.step("quote", lambda: "quoted"), await ctx.step("charge", charge)]

    @app.workflow("refund")
    async def refund(ctx: Context, amount: int) -> dict[str, Any]:
        d = await ctx.approval(summary=f"Refund {amount} EUR", risk="high")
        return {"status": d.status, "reviewers": d.reviewers, "changes": d.changes}

    return app


@pytest.fixture
async def server(store_url: str) -> AsyncIterator[LiveServer]:
    settings = make_settings(store_url)
    srv = LiveServer(settings, workers=True)
    srv.app = build(store_url, settings)
    FLAKY["broken"] = True
    await asyncio.to_thread(srv.start)
    yield srv
    await asyncio.to_thread(srv.stop)


@pytest.fixture
def cli_dir(tmp_path: Path) -> Iterator[Path]:
    """The CLI's working directory: still empty at the end (no database was opened)."""
    folder = tmp_path / "cli"
    folder.mkdir()
    yield folder
    assert not list(folder.iterdir()), "a command opened a local database"


def token(subject: str, *roles: str, tenant: str = "t1") -> str:
    return create_token(SECRET, tenant, list(roles), subject)


class Remote:
    """Runs `tether` against the server, as one credential, with no database set up."""

    def __init__(self, server: LiveServer, cwd: Path, credential: list[str]) -> None:
        self.args = ["--server", server.url, *credential]
        self.cwd = cwd

    async def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_cli, *self.args, *args, env=cli_env(**env), cwd=self.cwd)

    async def ok(self, *args: str) -> str:
        out = await self(*args)
        assert out.returncode == 0, f"tether {' '.join(args)}: {out.stderr}"
        assert "Traceback" not in out.stderr
        return out.stdout

    async def json(self, *args: str) -> Any:
        return json.loads(await self.ok(*args, "--json"))


def one_line_error(out: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, line


async def test_every_task_command_goes_through_the_server(
    server: LiveServer, cli_dir: Path
) -> None:
    sam = Remote(server, cli_dir, ["--token", token("sam", "submitter")])
    ops = Remote(server, cli_dir, ["--token", token("olivia", "operator")])

    task = await sam.json("submit", "echo", "--input", '{"x": 21}', "--idempotency-key", "k1")
    assert (task["created"], task["created_by"], task["tenant"]) == (True, "sam", "t1")
    again = await sam.json("submit", "echo", "--input", '{"x": 21}', "--idempotency-key", "k1")
    assert (again["id"], again["created"]) == (task["id"], False)
    short = task["id"][-12:]
    watched = await sam("watch", short)  # a short id, followed over the event stream
    assert watched.returncode == 0, watched.stderr
    assert "step #1 double" in watched.stdout and "succeeded" in watched.stdout
    shown = await sam.json("status", short)
    assert (shown["id"], shown["result"], shown["approvals"]) == (task["id"], 42, None)
    assert short in await sam.ok("list")
    assert [t["id"] for t in await sam.json("list", "--workflow", "echo")] == [task["id"]]

    # signal and cancel
    gated = (await sam.json("submit", "gate"))["id"]
    await sam.ok("signal", gated[-12:], "go", "--data", '{"n": 1}')
    assert (await sam("watch", gated)).returncode == 0
    assert (await sam.json("status", gated))["result"] == {"n": 1}
    waiting = (await sam.json("submit", "gate"))["id"]
    assert (await ops.json("cancel", waiting))["status"] in ("cancelled", "running")

    # re-run: the failed step only, then from a step; an operator may, a submitter not
    failed = (await sam.json("submit", "flaky"))["id"]
    assert (await sam("watch", failed)).returncode == 1
    one_line_error(await sam("rerun", failed), 1, "tasks:rerun", "HTTP 403")
    FLAKY["broken"] = False
    fork = await ops.json("rerun", failed[-12:])
    assert (fork["forked_from"], fork["fork_root"], fork["steps_done"]) == (failed, failed, 1)
    assert fork["created_by"] == "olivia"
    assert (await sam("watch", fork["id"])).returncode == 0
    again_fork = await ops.json("rerun", fork["id"], "--from-step", "1")
    assert (again_fork["fork_from_seq"], again_fork["fork_root"]) == (1, failed)
    assert (await ops("rerun", gated, "--from-step", "0")).returncode == 2  # Typer's usage
    not_ended = (await sam.json("submit", "gate"))["id"]
    one_line_error(await ops("rerun", not_ended), 1, "only ended tasks", "HTTP 409")

    # the server's auth decides: another tenant sees nothing, a viewer cannot submit
    other = Remote(server, cli_dir, ["--token", token("olga", "admin", tenant="t2")])
    one_line_error(await other("status", task["id"]), 1, "task not found")
    assert await other.json("list") == []
    viewer = Remote(server, cli_dir, ["--token", token("vera", "viewer")])
    one_line_error(await viewer("submit", "echo", "--input", '{"x": 1}'), 1, "tasks:submit")
    one_line_error(await sam("submit", "echo", "--input", '{"x": "a"}'), 2, "input", "HTTP 422")
    one_line_error(await sam("submit", "nope"), 2, "unknown workflow", "HTTP 422")
    bad = Remote(server, cli_dir, ["--token", "not-a-jwt"])
    one_line_error(await bad("list"), 1, "HTTP 401")


async def test_credentials_from_the_environment_and_api_keys(
    server: LiveServer, store_url: str, tmp_path: Path, cli_dir: Path
) -> None:
    # an API key made by the local CLI on the server's database, used over HTTP
    made = await asyncio.to_thread(
        run_cli,
        *("apikey", "create", "--tenant", "t1", "-r", "submitter", "--json"),
        env=cli_env(TETHER_DATABASE_URL=store_url),
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    machine = Remote(server, cli_dir, ["--api-key", key["key"]])
    task = await machine.json("submit", "echo", "--input", '{"x": 2}')
    assert task["created_by"] == f"apikey:{key['id']}"
    assert (await machine("watch", task["id"])).returncode == 0

    # TETHER_SERVER and TETHER_TOKEN instead of flags
    env = {"TETHER_SERVER": server.url, "TETHER_TOKEN": token("sam", "viewer")}
    listed = await asyncio.to_thread(run_cli, "list", "--json", env=cli_env(**env), cwd=cli_dir)
    assert listed.returncode == 0, listed.stderr
    assert [t["id"] for t in json.loads(listed.stdout)] == [task["id"]]


async def test_approvals_through_the_server(server: LiveServer, cli_dir: Path) -> None:
    sam = Remote(server, cli_dir, ["--token", token("sam", "submitter", "approver")])
    ann = Remote(server, cli_dir, ["--token", token("ann", "approver")])
    task = (await sam.json("submit", "refund", "--input", '{"amount": 30}'))["id"]
    other = (await sam.json("submit", "refund", "--input", '{"amount": 40}'))["id"]
    async with Client(server.url, token=token("ann", "approver")) as client, asyncio.timeout(20):
        while True:
            if len(await client.approvals(status="pending")) == 2:
                break
            await asyncio.sleep(0.02)
    (approval,) = (await ann.json("status", task))["approvals"]
    assert (approval["status"], approval["summary"]) == ("pending", "Refund 30 EUR")
    inbox = await ann.ok("approvals")
    assert approval["id"][-12:] in inbox and task[-12:] in inbox
    assert {a["task_id"] for a in await ann.json("approvals")} == {task, other}
    status = await ann.ok("status", task)
    assert approval["id"][-12:] in status and "pending" in status

    # --as is not trusted over HTTP; the submitter may not decide; the subject decides
    one_line_error(await ann("approve", task, "-r", "ok", "--as", "bob"), 2, "--as", "subject")
    one_line_error(await sam("approve", task, "-r", "mine"), 1, "submitter", "HTTP 403")
    out = await ann.ok("approve", task[-12:], "-r", "checked", "--changes", '{"amount": 25}')
    assert "ann approved" in out, out  # by its task's short id: its one pending approval
    watched = await ann("watch", task)
    assert watched.returncode == 0, watched.stderr
    assert f"approval {approval['id'][-12:]} requested" in watched.stdout
    assert "ann approves" in watched.stdout
    assert (await ann.json("status", task))["result"] == {
        "status": "approved",
        "reviewers": ["ann"],
        "changes": {"amount": 25},
    }
    closed = await ann("reject", approval["id"], "-r", "too late")
    one_line_error(closed, 1, "already approved", "outcome that stands")
    decided = await ann.json("reject", other, "-r", "no")
    assert (decided["status"], decided["decisions"][0]["reviewer"]) == ("rejected", "ann")


async def test_server_mode_refuses_what_it_cannot_honour(cli_dir: Path) -> None:
    url = "http://127.0.0.1:9"  # nothing listens there

    async def tether(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_cli, *args, env=cli_env(), cwd=cli_dir)

    one_line_error(await tether("--server", url, "list"), 2, "needs a credential", "--token")
    creds = ("--server", url, "--token", "t")
    one_line_error(await tether(*creds, "list", "--tenant", "acme"), 2, "--tenant", "credential")
    one_line_error(
        await tether(*creds, "list", "--database-url", "sqlite:///x.db"), 2, "--database-url"
    )
    one_line_error(await tether(*creds, "list"), 1, "cannot reach the server")
    one_line_error(await tether("--server", "ftp://x", "list"), 2, "http:// or https://")
