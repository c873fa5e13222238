"""Exceptions users raise and catch, and the classification that decides retries.

A failure is *transient* when running the same step again may succeed (timeouts,
dropped connections, HTTP 429 and 5xx, rate limits) and *permanent* when it will not
(validation, permission, policy, HTTP 4xx, non-determinism). Only transient failures
are retried; permanent ones fail the step at once and go to review.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.models import Approval


class TetherError(Exception):
    """Base class of every error Tether raises itself."""


class ConfigError(TetherError):
    """The configuration (flags, environment, file) is invalid."""


class DatabaseUnavailable(ConfigError):
    """The database named by the configuration cannot be reached at start (refused
    connection, unknown host, missing database, bad credentials). The message names the
    host and database, never the password."""


class SchemaOutOfDate(TetherError):
    """The database schema is older than this version of Tether: run `tether migrate`."""


class UnknownWorkflow(TetherError):
    """No workflow is registered under the requested name."""


class InputValidationError(TetherError):
    """A task's input does not match its workflow's declared input."""

    def __init__(self, workflow: str, errors: list[dict[str, Any]]) -> None:
        self.workflow = workflow
        self.errors = errors
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())) or 'input'}: {e.get('msg')}"
            for e in errors
        )
        super().__init__(f"invalid input for workflow {workflow!r}: {detail}")


class IdempotencyConflict(TetherError):
    """The idempotency key was already used, within its retention window, for other input."""

    def __init__(self, key: str, task_id: str) -> None:
        self.key = key
        self.task_id = task_id
        super().__init__(
            f"idempotency key {key!r} was already used for task {task_id} with a different input"
        )


class TaskNotFound(TetherError):
    """No task with this id exists for this tenant."""


class InvalidTransition(TetherError):
    """The requested change is not allowed in the task's current state."""


class ApprovalClosed(InvalidTransition):
    """The approval is no longer open; `approval` holds the outcome that stands."""

    def __init__(self, message: str, approval: Approval) -> None:
        super().__init__(message)
        self.approval = approval


class Transient(Exception):
    """Raise from a step to say: this failure may pass, retry the step.

    `retry_after` (seconds), when given, replaces the computed backoff for this attempt
    (for example from an HTTP `Retry-After` header).
    """

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Permanent(Exception):
    """Raise from a step to say: retrying will not help, fail the step now."""


class NonDeterminismError(Permanent):
    """Replay met a different step than the one recorded at this position of the log."""


class StepFailed(Exception):
    """A step failed for good (permanent error or retries exhausted).

    Raised inside the workflow where the step was awaited, so the workflow may catch it
    and compensate; uncaught, it fails the task.
    """

    def __init__(self, step: str, error_type: str, message: str, *, permanent: bool) -> None:
        self.step = step
        self.error_type = error_type
        self.message = message
        self.permanent = permanent
        super().__init__(f"step {step!r} failed: {error_type}: {message}")


class TaskCancelled(Exception):
    """The task was cancelled while the workflow was running."""


class DeadlineExceeded(Permanent):
    """The task ran past its deadline."""


class BudgetExceeded(Permanent):
    """The task spent its retry budget (attempts or wall time)."""


class UnserializableResult(Permanent):
    """A step or workflow returned a value that cannot be stored as JSON."""


# Classification -----------------------------------------------------------------------

Classifier = Callable[[BaseException], bool | None]
"""Returns True for transient, False for permanent, None for "no opinion"."""

_TRANSIENT_NAMES = {
    "TimeoutError",
    "ConnectionError",
    "ConnectionResetError",
    "ConnectionRefusedError",
    "ConnectionAbortedError",
    "BrokenPipeError",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "ConnectError",
    "ReadError",
    "WriteError",
    "RemoteProtocolError",
    "RateLimitError",
    "APITimeoutError",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailableError",
    "OperationalError",
}


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status carried by an exception from httpx, requests or SDKs, if any."""
    for attr in ("status_code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def is_transient(exc: BaseException, extra: list[Classifier] | None = None) -> bool:
    """Decide whether `exc` deserves a retry.

    User classifiers run first; then `Transient`/`Permanent`; then HTTP status codes
    (429 and 5xx transient, other 4xx permanent); then well-known network and timeout
    exception names. Anything else is permanent: an unknown bug is not fixed by
    running it again, and a retry storm hides it.
    """
    for classify in extra or ():
        verdict = classify(exc)
        if verdict is not None:
            return verdict
    if isinstance(exc, Transient):
        return True
    if isinstance(exc, Permanent):
        return False
    status = _http_status(exc)
    if status is not None:
        return status == 429 or status >= 500 or status == 408
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


_VOLATILE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # uuids
    r"|0x[0-9a-f]+"  # addresses
    r"|\d+(\.\d+)?",  # numbers, ports, ids
    re.IGNORECASE,
)


def fingerprint(error_type: str, message: str, step: str | None) -> str:
    """A short stable hash of a failure's root cause, for grouping in the dead-letter queue.

    Numbers, ids and addresses are masked so that "timeout after 30.1s on task 17" and
    "timeout after 29.8s on task 18" land in the same group.
    """
    normalized = _VOLATILE.sub("#", message)[:300]
    raw = f"{error_type}|{step or ''}|{normalized}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


class TaskFailedError(TetherError):
    """`handle.result()` of a task that ended `failed`."""

    def __init__(self, task_id: str, error_type: str, message: str, step: str | None) -> None:
        self.task_id = task_id
        self.error_type = error_type
        self.step = step
        where = f" in step {step!r}" if step else ""
        super().__init__(f"task {task_id} failed{where}: {error_type}: {message}")


class TaskCancelledError(TetherError):
    """`handle.result()` of a task that ended `cancelled`."""


class InvalidWebhook(TetherError):
    """A webhook subscription request is invalid (unknown event type, bad filter); the
    message names the field. A refused URL raises `tether.egress.EgressRefused`."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)
