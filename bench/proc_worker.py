"""A worker process for W5, driven over stdin (the peers' "go" line protocol).

usage: python -m bench.proc_worker DATABASE_URL CONCURRENCY [--trace]

Prints `ready` once the store is open, then obeys one command per line:
`go` starts the worker; `memory` waits (up to 60 s) until the worker is idle and prints
a JSON line: the tasks it still holds, and its memory (bench/heap.py; `traced` only
with `--trace`, which starts tracemalloc before the app is built); `stop` stops the
worker gracefully and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import tracemalloc
from typing import Any

from bench import heap
from bench.apps import build_app
from tether.engine.worker import Worker


async def memory(worker: Worker | None) -> dict[str, Any]:
    """What the worker holds once it is idle (or after 60 s, when it never became so)."""
    deadline = time.monotonic() + 60
    # The worker has no event for "idle"; a poll every 10 ms costs nothing here.
    while worker is not None and not worker.idle and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    return {
        "idle": worker is None or worker.idle,
        "active": 0 if worker is None else worker.active,
        "completed": 0 if worker is None else worker.completed,
        "traced": heap.traced_bytes() if tracemalloc.is_tracing() else None,
        "sqlite": heap.sqlite_bytes(),
        "rss": heap.rss_bytes(),
        "hwm": heap.rss_bytes("VmHWM"),
    }


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
        elif line == "memory":
            print(json.dumps(await memory(worker)), flush=True)
        elif line in ("stop", ""):  # "" = stdin closed
            break
    await app.close()
    print("stopped", flush=True)


if __name__ == "__main__":
    if "--trace" in sys.argv[3:]:
        tracemalloc.start()
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
