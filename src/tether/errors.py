"""Exceptions users raise and catch, and the classification that decides retries.

A failure is *transient* when running the same step again may succeed (timeouts,
dropped connections, HTTP 429 and 5xx, rate limits) and *permanent* when it will not
(validation, permission, policy, HTTP 4xx, non-determinism). Only transient failures
are retried; permanent ones fail the step at once and go to review.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.retry import RETRY_AFTER_MAX, retry_after_from_headers

if TYPE_CHECKING:
    from tether.models import Approval, TaskError


class TetherError(Exception):
    """Base class of every error Tether raises itself."""


class ConfigError(TetherError):
    """The configuration (flags, environment, file) is invalid."""


class DatabaseUnavailable(ConfigError):
    """The database named by the configuration cannot be reached at start (refused
    connection, unknown host, missing database, bad credentials). The message names the
    host and database, never the password."""


class StoreUnavailable(TetherError):
    """The database cannot be used right now: a refused or broken connection, no pooled
    connection within `pool_timeout`, a read-only, full or failing disk. Transient: the
    same operation may succeed once the database is back (ADR 71).

    A write that failed this way while its commit was under way is in doubt: it may have
    committed. Tether's own retries are fenced or idempotent; a client retrying a submit
    presents the same `Idempotency-Key`. The message names the database (never a
    password); `reason` is the cause alone, for readers who must not learn the host."""

    retry_after: float = 1.0
    """Seconds a caller is asked to wait before trying again (the API's `Retry-After`)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class SchemaOutOfDate(TetherError):
    """The database schema is older than this version of Tether: run `tether migrate`."""


class UnknownWorkflow(TetherError):
    """No workflow is registered under the requested name."""


class UnknownStep(TetherError):
    """No step is declared with `@app.step` under the requested name (a compensation
    names one)."""


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


class NotStorable(TetherError, ValueError):
    """A value given to Tether breaks the rules of what it stores (`tether.storable`): a
    NUL character or a lone surrogate in a string, a NaN or infinite number, an integer
    outside -2**63 .. 2**64 - 1, or nesting deeper than 128.

    `field` names the argument (`payload`, `changes`, `correlation_id`, ...), `loc` the
    place inside it (keys and list indexes; empty for the argument itself), `reason` what
    is wrong there and `kind` a short code (`string_nul`, `int_range`, ...)."""

    def __init__(self, field: str, loc: tuple[str | int, ...], reason: str, kind: str) -> None:
        self.field = field
        self.loc = loc
        self.reason = reason
        self.kind = kind
        where = ".".join(str(p) for p in (field, *loc))
        super().__init__(f"{where}: {reason}")


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

    def __init__(
        self,
        step: str,
        error_type: str,
        message: str,
        *,
        permanent: bool,
        traceback: str | None = None,
    ) -> None:
        self.step = step
        self.error_type = error_type
        self.message = message
        self.permanent = permanent
        self.traceback = traceback
        """The bounded traceback of the step's last attempt (as its record keeps it)."""
        super().__init__(f"step {step!r} failed: {error_type}: {message}")


class ChildFailed(Permanent):
    """A child task (`ctx.child`, `ctx.start_child`) failed or was cancelled.

    Raised in the parent where the child's outcome is awaited, so the parent may catch
    it (and compensate, or start another); uncaught, it fails the parent. `error` is the
    child's own error (None for a cancellation)."""

    def __init__(
        self, child_id: str, workflow: str, status: str, error: TaskError | None = None
    ) -> None:
        self.child_id = child_id
        self.workflow = workflow
        self.status = status
        """`failed` or `cancelled`."""
        self.error = error
        what = "was cancelled" if error is None else f"failed: {error.type}: {error.message}"
        super().__init__(f"child task {child_id} (workflow {workflow!r}) {what}")


class TaskCancelled(Exception):
    """The task was cancelled while the workflow was running."""


class DeadlineExceeded(Permanent):
    """The task ran past its deadline."""


class BudgetExceeded(Permanent):
    """A spend budget cannot cover a step (`Budget(on_exhausted="fail")`, or a raise
    that was refused): the step fails with it, and uncaught, the task fails with the
    decision `budget_exceeded` (docs/flow-control.md)."""


class SyncStepStuck(Permanent):
    """A sync step ran past its timeout and its thread had still not returned after as
    long again. A thread cannot be interrupted, so rather than start a retry beside it
    the step fails for good; the thread is left to finish and its result is dropped
    (ADR 66). Never retried, whatever a classifier says."""


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
    "StoreUnavailable",
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


def retry_after(exc: BaseException) -> float | None:
    """The wait, in seconds, a failure asks for before its retry, or None.

    `Transient(retry_after=)` first; else the `Retry-After` (or `retry-after-ms`) header
    of the response the exception carries: httpx's `HTTPStatusError`, requests'
    `HTTPError`, the OpenAI and Anthropic SDKs' status errors all have `.response
    .headers`. Found by duck typing, so no HTTP library is imported here. Capped at
    `tether.retry.RETRY_AFTER_MAX`.
    """
    if isinstance(exc, Transient) and exc.retry_after is not None:
        return min(max(0.0, exc.retry_after), RETRY_AFTER_MAX)
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        headers = getattr(exc, "headers", None)  # aiohttp's ClientResponseError and kin
    return None if headers is None else retry_after_from_headers(headers)


@dataclass(frozen=True)
class Classification:
    """Whether a failure is transient, and the rule that said so (see `classify`)."""

    transient: bool
    rule: str
    """`classifier <name>`, `Transient`, `Permanent`, `HTTP <status>`, `network or
    timeout error`, `known transient type <name>`, or `default`."""


def classify(exc: BaseException, extra: Sequence[Classifier] | None = None) -> Classification:
    """Decide whether `exc` deserves a retry, and say which rule decided.

    User classifiers run first; then `Transient`/`Permanent`; then HTTP status codes
    (408, 429 and 5xx transient, other 4xx permanent); then well-known network and
    timeout exception names. Anything else is permanent (`default`): an unknown bug is
    not fixed by running it again, and a retry storm hides it.
    """
    for classifier in extra or ():
        verdict = classifier(exc)
        if verdict is not None:
            name = getattr(classifier, "__qualname__", None) or repr(classifier)
            return Classification(bool(verdict), f"classifier {name}")
    if isinstance(exc, Transient):
        return Classification(True, "Transient")
    if isinstance(exc, Permanent):
        return Classification(False, "Permanent")
    status = _http_status(exc)
    if status is not None:
        return Classification(status == 429 or status >= 500 or status == 408, f"HTTP {status}")
    if isinstance(exc, TimeoutError | ConnectionError):
        return Classification(True, "network or timeout error")
    for cls in type(exc).__mro__:
        if cls.__name__ in _TRANSIENT_NAMES:
            return Classification(True, f"known transient type {cls.__name__}")
    return Classification(False, "default")


def is_transient(exc: BaseException, extra: Sequence[Classifier] | None = None) -> bool:
    """Whether `exc` deserves a retry: `classify(exc, extra).transient`."""
    return classify(exc, extra).transient


_VOLATILE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # uuids
    r"|0x[0-9a-f]+"  # addresses
    r"|\b[\w-]*\d[\w.-]*\b",  # words with a digit: numbers (2.5s), ports, ids (cus_8Kq2)
    re.IGNORECASE,
)


