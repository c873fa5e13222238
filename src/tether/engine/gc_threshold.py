"""The cyclic garbage collector's first-generation threshold while workers run.

CPython runs a collection of its youngest generation every 700 net allocations of
container objects (tuples, dicts, lists, instances), and an older one every tenth of
those. A worker allocates hundreds of such short-lived objects per task, almost none in
reference cycles, so at 700 the collector ran constantly and every tenth or hundredth
run walked the whole heap: in W1 it took 18% of the wall time, holding the GIL that the
database thread also needs. With a first threshold of 10,000 those collections are 14
times rarer; a young collection then takes about 2 ms instead of 0.1 ms, and garbage in
cycles lives a little longer (ADR 49).

The setting is process-wide: the first worker to start raises it (only if it is lower),
the last one to stop puts back what it found.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()  # workers may run on event loops in several threads
_holders = 0
_saved: int | None = None
_set_to: int | None = None


def hold(threshold: int) -> None:
    """Raise the first threshold to `threshold` while at least one holder runs."""
    global _holders, _saved, _set_to
    with _lock:
        if _holders == 0:
            current = gc.get_threshold()
            if current[0] < threshold:
                _saved, _set_to = current[0], threshold
                gc.set_threshold(threshold, current[1], current[2])
        _holders += 1


def release() -> None:
    """Undo one `hold`; the last one restores the first threshold found, unless someone
    else has changed it since (the older generations' thresholds are never touched)."""
    global _holders, _saved, _set_to
    with _lock:
        _holders = max(0, _holders - 1)
        if _holders == 0 and _saved is not None:
            current = gc.get_threshold()
            if current[0] == _set_to:
                gc.set_threshold(_saved, current[1], current[2])
            _saved = _set_to = None
