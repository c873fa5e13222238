"""The kinds of error the API answers, each with its problem `type` URI (RFC 9457).

Every problem body's `type` is one of these URIs, so a client branches on the kind of
error without parsing its `detail`: `https://tether.dev/problems/idempotency-conflict`.
The URIs are identifiers (absolute, the same on every deployment); `docs/api.md` lists
them, and a test keeps that list and this table equal. A status with no kind of its own
answers `about:blank`, which RFC 9457 reserves for "no more than the status code says".
"""

from __future__ import annotations

from dataclasses import dataclass

PROBLEM_BASE = "https://tether.dev/problems/"


@dataclass(frozen=True)
class ProblemType:
    """One kind of error: its URI's last segment, its HTTP status, a title that is the
    same on every occurrence, and what it means (for docs/api.md)."""

    slug: str
    status: int
    title: str
    meaning: str

    @property
    def uri(self) -> str:
        """The `type` member of the problem body."""
        return PROBLEM_BASE + self.slug


MALFORMED_REQUEST = ProblemType(
    "malformed-request",
    400,
    "Malformed request",
    "The body is not valid JSON, or `Content-Length` is not a number.",
)
UNAUTHENTICATED = ProblemType(
    "unauthenticated",
    401,
    "Unauthenticated",
    "No credential, or one that is malformed, expired, tampered with or revoked "
    "(with `WWW-Authenticate: Bearer`).",
)
FORBIDDEN = ProblemType(
    "forbidden", 403, "Forbidden", "The credential lacks the permission the operation needs."
)
SELF_APPROVAL = ProblemType(
    "self-approval",
    403,
    "The submitter cannot decide",
    "The submitter of a task tried to decide on one of its own task's approvals.",
)
NOT_FOUND = ProblemType("not-found", 404, "Not found", "No such path.")
TASK_NOT_FOUND = ProblemType(
    "task-not-found",
    404,
    "Task not found",
    "No such task for the caller's tenant (another tenant's task answers the same).",
)
APPROVAL_NOT_FOUND = ProblemType(
    "approval-not-found",
    404,
    "Approval not found",
    "No such approval for the caller's tenant (another tenant's answers the same).",
)
WEBHOOK_NOT_FOUND = ProblemType(
    "webhook-not-found",
    404,
    "Webhook subscription not found",
    "No such webhook subscription for the caller's tenant (another tenant's answers the same).",
)
DELIVERY_NOT_FOUND = ProblemType(
    "delivery-not-found",
    404,
    "Webhook delivery not found",
    "No such webhook delivery for the caller's tenant (another tenant's answers the same).",
)
SCHEDULE_NOT_FOUND = ProblemType(
    "schedule-not-found",
    404,
    "Schedule not found",
    "No schedule of that name for the caller's tenant (another tenant's answers the same).",
)
DLQ_GROUP_NOT_FOUND = ProblemType(
    "dlq-group-not-found",
    404,
    "Dead-letter group not found",
    "No dead-letter group with that fingerprint for the caller's tenant (another tenant's "
    "answers the same).",
)
BREAKER_NOT_FOUND = ProblemType(
    "breaker-not-found",
    404,
    "Circuit breaker not found",
    "No circuit breaker is configured on the server for that integration.",
)
METHOD_NOT_ALLOWED = ProblemType(
    "method-not-allowed",
    405,
    "Method not allowed",
    "The path exists, not with this method; the `Allow` header lists the methods it has.",
)
INVALID_TRANSITION = ProblemType(
    "invalid-transition",
    409,
    "Not allowed in the task's state",
    "The task's state does not allow it: cancelling or signalling a task that has ended.",
)
ALREADY_DECIDED = ProblemType(
    "already-decided",
    409,
    "Already decided by this reviewer",
    "The caller already decided on this approval; the body's `approval` member is the "
    "approval as it stands.",
)
APPROVAL_CLOSED = ProblemType(
    "approval-closed",
    409,
    "Approval closed",
    "The approval was already decided, or its timeout passed; the body's `approval` "
    "member is the outcome that stands.",
)
WEBHOOK_DISABLED = ProblemType(
    "webhook-disabled",
    409,
    "Webhook subscription disabled",
    "Retry or replay of a disabled subscription's deliveries: enable it first.",
)
DELIVERY_IN_FLIGHT = ProblemType(
    "delivery-in-flight",
    409,
    "Delivery in flight",
    "The webhook delivery is being sent right now; its outcome decides what comes next.",
)
INVALID_ROLLOUT = ProblemType(
    "invalid-rollout",
    409,
    "Rollout refused",
    "The rollout cannot be, given the registered versions and the rollout as it stands: "
    "a version the server does not register, a canary of the stable version, or no "
    "canary to promote or roll back.",
)
BREAKER_CONFLICT = ProblemType(
    "breaker-conflict",
    409,
    "Breaker is the fleet's",
    "Closing a breaker that is open for every tenant: it closes after a successful "
    "probe, or by hand on the database; a tenant closes only its own.",
)
SCHEDULE_EXISTS = ProblemType(
    "schedule-exists",
    409,
    "Schedule exists",
    "The tenant has a schedule of that name already: delete it first, or pick another name.",
)
BODY_TOO_LARGE = ProblemType(
    "body-too-large", 413, "Body too large", "The request body is over `max_body_bytes`."
)
UNSUPPORTED_MEDIA_TYPE = ProblemType(
    "unsupported-media-type",
    415,
    "Unsupported media type",
    "A request body under `/v1/` that is not `application/json` (or `+json`).",
)
INVALID_REQUEST = ProblemType(
    "invalid-request",
    422,
    "Invalid request",
    "A field of the body, a query parameter, a path segment or a header is invalid, or "
    "breaks the input rules (a NUL, `NaN`, an integer beyond 64 bits: see Input rules); "
    "`errors` names each one.",
)
UNKNOWN_WORKFLOW = ProblemType(
    "unknown-workflow", 422, "Unknown workflow", "No workflow of that name is registered."
)
INVALID_INPUT = ProblemType(
    "invalid-input",
    422,
    "Invalid input",
    "The input does not fit the workflow's signature; `errors` names every problem and "
    "nothing was stored.",
)
WORKFLOW_NOT_FOUND = ProblemType(
    "workflow-not-found",
    404,
    "Workflow not found",
    "No workflow of that name is registered on the server (a `/v1/workflows/{workflow}` path).",
)
IDEMPOTENCY_CONFLICT = ProblemType(
    "idempotency-conflict",
    422,
    "Idempotency key reused",
    "The `Idempotency-Key` was used before with a different submission (or another "
    "dead-letter action).",
)
URL_REFUSED = ProblemType(
    "url-refused",
    422,
    "URL refused",
    "The egress guard refuses the URL (not https and not allowlisted, credentials in it, "
    "or a name resolving to a loopback, private, link-local, metadata or other internal "
    "address); `errors` names the field and why. Nothing was stored or sent.",
)
INVALID_CURSOR = ProblemType(
    "invalid-cursor",
    422,
    "Invalid cursor",
    "The `cursor` is not one this list returned as `next_cursor`.",
)
RATE_LIMITED = ProblemType(
    "rate-limited",
    429,
    "Rate limit reached",
    "The tenant's submission rate limit; retry after `Retry-After` seconds.",
)
INTERNAL_ERROR = ProblemType(
    "internal-error",
    500,
    "Internal error",
    "Unexpected; logged on the server with its trace, the body says nothing more.",
)
UNAVAILABLE = ProblemType(
    "unavailable",
    503,
    "Unavailable",
    "The database is unreachable or cannot be written; retry after `Retry-After` seconds "
    "(a submit with the same `Idempotency-Key`). `/readyz` says why.",
)

