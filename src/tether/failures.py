"""Failures as Tether keeps them: the one place where an exception becomes text.

Every error text Tether stores (a step's attempt errors and the `TaskError` of a step
or task), logs (the worker's warning when a task fails) or sends (the `step.retrying` /
`step.failed` payloads, which copy the stored texts) is made from the exception by
`describe`, here. Secrets redaction filters `describe`'s output; nothing else turns an
exception into text that Tether keeps (ADR 62).

The texts are bounded, so that a failing step cannot bloat its row, the claims that
read it back, or the events: a message keeps its first `MESSAGE_CHARS` characters; a
traceback (which starts where the engine called the user's code) its last
`TRACEBACK_FRAMES` frames (of each exception in its chain), each of
its lines its first `MESSAGE_CHARS` characters, then the whole its last
`TRACEBACK_CHARS` characters (the end is where the error is); a step keeps the errors
of its first attempt and of its latest ones, `ATTEMPTS_KEPT` in all (their attempt
numbers show the gap).
"""

from __future__ import annotations

import os
import traceback as _traceback
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tether.errors import Classification, fingerprint
from tether.models import AttemptError, RetryDecision, TaskError

MESSAGE_CHARS = 1000
"""A stored error message keeps this many characters, then says how many it cut."""
TRACEBACK_FRAMES = 20
"""A stored traceback keeps the last this many frames of each exception in its chain."""
TRACEBACK_CHARS = 4000
"""A stored traceback keeps its last this many characters."""
ATTEMPTS_KEPT = 10
"""A step keeps the errors of this many attempts: its first and its latest."""


@dataclass(frozen=True)
class Described:
    """An exception as text: what `describe` returns."""

    type: str
    """The exception's class name."""
    message: str
    """Its message (the class name when it has none), capped."""
    traceback: str | None
    """Its bounded traceback; None when it was never raised (no frames, no chain)."""


def describe(exc: BaseException) -> Described:
    """`exc` as the text Tether stores, logs and sends (see the module's docstring)."""
    type_name = type(exc).__name__
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not hide the failure itself
        message = f"<{type_name} whose message cannot be read>"
    return Described(type_name, _cap(message or type_name), _bounded_traceback(exc))


def _cap(message: str) -> str:
    if len(message) <= MESSAGE_CHARS:
        return message
    return f"{message[:MESSAGE_CHARS]}… ({len(message) - MESSAGE_CHARS} characters cut)"


def _bounded_traceback(exc: BaseException) -> str | None:
    if exc.__traceback__ is None and exc.__cause__ is None and exc.__context__ is None:
        return None
    start = _past_the_engine(exc.__traceback__)
    try:
        lines = _traceback.format_exception(type(exc), exc, start, limit=-TRACEBACK_FRAMES)
    except Exception:  # formatting reads source lines and exception texts: be safe
        return None
    text = "".join(lines)
    frames = 0
    tb = start
    while tb is not None:
        frames += 1
        tb = tb.tb_next
    if frames > TRACEBACK_FRAMES:
        text = f"({frames - TRACEBACK_FRAMES} earlier frames cut)\n{text}"
    if any(len(line) > MESSAGE_CHARS for line in text.splitlines()):
        # A long line is a message or a repr, not a frame: capped like a message, so
        # that one huge message leaves the character budget to the frames.
        text = "\n".join(_cap(line) for line in text.split("\n"))
    if len(text) > TRACEBACK_CHARS:
        cut = len(text) - TRACEBACK_CHARS
        text = f"… ({cut} characters cut)\n{text[cut:]}"
    return text


_ENGINE = str(Path(__file__).parent / "engine") + os.sep


def _past_the_engine(tb: TracebackType | None) -> TracebackType | None:
    """`tb` without its leading frames in Tether's engine: the run, the step call and
    the step threads that called the user's code tell nothing about its failure. All
    of it when every frame is the engine's (then the failure is Tether's own)."""
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename.startswith(_ENGINE):
        first = first.tb_next
    return tb if first is None else first


def task_error(exc: BaseException, step: str | None, *, permanent: bool) -> TaskError:
    """Why a task failed, from the exception that ended it (`step`: where, if a step)."""
    d = describe(exc)
    return TaskError(d.type, d.message, fingerprint(d.type, d.message, step), step, permanent)


def attempt_error(
    exc: BaseException,
    attempt: int,
    started_at: float | None,
    finished_at: float | None,
    classification: Classification,
    decision: RetryDecision,
    reason: str,
    retry_in: float | None,
) -> AttemptError:
    """One failed attempt of a step, as its record keeps it."""
    d = describe(exc)
    return AttemptError(
        attempt=attempt,
        type=d.type,
        message=d.message,
        traceback=d.traceback,
        started_at=started_at,
        finished_at=finished_at,
        transient=classification.transient,
        classified_by=classification.rule,
        decision=decision,
        reason=reason,
        retry_in=retry_in,
    )


def step_error(attempt: AttemptError, step: str) -> TaskError:
    """The step's `TaskError` for its latest failed attempt (same text, same verdict)."""
    return TaskError(
        attempt.type,
        attempt.message,
        fingerprint(attempt.type, attempt.message, step),
        step,
        permanent=not attempt.transient,
    )


def kept(history: tuple[AttemptError, ...], latest: AttemptError) -> tuple[AttemptError, ...]:
    """`history` with `latest` appended, bounded: the first attempt's error and the
    latest ones, `ATTEMPTS_KEPT` in all."""
    out = (*history, latest)
    if len(out) <= ATTEMPTS_KEPT:
        return out
    return (out[0], *out[len(out) - ATTEMPTS_KEPT + 1 :])
