"""Submit throughput and latency of the HTTP API (POST /v1/tasks).

    .venv/bin/python bench/api_submit.py [--seconds 5] [--concurrency 1,8,32]

Starts a real uvicorn server (API only, no workers) in a subprocess on 127.0.0.1 on a
fresh SQLite database (and on PostgreSQL when TETHER_BENCH_PG_URL is set), then drives
it with 1, 8 and 32 concurrent clients, each submitting one task at a time with its own
idempotency key. Prints tasks/s and p50/p99 latency per setting. A script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid

import httpx

from tether import Context, Tether

SECRET = "bench-secret-0123456789abcdef0123456789"


def serve(database_url: str, port: int) -> None:
    """Child process: the API of an app with one trivial workflow."""
    from tether.api.server import serve as run
    from tether.config import load_settings

    settings = load_settings({"database_url": database_url, "jwt_secret": SECRET, "submit_rate": 0})
    app = Tether(settings=settings)

    @app.workflow("noop")
    async def noop(ctx: Context, n: int) -> int:
        return n

    run(app, "127.0.0.1", port, settings, workers=False, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("server did not become ready")
            await asyncio.sleep(0.1)


async def drive(url: str, token: str, concurrency: int, seconds: float) -> tuple[int, list[float]]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {token}"}

    async def one_client() -> None:
        # A connection of its own per client (httpx's shared pool serializes under load).
        async with httpx.AsyncClient(base_url=url, headers=headers) as http:
            n = 0
            while time.perf_counter() < stop:
                started = time.perf_counter()
                r = await http.post(
                    "/v1/tasks",
                    json={"workflow": "noop", "input": {"n": n}},
                    headers={"Idempotency-Key": str(uuid.uuid4())},
                )
                if r.status_code != 202:
                    raise RuntimeError(f"unexpected {r.status_code}: {r.text}")
                latencies.append(time.perf_counter() - started)
                n += 1

    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return len(latencies), latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(label: str, database_url: str, levels: list[int], seconds: float) -> None:
    from tether.auth import create_token

    port = free_port()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve",
        database_url,
        str(port),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url)
        token = create_token(SECRET, "bench", ["submitter"], ttl=3600)
        await drive(url, token, 4, 0.5)  # warm-up
        for c in levels:
            count, lat = await drive(url, token, c, seconds)
            print(
                f"{label:<10} clients={c:<3} {count / seconds:8.0f} tasks/s   "
                f"p50 {pct(lat, 0.50) * 1000:6.2f} ms   p99 {pct(lat, 0.99) * 1000:6.2f} ms   "
                f"(n={count}, mean {statistics.fmean(lat) * 1000:.2f} ms)",
                flush=True,
            )
    finally:
        child.terminate()
        await asyncio.wait_for(child.wait(), 30)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,8,32")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(bench("sqlite", f"sqlite:///{folder}/bench.db", levels, args.seconds))
    pg = os.environ.get("TETHER_BENCH_PG_URL")
    if pg:
        asyncio.run(bench("postgresql", pg, levels, args.seconds))
    else:
        print("postgresql: skipped (set TETHER_BENCH_PG_URL)")


if __name__ == "__main__":
    main()
