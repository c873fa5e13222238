"""Shared fixtures. `store_url` runs a test once per backend: SQLite always, PostgreSQL
when a server is reachable (see tests/pg.py for how the database is provided)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tether import Tether

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(1, str(ROOT))  # bench/: its gate and completion checks have unit tests

import pg  # noqa: E402  (tests/ is on the path from here on)
from events_check import catalogue_problems  # noqa: E402

# Backends ---------------------------------------------------------------------------
# PostgreSQL tests run when a server answers (tests/pg.py says where); otherwise they
# are skipped with one reason, except under CI=true, where they must fail instead.
BACKENDS = ["sqlite", "postgres"]
PG_UNAVAILABLE = pg.probe()
IN_CI = pg.IN_CI


def pytest_report_header() -> str:
    if PG_UNAVAILABLE is None:
        return f"postgresql: {pg.where()} reachable, PostgreSQL tests run"
    verdict = "FAILING them (CI=true)" if IN_CI else "skipping PostgreSQL tests"
    return f"postgresql: not reachable at {pg.where()} ({PG_UNAVAILABLE}); {verdict}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if PG_UNAVAILABLE is not None and not IN_CI:
        terminalreporter.write_line(
            f"PostgreSQL tests skipped: no server at {pg.where()} ({PG_UNAVAILABLE})"
        )


def require_postgres() -> None:
    """Skip (or, in CI, fail) the calling test when PostgreSQL is not reachable."""
    if PG_UNAVAILABLE is None:
        return
    reason = f"PostgreSQL not reachable at {pg.where()}: {PG_UNAVAILABLE}"
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must not be skipped)")
    pytest.skip(reason)


def _uses_postgres(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    on_backend = callspec is not None and callspec.params.get("backend") == "postgres"
    fixtures = set(getattr(item, "fixturenames", ()))
    return on_backend or bool(fixtures & {"pg_url", "pg_database"}) or "postgres" in item.keywords


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI=true, a PostgreSQL test that skips (for whatever reason: a missing
    server, a missing tool, a `pytest.skip` added later) is reported as failed, so the
    PostgreSQL half of the suite cannot vanish from CI unnoticed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if IN_CI and report.skipped and _uses_postgres(item) and not hasattr(report, "wasxfail"):
        why = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        reason = str(why).removeprefix("Skipped: ")
        report.longrepr = f"a PostgreSQL test skipped under CI=true: {reason}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One fresh database per test session, dropped at the end."""
    require_postgres()
    name = pg.create_database()
    yield name
    pg.drop_database(name)


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A URL of an empty schema of its own for one test, in the session's database."""
    schema = pg.create_schema(pg_database)
    yield pg.url_for(pg_database, schema)
    pg.drop_schema(pg_database, schema)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        require_postgres()
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for one test. Afterwards, every event the test wrote
    there is held to the event catalogue (tests/events_check.py)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'tether.db'}"
    elif backend == "postgres":
        url = request.getfixturevalue("pg_url")
    else:
        raise AssertionError(f"unknown backend {backend}")
    yield url
    problems = catalogue_problems(url)
    assert not problems, "events outside the catalogue:\n" + "\n".join(problems[:20])


@pytest.fixture
async def make_app(store_url: str) -> AsyncIterator[Callable[[], Tether]]:
    """Build apps on the test's database; all are closed at the end of the test."""
    apps: list[Tether] = []

    def build() -> Tether:
        app = Tether(store_url)
        apps.append(app)
        return app

    yield build
    for app in apps:
        await app.close()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[tuple[Tether, str]]:
    """An opened app on a SQLite file that worker processes of the test share, and its
    URL (the process tests: crash, SIGTERM, several workers)."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    app = Tether(url)
    await app.open()
    yield app, url
    await app.close()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's TETHER_* environment or config file."""
    for name in list(os.environ):
        if name.startswith("TETHER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


# Tiers ------------------------------------------------------------------------------
# Each folder under tests/ is a tier, and every test in it carries that tier's marker,
# so `pytest -m unit` (or `-m "not processes"`) picks tiers without listing paths.
TIERS = ("unit", "store", "engine", "api", "cli", "processes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests_dir = ROOT / "tests"
    for item in items:
        if not item.path.is_relative_to(tests_dir):
            continue  # a test file run with this conftest as a plugin
        parts = item.path.relative_to(tests_dir).parts
        if len(parts) > 1 and parts[0] in TIERS:
            item.add_marker(parts[0])
