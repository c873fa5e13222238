"""`tether.failures`: the one place an exception becomes stored text, and its bounds;
`tether.errors.classify`: which rule classified a failure."""

from __future__ import annotations

import pytest

from tether import Permanent, Transient
from tether.errors import Classification, classify
from tether.failures import (
    ATTEMPTS_KEPT,
    MESSAGE_CHARS,
    TRACEBACK_CHARS,
    TRACEBACK_FRAMES,
    attempt_error,
    describe,
    kept,
    task_error,
)
from tether.models import AttemptError, RetryDecision


def _raise_deep(depth: int, message: str) -> None:
    if depth == 0:
        raise ValueError(message)
    _and_deeper(depth - 1, message)


def _and_deeper(depth: int, message: str) -> None:
    # Two functions in turn: Python folds runs of one repeated frame into one line.
    _raise_deep(depth, message)


def _caught(depth: int, message: str = "boom") -> ValueError:
    try:
        _raise_deep(depth, message)
    except ValueError as exc:
        return exc
    raise AssertionError("unreachable")


def test_a_raised_exception_keeps_its_traceback() -> None:
    d = describe(_caught(2, "bad input"))
    assert (d.type, d.message) == ("ValueError", "bad input")
    assert d.traceback is not None
    assert d.traceback.startswith("Traceback (most recent call last):")
    assert "_raise_deep" in d.traceback and d.traceback.rstrip().endswith("ValueError: bad input")


def test_an_exception_never_raised_has_no_traceback_and_an_empty_message_its_type() -> None:
    d = describe(KeyError())
    assert d == describe(KeyError())  # plain data
    assert d.traceback is None and d.message == "KeyError"


def test_the_traceback_keeps_its_last_frames_and_says_how_many_it_cut() -> None:
    depth = TRACEBACK_FRAMES
    d = describe(_caught(depth))
    assert d.traceback is not None
    assert d.traceback.count('  File "') == TRACEBACK_FRAMES
    frames = 1 + (depth + 1) + depth  # _caught, then _raise_deep and _and_deeper in turn
    assert d.traceback.splitlines()[0] == f"({frames - TRACEBACK_FRAMES} earlier frames cut)"
    assert d.traceback.rstrip().endswith("ValueError: boom")  # the end, where the error is


def test_the_traceback_keeps_its_last_characters() -> None:
    many_lines = "\n".join(f"line {i} " + "x" * 90 for i in range(3 * TRACEBACK_CHARS // 90))
    d = describe(_caught(1, many_lines))
    assert d.traceback is not None
    head, tail = d.traceback.split("\n", 1)
    assert head.startswith("… (") and head.endswith(" characters cut)")
    assert len(tail) == TRACEBACK_CHARS
    assert tail.rstrip().endswith(many_lines[-200:])


def test_a_huge_message_leaves_the_traceback_its_frames() -> None:
    d = describe(_caught(3, "y" * (3 * TRACEBACK_CHARS)))
    assert d.traceback is not None and len(d.traceback) < TRACEBACK_CHARS
    assert d.traceback.count("in _raise_deep") == 4
    assert d.traceback.rstrip().endswith(
        f"… ({3 * TRACEBACK_CHARS - MESSAGE_CHARS + 12} characters cut)"
    )


def test_the_message_keeps_its_first_characters() -> None:
    d = describe(ValueError("y" * (MESSAGE_CHARS + 250)))
    assert d.message == "y" * MESSAGE_CHARS + "… (250 characters cut)"
    assert describe(ValueError("short")).message == "short"


def test_a_broken_str_does_not_hide_the_failure() -> None:
    class Odd(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    d = describe(Odd())
    assert d.type == "Odd" and "cannot be read" in d.message


def test_a_chained_cause_is_kept() -> None:
    try:
        try:
            _raise_deep(0, "root cause")
        except ValueError as exc:
            raise RuntimeError("wrapper") from exc
    except RuntimeError as outer:
        d = describe(outer)
    assert d.traceback is not None
    assert "ValueError: root cause" in d.traceback and "RuntimeError: wrapper" in d.traceback


def test_task_error_and_attempt_error_use_the_same_text() -> None:
    exc = _caught(0, "z" * (MESSAGE_CHARS + 1))
    err = task_error(exc, "parse", permanent=True)
    attempt = attempt_error(
        exc, 1, 1.0, 2.0, Classification(False, "default"), RetryDecision.GIVE_UP, "permanent", None
    )
    assert err.message == attempt.message == describe(exc).message
    assert attempt.traceback == describe(exc).traceback
    assert attempt.to_json()["decision"] == "give_up"
    assert type(attempt).from_json(attempt.to_json()) == attempt


def test_a_step_keeps_its_first_and_latest_attempts() -> None:
    def attempt(n: int) -> AttemptError:
        return attempt_error(
            ValueError(str(n)), n, 0.0, 0.0, Classification(True, "x"), RetryDecision.RETRY, "", 0
        )

    history: tuple[AttemptError, ...] = ()
    for n in range(1, ATTEMPTS_KEPT + 6):
        history = kept(history, attempt(n))
    assert len(history) == ATTEMPTS_KEPT
    assert [a.attempt for a in history] == [1, *range(7, ATTEMPTS_KEPT + 6)]


class HTTPError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class ReadTimeout(Exception):
    """Named like httpx's, without being a TimeoutError."""


def quota(exc: BaseException) -> bool | None:
    return True if "quota" in str(exc) else None


@pytest.mark.parametrize(
    ("exc", "transient", "rule"),
    [
        (ValueError("quota exceeded"), True, "classifier quota"),
        (Transient("later"), True, "Transient"),
        (Permanent("never"), False, "Permanent"),
        (HTTPError(503), True, "HTTP 503"),
        (HTTPError(404), False, "HTTP 404"),
        (ConnectionResetError(), True, "network or timeout error"),
        (ReadTimeout(), True, "known transient type ReadTimeout"),
        (KeyError("x"), False, "default"),
    ],
)
def test_classify_names_the_rule_that_decided(
    exc: BaseException, transient: bool, rule: str
) -> None:
    assert classify(exc, [quota]) == Classification(transient, rule)
