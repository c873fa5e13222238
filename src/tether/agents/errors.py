"""How a model call fails, in words that decide its retry.

The wrappers (`tether.agents.openai`, `tether.agents.anthropic`) turn what the SDKs
raise into one of the classes below, so that a step's stored error says what happened
in the same words for every provider (`ModelRateLimited`, `ContextLengthExceeded`,
...), the dead-letter queue groups them so, and the retry follows from the class:

| class | when | retried |
|---|---|---|
| `ModelRateLimited` | 429 (not a spent quota) | yes, after `Retry-After` if given |
| `ModelOverloaded` | Anthropic's 529 / `overloaded_error`, also mid-stream | yes, ditto |
| `ModelUnavailable` | 5xx, 408, a dropped connection or a timeout | yes, ditto |
| `ContextLengthExceeded` | the prompt does not fit the model's context | no |
| `ModelRefused` | the model refused (content filter, safety refusal) | no; flagged for review |
| `ModelAuthError` | 401 / 403: the key is wrong, revoked, or not allowed | no |
| `ModelQuotaExceeded` | 429 `insufficient_quota`, Anthropic billing errors | no |
| `ModelRequestInvalid` | any other 4xx (bad parameter, unknown model) | no |

Classes are found by duck typing (status, error body, class names), so this module
imports no SDK. `classify_model_error` is the same knowledge as a classifier, for
steps that call the SDKs themselves: `Tether(classifiers=[classify_model_error])`.
Messages never hold the client's API key: the wrappers cut it out of whatever the
server sent back (`scrub`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tether.errors import Permanent, TetherError, Transient, retry_after


class ModelCallError(TetherError):
    """A model call failed. `provider`, `status` (HTTP, None without an answer),
    `code` (the provider's error code or type) and `request_id` say where."""

    review: bool = False
    """Whether the failure wants a human look (the step's meta says `review`)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.code = code
        self.request_id = request_id


class ModelTransient(ModelCallError, Transient):
    """A model call failure that may pass: retried, after `retry_after` when set."""

    def __init__(self, message: str, *, retry_after: float | None = None, **where: Any) -> None:
        ModelCallError.__init__(self, message, **where)
        self.retry_after = retry_after


class ModelRateLimited(ModelTransient):
    """429: too many requests or tokens for now."""


class ModelOverloaded(ModelTransient):
    """The provider is overloaded (Anthropic's 529 `overloaded_error`)."""


class ModelUnavailable(ModelTransient):
    """A server error (5xx), a request timeout (408), a dropped connection or a timeout."""


class ModelPermanent(ModelCallError, Permanent):
    """A model call failure that another try will not fix."""


class ContextLengthExceeded(ModelPermanent):
    """The prompt (with `max_tokens`) does not fit the model's context window."""


class ModelRefused(ModelPermanent):
    """The model refused: a content filter stopped it or it declined to answer.
    Flagged for review: the step's meta holds `review: "model_refusal"`."""

    review = True


class ModelAuthError(ModelPermanent):
    """401 or 403: the API key is missing, wrong, revoked or not allowed this."""


class ModelQuotaExceeded(ModelPermanent):
    """The account's quota or spend limit is used up (a 429 that waiting will not fix)."""


class ModelRequestInvalid(ModelPermanent):
    """The provider refused the request itself (400, 404, 422: a bad parameter, an
    unknown model)."""


class AgentLimitExceeded(Permanent):
    """A call would pass a limit of the agent run (`AgentLimits`): its turns, its wall
    clock or its per-call `max_tokens`. Raised in the workflow, before any request is
    sent. `limit` names which (`max_turns`, `max_seconds`, `max_tokens`)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


_CONTEXT_CODES = {"context_length_exceeded", "string_above_max_length"}
_CONTEXT_WORDS = (
    "context length",
    "context window",
    "prompt is too long",
    "maximum context",
    "too many tokens",
)
_REFUSAL_CODES = {"content_filter", "content_policy_violation"}
_QUOTA_CODES = {"insufficient_quota", "billing_error", "billing_hard_limit_reached"}
_TRANSIENT_NAMES = {"APIConnectionError", "APITimeoutError", "TimeoutException", "NetworkError"}


def _error_body(exc: BaseException) -> Mapping[str, Any]:
    """The provider's error object: OpenAI's SDK keeps it as `body`, Anthropic's as
    `body["error"]`."""
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error")
        return inner if isinstance(inner, Mapping) else body
    return {}


def _status(exc: BaseException) -> int | None:
    value = getattr(exc, "status_code", None)
    return value if isinstance(value, int) else None


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret in `secrets` replaced by `[redacted]`."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, "[redacted]")
    return text


def model_failure(
    exc: BaseException, provider: str, secrets: Iterable[str] = ()
) -> ModelCallError | None:
    """The `ModelCallError` an SDK's exception means, or None for one that is not a
    failure of the call (a bug in the caller's code, say): let that one propagate."""
    if isinstance(exc, ModelCallError):
        return exc
    body = _error_body(exc)
    status = _status(exc)
    code = body.get("code") or body.get("type")
    code = str(code) if code is not None else None
    text = body.get("message")
    if not isinstance(text, str) or not text:
        text = str(exc) or type(exc).__name__
    request_id = getattr(exc, "request_id", None)
    if request_id is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or {}
        request_id = headers.get("x-request-id") or headers.get("request-id")
    where: dict[str, Any] = {
        "provider": provider,
        "status": status,
        "code": code,
        "request_id": request_id,
    }
    shown = f"{status} " if status is not None and status != 200 else ""
    label = f"{provider} {shown}{code or type(exc).__name__}"
    message = scrub(
        f"{label}: {text}" + (f" (request {request_id})" if request_id else ""), secrets
    )
    cls = _failure_class(exc, status, code, text.lower())
    if cls is None:
        return None
    if issubclass(cls, ModelTransient):
        return cls(message, retry_after=retry_after(exc), **where)
    return cls(message, **where)


def _failure_class(
    exc: BaseException, status: int | None, code: str | None, text: str
) -> type[ModelCallError] | None:
    if code in _QUOTA_CODES or (status == 402):
        return ModelQuotaExceeded
    if code == "overloaded_error" or status == 529:
        return ModelOverloaded
    if status == 429 or code in ("rate_limit_error", "rate_limit_exceeded"):
        return ModelRateLimited
    if code in ("api_error", "server_error") or (status is not None and status >= 500):
        return ModelUnavailable
    if status == 408 or code == "timeout_error":
        return ModelUnavailable
    if status in (401, 403) or code in ("authentication_error", "permission_error"):
        return ModelAuthError
    if code in _CONTEXT_CODES or any(w in text for w in _CONTEXT_WORDS):
        return ContextLengthExceeded
    if code in _REFUSAL_CODES:
        return ModelRefused
    if status is not None and 400 <= status < 500:
        return ModelRequestInvalid
    if isinstance(exc, TimeoutError | ConnectionError) or any(
        c.__name__ in _TRANSIENT_NAMES for c in type(exc).__mro__
    ):
        return ModelUnavailable
    return None


def classify_model_error(exc: BaseException) -> bool | None:
    """A failure classifier (`Tether(classifiers=[...])`) that knows the OpenAI and
    Anthropic SDKs' errors: True for transient, False for permanent, None for an
    exception that is not a model call's. It differs from the default rules where
    they would be wrong: a spent quota's 429 is permanent, an overload reported
    inside a stream (HTTP 200) is transient."""
    failure = model_failure(exc, "model")
    return None if failure is None else isinstance(failure, Transient)
