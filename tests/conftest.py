"""Shared fixtures. `store_url` runs a test once per backend: SQLite always, PostgreSQL
when a server is reachable (see tests/pg.py for how the database is provided)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tether import Tether

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for one test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'tether.db'}"
        return
    raise AssertionError(f"unknown backend {backend}")


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


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's TETHER_* environment or config file."""
    for name in list(os.environ):
        if name.startswith("TETHER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
