"""`tether spend` and the spend in `tether status`, run as real subprocesses: on the
database (`--app`, `--database-url`) and driving a real server (`--server`, `--token`),
where the tenant is the credential's. A bad day is one line on stderr."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from api.live import LiveServer, make_settings, token
from apps.budgeted import app as budgeted_app
from apps.procs import cli_env, run_cli
from tether import Client, Tether


async def test_spend_and_status_show_the_ledger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    app = Tether(url)
    for wf in budgeted_app.workflows.definitions():
        app.workflows.add(wf)
    async with app.worker(concurrency=2):
        handle = await app.submit("spend", {"log": str(tmp_path / "log"), "seconds": 0})
        assert await handle.result(timeout=20) == 3
    await app.close()
    env = cli_env(TETHER_APP="apps.budgeted:app", TETHER_DATABASE_URL=url)

    status = await asyncio.to_thread(run_cli, "status", handle.id, "--json", env=env)
    assert status.returncode == 0, status.stderr
    spend = json.loads(status.stdout)["spend"]
    assert (spend["usd"], spend["tokens"], spend["reserved_usd"]) == (0.15, 0, 0.0)
    shown = await asyncio.to_thread(run_cli, "status", handle.id, env=env)
    assert "spend" in shown.stdout and "$0.15" in shown.stdout

    day = await asyncio.to_thread(run_cli, "spend", "--json", env=env)
    assert day.returncode == 0, day.stderr
    figures = json.loads(day.stdout)
    assert figures["tenant"] == "default"
    assert figures["total"]["usd"] == 0.15
    assert figures["workflows"]["spend"]["limit_usd"] == 1.0
    table = await asyncio.to_thread(run_cli, "spend", env=env)
    assert "$0.15 of $1" in table.stdout

    bad = await asyncio.to_thread(run_cli, "spend", "--day", "2026-02-31", env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "--day" in bad.stderr
    assert "Traceback" not in bad.stderr

    budget = '{"usd": 0.5, "on_exhausted": "fail"}'
    log = json.dumps({"log": str(tmp_path / "log")})
    made = await asyncio.to_thread(
        run_cli, "submit", "spend", "--input", log, "--spend-budget", budget, "--json", env=env
    )
    assert made.returncode == 0, made.stderr
    shown = json.loads(made.stdout)["spend_budget"]
    assert shown == {"usd": 0.5, "tokens": None, "on_exhausted": "fail"}
    for wrong in ('{"usd": -1}', '{"dollars": 1}', "{}", "not json"):
        refused = await asyncio.to_thread(
            run_cli, "submit", "spend", "--input", log, "--spend-budget", wrong, env=env
        )
        assert refused.returncode == 2, refused.stdout
        assert "--spend-budget" in refused.stderr and "Traceback" not in refused.stderr


async def test_spend_over_http_is_the_credentials_tenant(tmp_path: Path) -> None:
    server = LiveServer(make_settings(f"sqlite:///{tmp_path / 'api.db'}"))
    await asyncio.to_thread(server.start)
    try:
        async with Client(server.url, token=token("t1")) as client:
            task = await client.submit("metered", {"steps": 2})
            await client.wait(task.id, timeout=20)
        env = cli_env(TETHER_SERVER=server.url)
        for tenant, usd in (("t1", 0.08), ("t2", 0.0)):
            out = await asyncio.to_thread(
                run_cli, "spend", "--json", "--token", token(tenant), env=env
            )
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["total"]["usd"] == usd
    finally:
        await asyncio.to_thread(server.stop)
