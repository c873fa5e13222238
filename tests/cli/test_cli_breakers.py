"""`tether breaker ...` on the database (the tenant's own breaker or, `--every-tenant`,
the fleet-wide one) and against a server (`--server`, the credential's tenant)."""

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

BREAKERS = {"crm": {"failures": 3, "cool_down": 30}}


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    cli = CLI(tmp_path)
    del cli.env["TETHER_APP"]  # the breakers of the settings (an app brings its own)
    cli.env["TETHER_BREAKERS"] = json.dumps(BREAKERS)
    return cli


def test_breakers_by_hand_on_the_database(cli: CLI) -> None:
    (closed,) = cli.json("breaker", "list", local=True)  # type: ignore[misc]
    assert (closed["integration"], closed["state"], closed["fleet"]) == ("crm", "closed", None)
    assert closed["policy"]["failures"] == 3

    mine = cli.json("breaker", "open", "crm", "--reason", "CRM upgrade", local=True)
    assert isinstance(mine, dict) and mine["state"] == "open" and mine["fleet"] is None
    assert mine["tenant"]["manual"] and mine["tenant"]["reason"] == "opened by hand: CRM upgrade"
    other = cli.json("--tenant", "other", "breaker", "show", "crm", local=True)
    assert isinstance(other, dict) and other["state"] == "closed", "the hold is the tenant's"
    shown = cli.ok("breaker", "show", "crm", local=True)
    assert "open (by hand)" in shown and "this tenant" in shown
    assert cli.json("breaker", "close", "crm", local=True)["state"] == "closed"  # type: ignore[index]

    # the fleet-wide breaker: every tenant's steps; only this way can it be closed
    fleet = cli.json("breaker", "open", "crm", "--every-tenant", local=True)
    assert isinstance(fleet, dict) and fleet["fleet"]["state"] == "open"
    theirs = cli.json("--tenant", "other", "breaker", "show", "crm", local=True)
    assert isinstance(theirs, dict) and theirs["state"] == "open"
    assert_one_line_error(cli.local("breaker", "close", "crm"), "open for every tenant")
    cli.ok("breaker", "close", "crm", "--every-tenant", local=True)
    listed = cli.ok("breaker", "list", local=True)
    assert "crm" in listed and "closed" in listed

    assert_one_line_error(cli.local("breaker", "show", "nope"), "no circuit breaker", "crm")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    settings = make_settings(f"sqlite:///{tmp_path / 'server.db'}", breakers=BREAKERS)
    srv = LiveServer(settings, workers=False)
    await asyncio.to_thread(srv.start)
    yield srv
    await asyncio.to_thread(srv.stop)


async def test_the_commands_drive_a_server(server: LiveServer, tmp_path: Path) -> None:
    folder = tmp_path / "cli"
    folder.mkdir()
    operator = create_token(SECRET, "t1", ["operator"], "ops")
    viewer = create_token(SECRET, "t1", ["viewer"], "watcher")

    async def tether(credential: str, *args: str) -> Any:
        return await asyncio.to_thread(
            run_cli, "--server", server.url, "--token", credential, *args, env=cli_env(), cwd=folder
        )

    out = await tether(operator, "breaker", "open", "crm", "--reason", "upgrade", "--json")
    assert out.returncode == 0, out.stderr
    opened = json.loads(out.stdout)
    assert opened["tenant"]["updated_by"] == "ops" and opened["state"] == "open"
    listed = await tether(viewer, "breaker", "list")
    assert listed.returncode == 0 and "open (by hand)" in listed.stdout
    refused = await tether(viewer, "breaker", "close", "crm")
    assert refused.returncode == 1 and "breakers:operate" in refused.stderr
    fleet = await tether(operator, "breaker", "close", "crm", "--every-tenant")
    assert fleet.returncode == 2 and "on the database" in fleet.stderr
    missing = await tether(operator, "breaker", "show", "nope")
    assert missing.returncode == 1 and "no circuit breaker" in missing.stderr
    closed = await tether(operator, "breaker", "close", "crm", "--json")
    assert closed.returncode == 0 and json.loads(closed.stdout)["state"] == "closed"
    assert not list(folder.iterdir()), "a command opened a local database"
