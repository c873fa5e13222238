"""Shared pieces: sizes, fresh databases per run, result files in the peers' format."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS") or HERE / "results")
PG_BASE_URL = os.environ.get("TETHER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
"""The PostgreSQL server of every benchmark in bench/: an admin URL, used to create (and
drop) one fresh database per run."""


@dataclass
class Sizes:
    """Workload sizes; the defaults are the peers' (../shared/peerbench/common.py)."""

    runs: int = 3
    w1: int = 5000
    w2: int = 300
    w3: int = 500
    w4: int = 100
    concurrency: int = 100
    w5_history: int = 1_000_000
    w5_claim: int = 5000
    w5_claim_batch: int = 100
    w5_parked_low: int = 10_000
    w5_parked_high: int = 50_000
    w5_procs: tuple[int, ...] = (1, 2, 4)

    @classmethod
    def make(cls, quick: bool, runs: int | None) -> Sizes:
        s = cls()
        if quick:
            s = cls(
                runs=1,
                w1=500,
                w2=50,
                w3=100,
                w4=20,
                w5_history=20_000,
                w5_claim=500,
                w5_parked_low=1000,
                w5_parked_high=5000,
                w5_procs=(1, 2),
            )
        env_runs = os.environ.get("BENCH_RUNS")
        if runs is not None:
            s.runs = runs
        elif env_runs:
            s.runs = int(env_runs)
        for name in ("w1", "w2", "w3", "w4", "w5_history", "w5_parked_low", "w5_parked_high"):
            env = os.environ.get(f"BENCH_N_{name.upper()}")
            if env:
                setattr(s, name, int(env))
        return s

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pct(xs: list[float], p: float) -> float:
    """Percentile with linear interpolation (same as the peers' `common.pct`)."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def log(*parts: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


# Databases ------------------------------------------------------------------------------

_counter = itertools.count()


@contextlib.contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """A URL of a new, empty database, removed afterwards."""
    if backend == "sqlite":
        # On the same disk as the peers' data folder (not tmpfs): fsync costs what it costs.
        folder = tempfile.mkdtemp(prefix="tether-bench-", dir=os.environ.get("BENCH_DATA_DIR"))
        try:
            yield f"sqlite:///{folder}/tether.db"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    if backend == "pg":
        name = f"tether_bench_{os.getpid()}_{next(_counter)}"
        _pg_admin(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(PG_BASE_URL)._replace(path=f"/{name}"))
        finally:
            _pg_admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            _pg_admin(f'DROP DATABASE IF EXISTS "{name}"')
        return
    raise ValueError(f"unknown backend {backend!r}")


async def unavailable(backend: str) -> str | None:
    """None when a fresh database can be created on `backend` and Tether can open a
    store on it, else the reason (one line)."""
    from tether.store import open_store

    try:
        with fresh_database(backend) as url:
            store = open_store(url)
            await store.open(check_schema=False)
            await store.close()
    except Exception as exc:
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")
        reason = f"{type(exc).__name__}: {first}".strip()[:300]
        if backend == "pg":
            reason += f" (TETHER_BENCH_PG_URL: {pg_where()}; or run --backend sqlite)"
        return reason
    return None


def pg_where() -> str:
    """host:port of the PostgreSQL server (for messages: never the URL's password)."""
    parts = urlsplit(PG_BASE_URL)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


def _pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


# Results --------------------------------------------------------------------------------


class Results:
    """Per-run values and medians of one workload on one backend, saved after every
    value as `results/tether_<backend>_<workload>.json` (the peers' file layout)."""

    def __init__(self, backend: str, workload: str, config: dict[str, Any]) -> None:
        self.backend = backend
        self.workload = workload
        self.path = RESULTS_DIR / f"tether_{backend}_{workload}.json"
        self.data: dict[str, Any] = {
            "system": f"tether_{backend}",
            "workload": workload,
            "config": config,
            "runs": {},
            "median": {},
            "errors": {},
        }

    def add(self, metric: str, value: float) -> None:
        self.data["runs"].setdefault(metric, []).append(value)
        self.data["median"][metric] = statistics.median(self.data["runs"][metric])
        self.save()

    def error(self, key: str, message: str) -> None:
        self.data["errors"][key] = message
        log(f"tether_{self.backend} {self.workload} ERROR {key}: {message}")
        self.save()

    @property
    def median(self) -> dict[str, float]:
        return dict(self.data["median"])

    def save(self) -> None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2))


def write_combined(backend: str, parts: list[Results], config: dict[str, Any]) -> Path:
    """`results/tether_<backend>.json`: every workload of one backend in one file, in
    exactly the format of the peers' per-system files (for their report.py)."""
    data: dict[str, Any] = {
        "system": f"tether_{backend}",
        "config": config,
        "runs": {},
        "median": {},
        "errors": {},
    }
    for part in parts:
        data["runs"].update(part.data["runs"])
        data["median"].update(part.data["median"])
        data["errors"].update({f"{part.workload}:{k}": v for k, v in part.data["errors"].items()})
    path = RESULTS_DIR / f"tether_{backend}.json"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path
