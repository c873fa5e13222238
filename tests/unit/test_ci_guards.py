"""In CI the PostgreSQL half of the suite cannot vanish: `.ci/start-postgres.sh` fails
loudly when the server does not answer, and a PostgreSQL test that skips under CI=true
is reported as failed (tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "start-postgres.sh"
NOWHERE = "postgresql://postgres@127.0.0.1:9/postgres"  # the discard port: nothing listens


def _script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.skipif(shutil.which("pg_isready") is None, reason="needs pg_isready")
def test_start_postgres_fails_loudly_when_the_server_does_not_answer() -> None:
    env = {
        **os.environ,
        "TETHER_TEST_POSTGRES": NOWHERE,
        "TETHER_CI_PG_WAIT": "1",
        "TETHER_CI_PG_START": "no",  # never touch the machine's cluster from a test
    }
    done = _script(env)
    assert done.returncode == 1, done.stderr
    assert "127.0.0.1:9" in done.stderr and "no answer after 1s" in done.stderr
    assert "never skips" in done.stderr


def test_start_postgres_fails_without_the_client_tools(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "TETHER_CI_PG_START": "no"}
    done = subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and "pg_isready not found" in done.stderr


PYTEST = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q"]
SKIPPING = """
import pytest

@pytest.mark.postgres
def test_needs_a_tool():
    pytest.skip("pg_ctlcluster not found")

def test_sqlite_only():
    pytest.skip("not a PostgreSQL test")
"""


@pytest.mark.parametrize(("ci", "failed"), [("true", 1), ("", 0)])
def test_a_postgres_test_that_skips_fails_under_ci(tmp_path: Path, ci: str, failed: int) -> None:
    test_file = tmp_path / "test_skipping.py"
    test_file.write_text(SKIPPING)
    env = {
        **os.environ,
        "CI": ci,
        "TETHER_TEST_POSTGRES": NOWHERE,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src")]),
    }
    done = subprocess.run(
        [*PYTEST, "-rfs", "-o", "asyncio_default_fixture_loop_scope=function", str(test_file)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    summary = done.stdout.strip().splitlines()[-1]
    if failed:
        assert done.returncode == 1, done.stdout
        assert "1 failed, 1 skipped" in summary, done.stdout
        assert "a PostgreSQL test skipped under CI=true: pg_ctlcluster not found" in done.stdout
    else:
        assert done.returncode == 0, done.stdout
        assert "2 skipped" in summary, done.stdout
