"""What a process holds in memory, three ways, for the parked-task workload (W5).

- `traced_bytes`: Python's heap as tracemalloc sees it (every object the interpreter
  allocated and has not freed, after a full collection). It is exact and free of
  allocator noise, but it sees only allocations made through Python's allocators and
  only those made after `tracemalloc.start()`: start it first thing in the process.
- `sqlite_bytes`: memory the SQLite library holds (`sqlite3_status64` MEMORY_USED), the
  page caches of the store's connections above all; tracemalloc does not see it.
- `rss_bytes`: resident memory of the process (Linux /proc), which includes both, plus
  libpq's buffers, the allocators' free lists and everything else.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import tracemalloc

SQLITE_STATUS_MEMORY_USED = 0


def rss_bytes(field: str = "VmRSS") -> int:
    """Resident memory of this process (`VmRSS`; `VmHWM` for the peak) in bytes."""
    if field == "VmRSS":
        _libc().malloc_trim(0)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def traced_bytes() -> int:
    """Bytes of live Python objects allocated since `tracemalloc.start()`, after a full
    garbage collection (so that only what is still referenced counts)."""
    if not tracemalloc.is_tracing():
        raise RuntimeError("tracemalloc is not tracing (start it when the process starts)")
    gc.collect()
    current, _peak = tracemalloc.get_traced_memory()
    return current


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"))


@functools.cache
def _sqlite_library() -> ctypes.CDLL | None:
    import sqlite3  # noqa: F401  (loads the library the store uses, so dlopen finds that one)

    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.sqlite3_status64.argtypes = [
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_int64),
        ctypes.POINTER(ctypes.c_int64),
        ctypes.c_int,
    ]
    lib.sqlite3_status64.restype = ctypes.c_int
    return lib


def sqlite_bytes() -> int:
    """Memory the SQLite library of this process holds now, in bytes. Python's sqlite3
    module links the system's libsqlite3 dynamically, so this is the one the store uses
    (a statically linked build would report its own copy: then this is wrong)."""
    lib = _sqlite_library()
    if lib is None:
        raise RuntimeError("libsqlite3 not found")
    current, high = ctypes.c_int64(), ctypes.c_int64()
    if lib.sqlite3_status64(SQLITE_STATUS_MEMORY_USED, current, high, 0) != 0:
        raise RuntimeError("sqlite3_status64 failed")
    return current.value