def fingerprint(error_type: str, message: str, step: str | None) -> str:
    """A short stable hash of a failure's root cause, for grouping in the dead-letter queue.

    UUIDs, addresses and every word holding a digit (numbers, ports, ids such as
    `order-8812` or `cus_N5fr2`) are masked, so that "timeout after 30.1s on task 17" and
    "timeout after 29.8s on task 18" land in the same group; the error type and the step
    are part of it, so the same message from another step is another group.
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


class WebhookDisabled(InvalidTransition):
    """Retry or replay asked of a disabled webhook subscription: enable it first."""


class DeliveryInFlight(InvalidTransition):
    """A webhook delivery is being sent right now (a retry must wait for its outcome)."""


class InvalidSchedule(TetherError):
    """A schedule is invalid (a cron expression, time zone, name, policy or input that
    does not fit); `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class ScheduleNotFound(TetherError):
    """No schedule of that name for the tenant (another tenant's does not exist)."""


class ScheduleExists(TetherError):
    """A schedule of that name exists already for the tenant (delete it first)."""


class DlqGroupNotFound(TetherError):
    """No dead-letter group with that fingerprint for the tenant (another tenant's does
    not exist)."""


class InvalidDlqAction(TetherError):
    """A dead-letter action that cannot be taken as asked (an unknown action, an
    escalation without an assignee, a dismissal without a reason, too many tasks);
    `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class DlqKeyConflict(TetherError):
    """A dead-letter action's idempotency key was used before for another request."""


class BreakerNotFound(TetherError):
    """No circuit breaker is configured for that integration (`app.breaker`, the
    `breakers` setting)."""


class BreakerConflict(TetherError):
    """A change the breaker's state does not allow: closing, from one tenant, a breaker
    that is open for every tenant (only who holds the database closes that one)."""
