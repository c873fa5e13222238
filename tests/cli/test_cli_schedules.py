"""`tether schedules ...` on the database and against a server (`--server`): the life
cycle (create, list, show with next runs, pause, resume, trigger, delete), bad
expressions as usage errors, and the same commands through the HTTP API and its auth."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_cli import CLI, assert_one_line_error

from api.live import SECRET, LiveServer, make_settings
from apps.procs import cli_env, run_cli
from tether.auth import create_token
from tether.models.times import parse_time


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path)


def test_a_schedules_life_cycle_on_the_database(cli: CLI) -> None:
    made = cli.json(
        "schedules",
        "create",
        "greeter",
        "-w",
        "greet",
        "--cron",
        "0 7 * * 1-5",
        "--tz",
        "Europe/Lisbon",
        "--input",
        '{"name": "ada"}',
        "--missed",
        "all",
        "--max-missed",
        "2",
        local=True,
    )
    assert isinstance(made, dict)
    assert made["status"] == "active" and made["missed"] == "all" and made["max_missed"] == 2
    assert len(made["upcoming"]) == 5 and made["upcoming"][0] == made["next_run_at"]
    assert parse_time(made["next_run_at"]) > 0
    listed = cli.json("schedules", "list", local=True)
    assert isinstance(listed, list) and [s["name"] for s in listed] == ["greeter"]
    table = cli.ok("schedules", "list", local=True)
    assert "greeter" in table and "0 7 * * 1-5" in table
    shown = cli.ok("schedules", "show", "greeter", local=True)
    assert "next runs" in shown and "Europe/Lisbon" in shown

    paused = cli.json("schedules", "pause", "greeter", local=True)
    assert isinstance(paused, dict) and paused["status"] == "paused"
    assert paused["next_run_at"] is None
    assert "paused" in cli.ok("schedules", "list", local=True)
    resumed = cli.json("schedules", "resume", "greeter", local=True)
    assert isinstance(resumed, dict) and resumed["next_run_at"] == made["next_run_at"]

    task = cli.json("schedules", "trigger", "greeter", "--idempotency-key", "k1", local=True)
    again = cli.json("schedules", "trigger", "greeter", "--idempotency-key", "k1", local=True)
    assert isinstance(task, dict) and isinstance(again, dict) and task["id"] == again["id"]
    assert task["workflow"] == "greet" and task["input"] == {"name": "ada"}

    assert "deleted" in cli.ok("schedules", "delete", "greeter", local=True)
    out = cli.local("schedules", "show", "greeter")
    assert out.returncode == 1
    assert_one_line_error(out, "no schedule 'greeter'")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--cron", "61 * * * *"], "is not a cron expression"),
        (["--cron", "* * * * *", "--tz", "Mars/Olympus"], "unknown time zone"),
        (["--cron", "* * * * *", "--input", '{"nom": 1}'], "greet"),
    ],
)
def test_bad_schedules_are_usage_errors(cli: CLI, args: list[str], needle: str) -> None:
    out = cli("schedules", "create", "bad", "-w", "greet", *args)  # a real subprocess
    assert out.returncode == 2, out.stderr
    assert_one_line_error(out, needle)
    assert cli.json("schedules", "list", local=True) == []


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    srv = LiveServer(make_settings(f"sqlite:///{tmp_path / 'server.db'}"), workers=False)
    await asyncio.to_thread(srv.start)
    yield srv
    await asyncio.to_thread(srv.stop)


async def test_the_commands_drive_a_server(server: LiveServer, tmp_path: Path) -> None:
    folder = tmp_path / "cli"
    folder.mkdir()
    admin = create_token(SECRET, "t1", ["admin"], "ops-admin")
    viewer = create_token(SECRET, "t1", ["viewer"], "ops-viewer")

    async def tether(credential: str, *args: str) -> Any:
        out = await asyncio.to_thread(
            run_cli,
            "--server",
            server.url,
            "--token",
            credential,
            *args,
            env=cli_env(),
            cwd=folder,
        )
        return out

    async def ok(*args: str, credential: str = admin) -> Any:
        out = await tether(credential, *args, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    made = await ok(
        "schedules", "create", "hourly", "-w", "echo", "--cron", "0 * * * *", "--input", '{"x": 4}'
    )
    assert made["created_by"] == "ops-admin" and made["input"] == {"x": 4}
    assert [s["name"] for s in await ok("schedules", "list", credential=viewer)] == ["hourly"]
    assert (await ok("schedules", "pause", "hourly"))["status"] == "paused"
    assert (await ok("schedules", "resume", "hourly"))["status"] == "active"
    task = await ok("schedules", "trigger", "hourly")
    assert task["workflow"] == "echo" and task["tenant"] == "t1"
    refused = await tether(viewer, "schedules", "pause", "hourly")
    assert refused.returncode == 1 and "schedules:run" in refused.stderr
    local_only = await tether(admin, "schedules", "list", "--tenant", "t2")
    assert local_only.returncode == 2 and "--tenant does not go with --server" in local_only.stderr
    out = await tether(admin, "schedules", "delete", "hourly")
    assert out.returncode == 0, out.stderr
    missing = await tether(admin, "schedules", "show", "hourly")
    assert missing.returncode == 1 and "schedule not found (HTTP 404)" in missing.stderr
    assert not list(folder.iterdir()), "a command opened a local database"
