"""`StepThreads`: the threads that run sync step functions, lean enough for no-op steps.

`loop.run_in_executor` costs a `concurrent.futures.Future` (a condition and a lock), a
chained asyncio future and one self-pipe write per call; for a trivial step that is most
of the step's cost. Here a job is a tuple on a queue, and results return to the event
loop in batches: a thread that finishes while an earlier hand-back is still pending adds
to it instead of waking the loop again (ADR 43).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

_Job = tuple[
    asyncio.Future[Any], contextvars.Context, Callable[..., Any], tuple[Any, ...], dict[str, Any]
]
_Done = tuple[asyncio.Future[Any], Any, BaseException | None]


class StepThreads:
    """Up to `size` threads, started when needed, each running one step at a time."""

    def __init__(self, size: int, name: str = "tether-step") -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._size = size
        self._name = name
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._done: list[_Done] = []
        self._handback_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> asyncio.Future[Any]:
        """Run `fn(*args, **kwargs)` on a thread, in a copy of the caller's context."""
        if self._closed:
            raise RuntimeError("the step threads are shut down")
        loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # an idle thread will take this job
                spawn = False
            else:
                spawn = len(self._threads) < self._size
        if spawn:
            thread = threading.Thread(
                target=self._serve, name=f"{self._name}_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        self._jobs.put((fut, contextvars.copy_context(), fn, args, kwargs))
        return fut

    def shutdown(self) -> None:
        """Stop the threads once their current step returns; queued steps never start."""
        self._closed = True
        while not self._jobs.empty():
            job = self._jobs.get_nowait()
            if job is not None and self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(job[0].cancel)
        for _ in self._threads:
            self._jobs.put(None)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fut, ctx, fn, args, kwargs = job
            try:
                item: _Done = (fut, ctx.run(fn, *args, **kwargs), None)
            except BaseException as exc:  # handed to the awaiting step, whatever it is
                item = (fut, None, exc)
            with self._lock:
                self._idle += 1
                self._done.append(item)
                if self._handback_pending:
                    continue
                self._handback_pending = True
            loop = self._loop
            assert loop is not None
            try:
                loop.call_soon_threadsafe(self._hand_back)
            except RuntimeError:  # the loop closed meanwhile: nobody awaits the result
                return

    def _hand_back(self) -> None:
        with self._lock:
            done, self._done = self._done, []
            self._handback_pending = False
        for fut, result, error in done:
            if fut.done():  # cancelled (a step timeout): the result is dropped
                continue
            if error is None:
                fut.set_result(result)
                continue
            try:
                fut.set_exception(error)
            except TypeError:  # StopIteration cannot travel through a future
                failure = RuntimeError(f"the step raised {type(error).__name__}")
                failure.__cause__ = error
                fut.set_exception(failure)
