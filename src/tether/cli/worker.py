"""`tether worker`: run a worker in the foreground until SIGTERM or SIGINT.

On the first signal the worker stops claiming, lets running tasks finish for the grace
period, hands the rest back to the queue (event `task.released`; they resume from their
step logs on another worker) and exits 0. A second signal is reported and ignored: the
hand-back is already bounded by the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from typing import Annotated

import typer

from tether.app import Tether
from tether.cli.common import (
    build_app,
    err_console,
    handle_errors,
    run,
)
from tether.cli.options import AppOpt, DatabaseOpt, TenantOpt, resolve
from tether.cli.root import cli
from tether.services import admin


@cli.command()
@handle_errors
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", min=1, help="Tasks in flight.")
    ] = None,
    queues: Annotated[
        str | None, typer.Option("--queues", "-q", help="Comma-separated queues to serve.")
    ] = None,
    worker_id: Annotated[
        str | None, typer.Option("--worker-id", help="Name in events and leases.")
    ] = None,
    lease_ttl: Annotated[
        float | None,
        typer.Option("--lease-ttl", min=0.1, help="Seconds a claim lasts unrenewed."),
    ] = None,
    grace: Annotated[
        float | None,
        typer.Option("--grace", min=0.0, help="Seconds to let tasks finish on SIGTERM."),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="Python log level.")] = "INFO",
    app: AppOpt = None,
    database_url: DatabaseOpt = None,
    tenant: TenantOpt = None,
) -> None:
    """Run a worker: claim tasks and run their workflows until SIGTERM/SIGINT."""
    env = resolve(ctx, app, database_url, tenant, local_only=True)
    tether_app = build_app(env, required=True)
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    run(_serve(tether_app, concurrency, queue_list, worker_id, lease_ttl, grace))
    _exit_despite_step_threads()


def _exit_despite_step_threads() -> None:
    """Exit now even if sync step functions still run in threads.

    Their tasks were handed back (or finished) and the store is closed, but Python
    joins thread-pool threads at exit, so a 10-minute sync step would keep a stopped
    worker alive for 10 minutes. Nothing of theirs can be committed any more, so they
    are abandoned (another worker re-runs the step: steps run at least once).
    """
    main = threading.main_thread()
    busy = [t for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()]
    if not busy:
        return
    err_console.print(f"abandoning {len(busy)} sync step thread(s) still running")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


async def _serve(
    app: Tether,
    concurrency: int | None,
    queues: list[str] | None,
    worker_id: str | None,
    lease_ttl: float | None,
    grace: float | None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            err_console.print(f"{signal.Signals(signum).name} again: already stopping")
            return
        err_console.print(
            f"{signal.Signals(signum).name}: stopping (no new claims; running tasks get "
            f"{w.grace:g}s, then are handed back)"
        )
        stop.set()

    await app.open()
    w = app.worker(
        concurrency, queues=queues, worker_id=worker_id, lease_ttl=lease_ttl, grace=grace
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await w.start()
        err_console.print(
            f"worker [bold]{w.id}[/] on queues {','.join(w.queues)} "
            f"(concurrency {w.concurrency}, lease {w.lease_ttl:g}s) "
            f"· database {admin.database(app)}"
        )
        await stop.wait()
        await w.stop()
        err_console.print(f"worker {w.id} stopped ({w.completed} task runs)")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await app.close()
