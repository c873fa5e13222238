"""`ModelUsage`: what one model call used and cost, as its step's record keeps it.

Every model call made through `tether.agents` leaves this record in its step's `meta`
under `model_call` (so `app.steps(id)`, `GET /v1/tasks/{id}/steps` and the step's
`step.succeeded` / `step.failed` event all carry it). It never holds the prompt, the
API key or any header: the response itself is the step's result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

META_KEY = "model_call"
"""The key of a step's `meta` that holds its `ModelUsage`."""

REVIEW_KEY = "review"
"""The key of a step's `meta` that flags it for a human look; its value says why
(`model_refusal`: the model refused the request)."""


@dataclass(frozen=True)
class ModelUsage:
    """One model call: who served it, what it used, what it cost, how it ended."""

    provider: str
    """`openai` (any server speaking the OpenAI protocol) or `anthropic`."""
    operation: str
    """The API called: `chat.completions`, `responses` or `messages`."""
    model: str
    """The model the call asked for."""
    served_model: str | None
    """The model the server says answered (often a dated version of `model`)."""
    input_tokens: int
    """Every input token, cached and cache-writing ones included."""
    output_tokens: int
    """Output tokens, reasoning tokens included."""
    cached_input_tokens: int
    """Input tokens read from the provider's prompt cache."""
    cache_write_tokens: int
    """Input tokens written to the prompt cache (Anthropic)."""
    cost: float | None
    """US dollars, from the price table (`tether.agents.prices`); None when the table
    does not know the model. This is what budgets will charge."""
    latency: float
    """Seconds from sending the request to the last byte of its answer (a stream
    included)."""
    request_id: str | None
    """The provider's id of the request (`x-request-id`, `request-id`): quote it to
    their support."""
    finish_reason: str | None
    """Why the model stopped (`stop`, `length`, `tool_calls`, `end_turn`, `refusal`,
    ...); None for a call that failed without an answer."""
    streamed: bool
    """Whether the answer came as a stream (the final message is what is recorded)."""
    status: int | None = None
    """The HTTP status of a call that failed, None for one that answered."""

    def to_meta(self) -> dict[str, Any]:
        """This record as the JSON a step's `meta` keeps."""
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> ModelUsage | None:
        """The usage a step's `meta` holds (`StepRecord.meta`), or None for a step that
        is not a model call."""
        data = meta.get(META_KEY)
        if not isinstance(data, dict):
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