PROBLEM_TYPES: tuple[ProblemType, ...] = (
    MALFORMED_REQUEST,
    UNAUTHENTICATED,
    FORBIDDEN,
    SELF_APPROVAL,
    NOT_FOUND,
    TASK_NOT_FOUND,
    APPROVAL_NOT_FOUND,
    WEBHOOK_NOT_FOUND,
    DELIVERY_NOT_FOUND,
    SCHEDULE_NOT_FOUND,
    WORKFLOW_NOT_FOUND,
    DLQ_GROUP_NOT_FOUND,
    BREAKER_NOT_FOUND,
    METHOD_NOT_ALLOWED,
    INVALID_TRANSITION,
    ALREADY_DECIDED,
    APPROVAL_CLOSED,
    WEBHOOK_DISABLED,
    DELIVERY_IN_FLIGHT,
    INVALID_ROLLOUT,
    BREAKER_CONFLICT,
    SCHEDULE_EXISTS,
    BODY_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    INVALID_REQUEST,
    UNKNOWN_WORKFLOW,
    INVALID_INPUT,
    IDEMPOTENCY_CONFLICT,
    URL_REFUSED,
    INVALID_CURSOR,
    RATE_LIMITED,
    INTERNAL_ERROR,
    UNAVAILABLE,
)
"""Every kind, in the order docs/api.md lists them."""

BY_STATUS: dict[int, ProblemType] = {
    400: MALFORMED_REQUEST,
    401: UNAUTHENTICATED,
    403: FORBIDDEN,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    409: INVALID_TRANSITION,
    413: BODY_TOO_LARGE,
    415: UNSUPPORTED_MEDIA_TYPE,
    422: INVALID_REQUEST,
    429: RATE_LIMITED,
    500: INTERNAL_ERROR,
    503: UNAVAILABLE,
}
"""The kind a problem raised with a bare status gets."""


def of_status(status: int) -> ProblemType | None:
    """The kind of a bare status, or None (then the problem is `about:blank`)."""
    return BY_STATUS.get(status)
