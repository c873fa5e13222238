"""Several server processes behind one port (`tether server --processes N`).

One Python process serves HTTP on one core at most: the event loop is the limit long
before the database is (docs/performance.md, HTTP intake). The parent binds the
listening socket, forks N children that each run the whole server (API, and embedded
workers unless API-only) on that one socket, and supervises them: the kernel spreads
connections over the children, a child that dies is replaced, and SIGTERM or SIGINT
is passed on so that each child shuts down gracefully (ADR 76).

Forking happens before anything is opened (no event loop, no database connection, no
thread), so each child opens its own store. POSIX only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("tether.server")

RESPAWN_PAUSE = 1.0
"""Seconds between replacing a child that died and starting the next replacement:
a child that cannot start (a bad database URL) must not spin."""

STOP_TIMEOUT = 60.0
"""Seconds each child has to finish its shutdown (draining its workers) after SIGTERM
before it is killed."""


def bind(host: str, port: int) -> socket.socket:
    """The listening socket the children share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def supervise(count: int, sock: socket.socket, child: Callable[[socket.socket], None]) -> int:
    """Run `child(sock)` in `count` forked processes until SIGTERM or SIGINT, replacing
    any that exits meanwhile; returns the exit code for the parent."""
    if not hasattr(os, "fork"):
        raise RuntimeError("several server processes need fork (POSIX)")
    stopping = False

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            _signal(pid, signal.SIGTERM)

    children: dict[int, int] = {}  # pid -> slot
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for slot in range(count):
            children[_fork(slot, sock, child)] = slot
        last_respawn = 0.0
        while not stopping:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if not pid:
                time.sleep(0.1)  # a poll, not a blocking wait: a signal must stop us at once
                continue
            if pid not in children or stopping:
                continue
            slot = children.pop(pid)
            log.error("server process %d exited (%s); starting another", pid, _how(status))
            pause = RESPAWN_PAUSE - (time.monotonic() - last_respawn)
            if pause > 0:
                time.sleep(pause)
            last_respawn = time.monotonic()
            if not stopping:
                children[_fork(slot, sock, child)] = slot
        return 0
    finally:
        if not stopping:  # left by an error: stop the children (a second SIGTERM could
            for pid in children:  # force uvicorn's exit, so only when none was sent)
                _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for pid in list(children):
            _reap(pid, deadline)
        for s, handler in previous.items():
            signal.signal(s, handler)


def _fork(slot: int, sock: socket.socket, child: Callable[[socket.socket], None]) -> int:
    pid = os.fork()
    if pid:
        return pid
    # The child: default signal handling (uvicorn installs its own), run, never return.
    code = 0
    try:
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_DFL)
        os.environ["TETHER_SERVER_PROCESS"] = str(slot)
        child(sock)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        log.exception("server process %d failed", os.getpid())
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _reap(pid: int, deadline: float) -> None:
    """Wait for `pid` until `deadline`, then kill it."""
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.05)
    _signal(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
