"""A worker process for W5, driven over stdin (the peers' "go" line protocol).

usage: python -m bench.proc_worker DATABASE_URL CONCURRENCY

Prints `ready` once the store is open, then obeys one command per line:
`go` starts the worker; `stat` prints a JSON line (active tasks, completions, RSS);
`stop` stops the worker gracefully and exits.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys

from bench.apps import build_app
from tether.engine.worker import Worker


def rss_kb(field: str = "VmRSS") -> int:
    """Resident memory of this process in KiB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


async def main(url: str, concurrency: int) -> None:
    app = build_app(url)
    await app.open()
    worker: Worker | None = None
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "go" and worker is None:
            worker = app.worker(concurrency=concurrency)
            await worker.start()
            print("started", flush=True)
        elif line == "stat":
            gc.collect()
            stat = {
                "active": 0 if worker is None else worker.active,
                "completed": 0 if worker is None else worker.completed,
                "rss_kb": rss_kb(),
                "hwm_kb": rss_kb("VmHWM"),
            }
            print(json.dumps(stat), flush=True)
        elif line in ("stop", ""):  # "" = stdin closed
            break
    await app.close()
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
