"""`tether rollout ...` on the database (the tenant's or, `--every-tenant`, the
fleet-wide rollout) and against a server (`--server`, the credential's tenant)."""

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


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path)


def _version(cli: CLI, *extra: str) -> int:
    task = cli.json("submit", "triage", *extra, local=True)
    assert isinstance(task, dict)
    return int(task["workflow_version"])


def test_a_rollouts_life_cycle_on_the_database(cli: CLI) -> None:
    assert _version(cli) == 2
    view = cli.json("rollout", "canary", "triage", "2", "--share", "1", local=True)
    assert isinstance(view, dict)
    assert (view["scope"], view["stable"], view["canary"], view["share"]) == ("tenant", 1, 2, 1.0)
    assert _version(cli) == 2 and _version(cli, "--tenant", "other") == 2
    back = cli.json("rollout", "rollback", "triage", local=True)
    assert isinstance(back, dict) and back["canary"] is None
    assert _version(cli) == 1, "rolled back: pinned to the stable version"
    shown = cli.ok("rollout", "show", "triage", local=True)
    assert "tenant default" in shown and "v1" in shown and "failure rate" in shown

    # the fleet-wide rollout routes the tenants without one of their own
    cli.ok("rollout", "canary", "triage", "1", "--share", "1", "--every-tenant", local=True)
    assert _version(cli, "--tenant", "other") == 1
    assert "removed" in cli.ok("rollout", "clear", "triage", local=True)
    assert _version(cli) == 1, "now by the fleet-wide one"
    promoted = cli.json("rollout", "promote", "triage", "--every-tenant", local=True)
    assert isinstance(promoted, dict) and promoted["stable"] == 1
    assert "had no rollout" in cli.ok("rollout", "clear", "triage", local=True)

    assert_one_line_error(cli.local("rollout", "canary", "triage", "3"), "no version 3")
    assert_one_line_error(cli.local("rollout", "promote", "triage"), "no canary to promote")
    assert_one_line_error(cli.local("rollout", "show", "nope"), "unknown workflow")


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
        return await asyncio.to_thread(
            run_cli, "--server", server.url, "--token", credential, *args, env=cli_env(), cwd=folder
        )

    out = await tether(admin, "rollout", "canary", "triage", "2", "--share", "0.25", "--json")
    assert out.returncode == 0, out.stderr
    made = json.loads(out.stdout)
    assert (made["scope"], made["canary"], made["share"]) == ("tenant", 2, 0.25)
    shown = await tether(viewer, "rollout", "show", "triage")
    assert shown.returncode == 0 and "v2, 25.0% of new tasks" in shown.stdout
    refused = await tether(viewer, "rollout", "promote", "triage")
    assert refused.returncode == 1 and "workflows:manage" in refused.stderr
    fleet = await tether(admin, "rollout", "show", "triage", "--every-tenant")
    assert fleet.returncode == 2 and "on the database" in fleet.stderr
    assert (await tether(admin, "rollout", "promote", "triage")).returncode == 0
    cleared = await tether(admin, "rollout", "clear", "triage")
    assert cleared.returncode == 0 and "removed" in cleared.stdout
    assert not list(folder.iterdir()), "a command opened a local database"
