"""Run one role of the multi-process PostgreSQL tests (no CLI involved).

python tests/pg_mp_main.py worker      # MP_WORKER_ID names it; runs until SIGTERM
python tests/pg_mp_main.py submit N    # submits N `job` tasks, prints their ids
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from pg_mp_app import WORKER, app


async def run_worker() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with app.worker(
        concurrency=int(os.environ.get("MP_CONCURRENCY", "10")),
        worker_id=WORKER,
        lease_ttl=float(os.environ.get("MP_LEASE_TTL", "3")),
        poll_interval=0.5,
        grace=5.0,
    ):
        print("ready", flush=True)
        await stop.wait()
    await app.close()


async def submit(n: int) -> None:
    """One transaction of `n` tasks, each with its own idempotency key."""
    tasks = [app.new_task("job", i, idempotency_key=f"job-{i}") for i in range(n)]
    handles = await app.submit_batch(tasks)
    print(json.dumps([h.id for h in handles]), flush=True)
    await app.close()


def main() -> None:
    role = sys.argv[1]
    if role == "worker":
        asyncio.run(run_worker())
    elif role == "submit":
        asyncio.run(submit(int(sys.argv[2])))
    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    main()
