"""A PostgreSQL server of a test's own, to stop and start at will (database outages).

The machine's server at 127.0.0.1:5432 is shared with other test sessions and must never
be stopped; this one lives in a temporary directory, listens on 127.0.0.1 on a free port
(its unix socket in the same directory), trusts every local connection, and is removed
afterwards. The binaries come from `TETHER_TEST_PG_BIN`, else the newest
`/usr/lib/postgresql/*/bin`, else PATH. `initdb` and `pg_ctl` refuse to run as root, so
as root they run as the `postgres` OS user (`runuser`), which then owns the directory.
Without the binaries the fixture skips (under CI=true it fails: tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pg import IN_CI

STOP_TIMEOUT = 30
"""Seconds `pg_ctl` may take to stop or start the server."""


def bin_dir() -> Path | None:
    """Where `initdb`, `pg_ctl` and `postgres` are, or None."""
    given = os.environ.get("TETHER_TEST_PG_BIN")
    candidates = [Path(given)] if given else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(Path(found).parent)
    return next(
        (c for c in candidates if (c / "initdb").exists() and (c / "pg_ctl").exists()), None
    )


def _version(path: Path) -> int:
    name = path.parent.name
    return int(name) if name.isdigit() else 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivateServer:
    """One PostgreSQL cluster in `root`: `start()`, `stop()`, `url`."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = STOP_TIMEOUT) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        done = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr or done.stdout}\n"
                f"{self.tail()}"
            )

    def init(self) -> None:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync",
        )  # fmt: skip

    def start(self, *, wait: bool = True) -> None:
        """Start the server; with `wait`, until it accepts connections (pg_ctl -w).
        Without, pg_ctl returns at once: `wait_accepting` then times the start."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-w" if wait else "-W", "-t", str(STOP_TIMEOUT), "-o", options, "start",
        )  # fmt: skip
        self.running = True

    def stop(self) -> None:
        """Stop the server at once (fast mode: sessions are disconnected), and wait."""
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
            "-t", str(STOP_TIMEOUT), "stop",
        )  # fmt: skip
        self.running = False

    def accepts(self) -> bool:
        """A connection succeeds now."""
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def wait_accepting(self, timeout: float = 20.0) -> float:
        """Block until a connection succeeds; return `time.time()` of that success."""
        deadline = time.monotonic() + timeout
        while not self.accepts():
            if time.monotonic() > deadline:
                raise TimeoutError(f"private PostgreSQL not accepting after {timeout}s")
            time.sleep(0.01)
        return time.time()

    def create_database(self) -> str:
        """A fresh, empty database on this server; returns its URL."""
        name = f"outage_{secrets.token_hex(4)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivateServer]:
    """A private PostgreSQL server for the session, running; a test that stops it must
    leave it started again (`running_private_pg` does that for it)."""
    bindir = bin_dir()
    if bindir is None:
        reason = "no PostgreSQL server binaries (initdb, pg_ctl) to run a private server"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must not be skipped)")
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="tether-pg-"))  # not under tmp_path: postgres must reach it
    server = PrivateServer(bindir, root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def running_private_pg(private_pg: PrivateServer) -> Iterator[PrivateServer]:
    """The private server, started if a previous test left it stopped, and started
    again after this test whatever happens."""
    if not private_pg.running:
        private_pg.start()
    yield private_pg
    if not private_pg.running:
        private_pg.start()
