"""HTTP intake under load: POST /v1/tasks driven by wrk (32 connections, auth on).

    .venv/bin/python -m bench.intake [--seconds 30] [--connections 32] [--workers]
        [--processes N] [--batch 100] [--backend sqlite,pg] [--limit none|lease|store]

Starts a real `tether` API server (uvicorn, in a subprocess, API only unless
`--workers`; `--processes N`: N server processes on the port) on a fresh database of
each backend (PostgreSQL: on the server of TETHER_BENCH_PG_URL, bench/common.py; exit
status 1 when it cannot be reached, unless `--backend sqlite`), then runs Debian's `wrk`
against it with a Lua script that submits a no-op task per request (or `--batch N` per
`POST /v1/tasks:batch`) with a bearer token. Prints tasks/s, p50/p99 latency, non-202
answers and the server's CPU time per task, and, with `--workers`, how many submitted
tasks had succeeded when the load stopped. `--limit` puts the fleet-wide submission
limit in the path (at a rate nothing reaches: the cost of asking), spent from leases
or asking the database every time. wrk is a C load generator: on a 2-core
machine a Python client would cost the server its CPU.
A script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import HERE, fresh_database, unavailable
from tether import Context, Tether

SECRET = "bench-secret-0123456789abcdef0123456789"
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TETHER_BENCH_TOKEN")
wrk.body = '%s'
"""
ONE = '{"workflow": "noop", "input": {"n": 1}}'


def lua(batch: int) -> str:
    """The wrk script: one task per request, or `batch` per `POST /v1/tasks:batch`."""
    body = ONE if batch <= 1 else '{"tasks": [' + ", ".join([ONE] * batch) + "]}"
    return LUA % body


LIMITS = ("none", "lease", "store")
"""`--limit`: no submission limit; the fleet-wide one spent from local leases (the
default when `submit_rate` is set); the same with a store round trip per submit."""


def serve(database_url: str, port: int, workers: bool, processes: int, limit: str) -> None:
    """Child process: the API of an app with one no-op workflow."""
    from tether.api.server import serve as run
    from tether.config import load_settings
    from tether.flow import submits

    # A rate nothing reaches: what is measured is the cost of asking (ADR 90).
    rate = 0 if limit == "none" else 10_000_000
    if limit == "store":
        submits.LEASE_SECONDS = 0  # every submit asks the database
    settings = load_settings(
        {
            "database_url": database_url,
            "jwt_secret": SECRET,
            "submit_rate": rate,
            "submit_burst": rate or 1,
        }
    )
    app = Tether(settings=settings)

    @app.workflow("noop")
    async def noop(ctx: Context, n: int) -> int:
        return n

    run(app, "127.0.0.1", port, settings, workers=workers, log_level="warning", processes=processes)


def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("server did not become ready")
        time.sleep(0.1)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(
    url: str, token: str, connections: int, seconds: float, script: Path
) -> dict[str, float]:
    """One wrk run: requests/s, p50/p99 (ms) and non-2xx answers."""
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        env={**os.environ, "TETHER_BENCH_TOKEN": token},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "errors": 0.0,
    }
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad:
        figures["errors"] = float(bad.group(1))
    return figures


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its live children (the server processes), from
    /proc: CPU per request is the figure a loaded machine distorts least."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def succeeded(url: str, token: str) -> int:
    """How many tasks of this run's tenant have succeeded (counted by the API's list)."""
    headers = {"Authorization": f"Bearer {token}"}
    total, cursor = 0, None
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        while True:
            params: dict[str, str | int] = {"status": "succeeded", "limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = http.get("/v1/tasks", params=params).json()
            total += len(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return total


def bench(label: str, database_url: str, args: argparse.Namespace, script: Path) -> None:
    from tether.auth import create_token

    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.intake",
            "--serve",
            database_url,
            str(port),
            str(int(args.workers)),
            str(args.processes),
            args.limit,
        ],
        cwd=HERE.parent,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
        tenant = f"bench-{os.getpid()}-{time.time_ns()}"  # a fresh tenant: only this run counted
        token = create_token(SECRET, tenant, ["submitter", "viewer"], ttl=3600)
        route = f"{url}/v1/tasks" + (":batch" if args.batch > 1 else "")
        run_wrk(route, token, 4, 1, script)  # warm-up
        cpu = cpu_seconds(child.pid)
        f = run_wrk(route, token, args.connections, args.seconds, script)
        tasks = f["rps"] * max(1, args.batch)
        cpu_ms = (cpu_seconds(child.pid) - cpu) * 1000 / max(1.0, tasks * args.seconds)
        shape = f"batch={args.batch} " if args.batch > 1 else ""
        line = (
            f"{label:<10} {'workers' if args.workers else 'api-only':<8} x{args.processes} "
            f"limit={args.limit} "
            f"{shape}c={args.connections}  {tasks:8.0f} tasks/s ({f['rps']:.0f} requests/s)   "
            f"p50 {f['p50']:6.2f} ms   p99 {f['p99']:6.2f} ms   "
            f"non-202 {f['errors']:.0f}   server CPU {cpu_ms:.3f} ms/task"
        )
        if args.workers:
            line += f"   succeeded {succeeded(url, token)}"
        print(line, flush=True)
    finally:
        child.terminate()
        child.wait(30)


def main() -> int:
    if len(sys.argv) == 7 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5]), sys.argv[6])
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", action="store_true", help="embedded workers run the tasks")
    parser.add_argument("--processes", type=int, default=1, help="server processes on the port")
    parser.add_argument("--batch", type=int, default=1, help="tasks per POST /v1/tasks:batch")
    parser.add_argument("--backend", default="sqlite,pg", help="comma-separated: sqlite,pg")
    parser.add_argument(
        "--limit", choices=LIMITS, default="none", help="the submission rate limit (ADR 90)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("intake: needs wrk (apt-get install wrk)")
    status = 0
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "submit.lua"
        script.write_text(lua(args.batch))
        for backend in [b.strip() for b in args.backend.split(",") if b.strip()]:
            label = {"sqlite": "sqlite", "pg": "postgresql"}[backend]
            reason = asyncio.run(unavailable(backend))
            if reason is not None:
                print(f"{label}: unavailable: {reason}", flush=True)
                status = 1
                continue
            with fresh_database(backend) as url:
                bench(label, url, args, script)
    return status


if __name__ == "__main__":
    sys.exit(main())
