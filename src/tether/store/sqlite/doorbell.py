"""Cross-process wake-ups on SQLite: a doorbell beside the database file.

PostgreSQL announces commits with NOTIFY; SQLite has nothing of the kind, and checking
`PRAGMA data_version` every `WATCH_EVERY` costs a task submitted by another process up
to that long before an idle worker looks (ADR 74). So every process with the file open
binds a Unix datagram socket in one folder per database, and after a write commits the
database thread sends an empty datagram to every other socket there. A datagram only
says "look now": the receiver checks `data_version` at once, as it would at its next
poll, so the poll stays the one place that decides what changed, and a lost datagram
(a full buffer, a platform without Unix sockets) costs latency, never correctness.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import socket
import tempfile
import time
import uuid

log = logging.getLogger("tether.store.sqlite")

SETTLED_NS = 50_000_000
"""A folder unchanged for this long (ns) is listed once and the list reused: file times
are coarse (a few ms), so a socket bound just after a listing could share its time."""

MAX_SOCKET_PATH = 103
"""Longest socket path used (the platforms' limits are 104 to 108 bytes with the final
NUL); a database deeper than that rings in a folder under the temporary directory."""

NAME_LENGTH = 26
"""The longest socket name with its separator: `/<pid>-<12 hex>.sock`."""


def folder_for(db_path: str) -> str:
    """The doorbell folder of the database at `db_path`: `<file>-wake` beside it, or a
    folder named by a hash of its real path when that would make socket paths too long."""
    real = os.path.realpath(db_path)
    beside = f"{real}-wake"
    if len(beside) + NAME_LENGTH <= MAX_SOCKET_PATH:
        return beside
    digest = hashlib.sha256(real.encode()).hexdigest()[:24]
    return os.path.join(tempfile.gettempdir(), f"tether-wake-{digest}")


class Doorbell:
    """This process's socket in the database's doorbell folder: `ring()` wakes the
    others (called by the database thread after a commit), `fileno()` is what the event
    loop watches for rings from them, `drain()` empties it."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}.sock"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._path = os.path.join(folder, self.name)
        for last_try in (False, True):
            os.makedirs(folder, mode=0o700, exist_ok=True)
            try:
                self._sock.bind(self._path)
                break
            except FileNotFoundError:  # the last process to close removed the folder
                if last_try:
                    self._sock.close()
                    raise
        self._peers: list[str] = []
        self._listed_at: int | None = None
        """The folder's modification time when `_peers` was listed, if it had settled:
        sockets come and go by creating and removing files, which changes it."""

    @classmethod
    def open(cls, db_path: str) -> Doorbell | None:
        """A doorbell for `db_path`, or None where the platform or the file system has
        no Unix sockets (the process then relies on polling alone)."""
        if not hasattr(socket, "AF_UNIX"):
            return None
        try:
            return cls(folder_for(db_path))
        except OSError as exc:
            log.debug("no doorbell for %s (%s): other processes are seen by polling", db_path, exc)
            return None

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self) -> None:
        """Read every ring waiting (many rings mean one look)."""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                self._sock.recv(16)

    def ring(self) -> None:
        """Wake every other process with the database open. Never blocks, never raises:
        a peer whose buffer is full has been rung already; a socket nobody is bound to
        any more (its process died) is removed."""
        try:
            for name in self._current_peers():
                try:
                    self._sock.sendto(b"", os.path.join(self.folder, name))
                except (BlockingIOError, InterruptedError):
                    pass
                except (ConnectionRefusedError, FileNotFoundError):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self.folder, name))
                    self._listed_at = None
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EACCES):
                log.debug("doorbell ring failed: %s", exc)

    def _current_peers(self) -> list[str]:
        changed = os.stat(self.folder).st_mtime_ns
        if changed != self._listed_at:
            self._peers = [n for n in os.listdir(self.folder) if n != self.name]
            settled = time.time_ns() - changed > SETTLED_NS
            self._listed_at = changed if settled else None
        return self._peers

    def close(self) -> None:
        """Remove this process's socket, and the folder when it was the last one."""
        self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self._path)
        with contextlib.suppress(OSError):  # not empty: others still have the file open
            os.rmdir(self.folder)
