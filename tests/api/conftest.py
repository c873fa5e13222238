"""Fixtures of the API tests: live servers on fresh databases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.live import LiveServer, make_settings


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start servers on this test's database; all are stopped at the end."""
    servers: list[LiveServer] = []

    def start(*, workers: bool = True, **overrides: Any) -> LiveServer:
        url = f"sqlite:///{tmp_path / 'api.db'}"
        server = LiveServer(make_settings(url, **overrides), workers=workers).start()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., LiveServer]) -> LiveServer:
    """A live server with embedded workers."""
    return start_server()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live server for the tests of a module (read-mostly matrices)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('shared') / 'api.db'}"
    with LiveServer(make_settings(url)) as srv:
        yield srv
