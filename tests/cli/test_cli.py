"""The `tether` command line, run as real subprocesses: every command, `--json` output,
and every bad-input case (non-zero exit, one line on stderr, no traceback)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tether
from apps.crashy import read_log
from apps.procs import WorkerProcess, cli_env, run_cli
from tether.cli import cli as main_cli
from tether.store.sqlite import MIGRATIONS

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class CLI:
    """Runs `tether` in a working directory with an app and a database configured."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.db_url = f"sqlite:///{cwd / 'cli.db'}"
        self.env = cli_env(TETHER_APP="apps.crashy:app", TETHER_DATABASE_URL=self.db_url)

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env={**self.env, **env}, cwd=self.cwd)

    def local(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run the same command in this process (no Python start-up to pay)."""
        result = CliRunner().invoke(
            main_cli, list(args), env={**self.env, **env}, catch_exceptions=False
        )
        return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)

    def ok(self, *args: str, local: bool = False) -> str:
        out = self.local(*args) if local else self(*args)
        assert out.returncode == 0, f"tether {' '.join(args)}: {out.stderr}"
        return out.stdout

    def json(self, *args: str, local: bool = False) -> object:
        return json.loads(self.ok(*args, "--json", local=local))

    def submit(self, workflow: str, value: object = None, *extra: str) -> str:
        task = self.json("submit", workflow, "--input", json.dumps(value), *extra)
        assert isinstance(task, dict)
        return str(task["id"])


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path)


@pytest.fixture
def worker(cli: CLI) -> Iterator[WorkerProcess]:
    w = WorkerProcess(cli.db_url, "cli-worker", cli.cwd, "--concurrency", "4")
    yield w
    w.close()


def assert_one_line_error(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert out.returncode != 0, out.stdout
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


# submit, status, list -------------------------------------------------------------------


def test_submit_status_list_json(cli: CLI) -> None:
    created = cli.json(
        "submit", "greet", "--input", '{"name": "ada", "times": 2}', "--idempotency-key", "k1"
    )
    assert isinstance(created, dict)
    assert created["created"] is True
    assert created["status"] == "queued"
    assert created["workflow"] == "greet"
    assert created["tenant"] == "default"
    assert created["input"] == {"name": "ada", "times": 2}
    assert created["idempotency_key"] == "k1"
    assert ISO_UTC.match(created["created_at"]), created["created_at"]
    assert created["finished_at"] is None

    again = cli.json(
        "submit", "greet", "--input", '{"times": 2, "name": "ada"}', "--idempotency-key", "k1"
    )
    assert isinstance(again, dict)
    assert again["id"] == created["id"] and again["created"] is False

    status = cli.json("status", created["id"])
    assert isinstance(status, dict)
    assert status["id"] == created["id"] and status["status"] == "queued"
    assert ISO_UTC.match(status["updated_at"])

    other = cli.json("submit", "wait_signal", "--input", '{"name": "go"}', local=True)["id"]  # type: ignore[index]
    listed = cli.json("list")
    assert isinstance(listed, list)
    assert [t["id"] for t in listed] == [other, created["id"]]  # newest first
    only = cli.json("list", "--workflow", "greet", local=True)
    assert isinstance(only, list) and [t["id"] for t in only] == [created["id"]]
    assert cli.json("list", "--status", "succeeded", local=True) == []
    assert len(cli.json("list", "--limit", "1", local=True)) == 1  # type: ignore[arg-type]

    human = cli.ok("list", local=True)
    assert created["id"][-12:] in human and other[-12:] in human and "greet" in human
    human = cli.ok("status", created["id"], local=True)
    assert created["id"] in human and "queued" in human


def test_version_and_help_without_type_noise(cli: CLI) -> None:
    assert cli.ok("--version").strip() == f"tether {tether.__version__}"
    for command in ([], ["status"], ["approve"], ["rerun"], ["server"], ["token", "create"]):
        out = cli.local(*command, "--help")
        assert out.returncode == 0 and "--help" in out.stdout, out.stderr
        assert "<bool>" not in out.stdout, out.stdout  # a flag takes no value
    assert "Global options" in cli.local("list", "--help").stdout
    refused = cli("--server", "http://127.0.0.1:9", "apikey", "create", "-r", "viewer")
    assert_one_line_error(refused, "--server", "works on the database itself")


def test_tenant_scopes_what_the_cli_sees(cli: CLI) -> None:
    task = cli.json("submit", "greet", "--input", '{"name": "x"}', "--tenant", "acme", local=True)
    task_id = task["id"]  # type: ignore[index]
    assert cli.json("list", local=True) == []
    listed = cli.json("list", "--tenant", "acme", local=True)
    assert isinstance(listed, list) and [t["id"] for t in listed] == [task_id]
    assert cli.local("status", task_id).returncode != 0  # another tenant's: not found
    shown = cli.json("--tenant", "acme", "status", task_id, local=True)
    assert shown["tenant"] == "acme"  # type: ignore[index]


def test_global_options_before_or_after_the_command(cli: CLI, tmp_path: Path) -> None:
    env = cli_env()  # no TETHER_APP / TETHER_DATABASE_URL: flags only
    before = run_cli(
        "--app",
        "apps.crashy:app",
        "--database-url",
        cli.db_url,
        "submit",
        "greet",
        "--input",
        '{"name": "a"}',
        "--json",
        env=env,
        cwd=tmp_path,
    )
    assert before.returncode == 0, before.stderr
    after = run_cli(
        "list",
        "--json",
        "--database-url",
        cli.db_url,
        "--app",
        "apps.crashy:app",
        env=env,
        cwd=tmp_path,
    )
    assert after.returncode == 0, after.stderr
    assert [t["id"] for t in json.loads(after.stdout)] == [json.loads(before.stdout)["id"]]


# worker, watch, cancel, signal ----------------------------------------------------------


def test_worker_runs_tasks_and_watch_follows_them(cli: CLI, worker: WorkerProcess) -> None:
    task_id = cli.submit("greet", {"name": "ada", "times": 2})
    watched = cli("watch", task_id)
    assert watched.returncode == 0, watched.stderr
    assert "step #1 say" in watched.stdout
    assert "succeeded" in watched.stdout
    assert "cli-worker" in watched.stdout
    status = cli.json("status", task_id)
    assert isinstance(status, dict)
    assert status["status"] == "succeeded"
    assert status["result"] == "hello ada hello ada"
    assert ISO_UTC.match(status["finished_at"])

    failing = cli.submit("boom")
    watched = cli("watch", failing)
    assert watched.returncode == 1
    assert "failed" in watched.stdout and "kaboom" in watched.stdout


def test_signal_wakes_a_waiting_task(cli: CLI, worker: WorkerProcess) -> None:
    task_id = cli.submit("wait_signal", {"name": "go"})
    cli.ok("signal", task_id, "go", "--data", '{"x": 1}')
    assert cli("watch", task_id).returncode == 0
    assert cli.json("status", task_id)["result"] == {"x": 1}  # type: ignore[index]


def test_rerun_a_failed_task(cli: CLI, worker: WorkerProcess) -> None:
    failing = cli.submit("boom")
    assert cli("watch", failing).returncode == 1
    out = cli("rerun", failing[-12:], "--json", USER="dave")  # a short id
    assert out.returncode == 0, out.stderr
    fork = json.loads(out.stdout)
    assert (fork["forked_from"], fork["fork_root"], fork["created_by"]) == (
        failing,
        failing,
        "dave",
    )
    assert cli("watch", fork["id"]).returncode == 1  # it fails again: still broken
    again = cli.json("rerun", fork["id"], "--from-step", "1")
    assert isinstance(again, dict)
    assert (again["fork_from_seq"], again["fork_root"], again["steps_done"]) == (1, failing, 0)
    assert "re-running" in cli.ok("rerun", failing)
    assert_one_line_error(cli("rerun", cli.submit("wait_signal", {"name": "never"})), "ended")


def test_cancel_and_watch_a_cancelled_task(cli: CLI) -> None:
    task_id = cli.submit("wait_signal", {"name": "never"})
    out = cli.ok("cancel", task_id)
    assert "cancelled" in out
    watched = cli("watch", task_id)
    assert watched.returncode == 3
    assert "cancelled" in watched.stdout
    again = cli("cancel", task_id)
    assert_one_line_error(again)


def test_a_saga_compensates_and_an_operator_compensates_again(
    cli: CLI, worker: WorkerProcess, tmp_path: Path
) -> None:
    log = str(tmp_path / "saga.jsonl")
    failing = cli.submit("saga", {"log": log})
    assert cli("watch", failing).returncode == 1
    status = cli.ok("status", failing)
    assert "compensation" in status and "book-3, book-2, book-1" in status
    out = cli("compensate", failing[-12:], "--json", USER="dave")  # a short id
    assert out.returncode == 0, out.stderr
    fork = json.loads(out.stdout)
    assert (fork["forked_from"], fork["phase"], fork["created_by"]) == (
        failing,
        "compensation",
        "dave",
    )
    assert cli("watch", fork["id"]).returncode == 0, "the compensation fork succeeds"
    undone = [e["undoes"] for e in read_log(log) if e.get("undoes") and e["event"] == "end"]
    assert undone == [3, 2, 1], "the fork found everything undone already"
    assert "compensating" in cli.ok("compensate", failing)
    waiting = cli.submit("wait_signal", {"name": "never"})
    assert_one_line_error(cli("compensate", waiting), "only failed or cancelled")
    assert "undoes its completed steps" in cli.ok("cancel", waiting, "--compensate")
    assert cli("watch", waiting).returncode == 3


def test_worker_without_an_app_is_refused(cli: CLI) -> None:
    out = run_cli("worker", env=cli_env(), cwd=cli.cwd)
    assert_one_line_error(out, "no app given", "--app")


# migrate and schema ---------------------------------------------------------------------


def test_migrate_then_up_to_date(cli: CLI) -> None:
    first = cli.ok("migrate", local=True)
    assert "migrated" in first
    latest = MIGRATIONS[-1][0]
    assert f"→ {latest}" in first
    assert "already up to date" in cli.ok("migrate", local=True)


def test_out_of_date_schema_says_run_migrate(cli: CLI) -> None:
    if len(MIGRATIONS) < 2:
        pytest.skip("needs two schema versions")
    # A database left at the previous schema version by an older Tether.
    conn = sqlite3.connect(cli.cwd / "cli.db")
    conn.execute("CREATE TABLE tether_schema (version INTEGER PRIMARY KEY, applied_at REAL)")
    for version, script in MIGRATIONS[:-1]:
        conn.executescript(script)
        conn.execute("INSERT INTO tether_schema VALUES (?, 0)", (version,))
    conn.commit()
    conn.close()
    for args in (["list"], ["submit", "greet", "--input", '{"name": "a"}']):
        assert_one_line_error(cli.local(*args), "tether migrate")
    out = cli.ok("migrate", local=True)
    assert f"applied: {MIGRATIONS[-1][0]}" in out
    assert cli.json("list", local=True) == []


# bad input ------------------------------------------------------------------------------

BAD_INPUT = [
    (["submit", "nope", "--input", "{}"], {}, ["unknown workflow 'nope'", "greet"]),
    (["submit", "greet", "--input", "{not json"], {}, ["--input is not valid JSON"]),
    (["submit", "greet", "--input", '{"name": 5}'], {}, ["invalid input", "name"]),
    (["submit", "greet", "--input", '{"nom": "a"}'], {}, ["invalid input", "greet"]),
    (["status", "01890000-0000-7000-8000-000000000000"], {}, ["task not found"]),
    (["watch", "nope"], {}, ["task not found"]),
    (["cancel", "nope"], {}, ["task not found"]),
    (["signal", "nope", "go"], {}, ["not found"]),
    (["signal", "nope", "go", "--data", "{oops"], {}, ["--data is not valid JSON"]),
    (["list", "--status", "bogus"], {}, ["unknown status 'bogus'"]),
    (["list"], {"TETHER_APP": "apps.missing:app"}, ["no module named 'apps.missing'"]),
    (["list"], {"TETHER_APP": "apps.crashy:nothing"}, ["has no attribute 'nothing'"]),
    (["list"], {"TETHER_APP": "apps.crashy:not_an_app"}, ["not a Tether app"]),
    (["list"], {"TETHER_APP": "apps.crashy"}, ["expected pkg.module:attr"]),
    (["list"], {"TETHER_CONCURRENCY": "lots"}, ["invalid configuration", "concurrency"]),
    (["list"], {"TETHER_DATABASE_URL": "mysql://x"}, ["unsupported database URL"]),
]


@pytest.mark.parametrize(("args", "env", "needles"), BAD_INPUT, ids=lambda v: str(v)[:40])
def test_bad_input_is_one_clear_line(
    cli: CLI, args: list[str], env: dict[str, str], needles: list[str]
) -> None:
    """Every case, in process (the same code as the console script, without paying a
    Python start-up per case); `test_bad_input_in_a_real_process` covers the process."""
    assert_one_line_error(cli.local(*args, **env), *needles)


def test_bad_input_in_a_real_process(cli: CLI) -> None:
    for args, env, needles in (BAD_INPUT[0], BAD_INPUT[2], BAD_INPUT[4], BAD_INPUT[10]):
        assert_one_line_error(cli(*args, **env), *needles)
    assert cli.json("list") == []  # nothing was written by the bad submissions


def test_corrupt_config_file_is_one_clear_line(cli: CLI) -> None:
    (cli.cwd / "tether.toml").write_text("database_url = [unclosed\n")
    env = {k: v for k, v in cli.env.items() if k != "TETHER_DATABASE_URL"}
    out = run_cli("list", env=env, cwd=cli.cwd)
    assert_one_line_error(out, "config file", "tether.toml")


# entry points -----------------------------------------------------------------------------


def test_console_script_and_help() -> None:
    script = Path(sys.executable).parent / "tether"
    assert script.exists(), "the `tether` console script is not installed in this venv"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for command in (
        "worker",
        "submit",
        "status",
        "list",
        "watch",
        "cancel",
        "signal",
        "migrate",
        "demo",
    ):
        assert command in out.stdout


def test_demo_proves_durability(tmp_path: Path) -> None:
    out = run_cli(
        "demo",
        "--dir",
        str(tmp_path / "demo"),
        env=cli_env(TETHER_DEMO_SPEED="0.5"),
        cwd=tmp_path,
        timeout=90,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SIGKILL worker-1" in out.stdout
    assert "durability proved" in out.stdout
    assert (tmp_path / "demo" / "report.md").exists()
