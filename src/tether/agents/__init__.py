"""Agents: model calls as durable steps (issue 19, ADR 86).

`tether.agents.openai` (Chat Completions and Responses, any OpenAI-compatible server)
and `tether.agents.anthropic` (Messages) run a model call as a step: recorded once,
replayed without calling the model again, its usage and cost (`ModelUsage`) in the
step's meta, its failures classified (`tether.agents.errors`), the agent run held to
its `AgentLimits`. The SDKs are an optional extra (`pip install 'tether[agents]'`) and
are imported only when a call is made: importing this package needs neither.
"""

from tether.agents.errors import (
    AgentLimitExceeded,
    ContextLengthExceeded,
    ModelAuthError,
    ModelCallError,
    ModelOverloaded,
    ModelPermanent,
    ModelQuotaExceeded,
    ModelRateLimited,
    ModelRefused,
    ModelRequestInvalid,
    ModelTransient,
    ModelUnavailable,
    classify_model_error,
)
from tether.agents.limits import AgentLimits
from tether.agents.prices import DEFAULT_PRICES, ModelPrice, PriceTable
from tether.agents.usage import META_KEY, REVIEW_KEY, ModelUsage

__all__ = [
    "DEFAULT_PRICES",
    "META_KEY",
    "REVIEW_KEY",
    "AgentLimitExceeded",
    "AgentLimits",
    "ContextLengthExceeded",
    "ModelAuthError",
    "ModelCallError",
    "ModelOverloaded",
    "ModelPermanent",
    "ModelPrice",
    "ModelQuotaExceeded",
    "ModelRateLimited",
    "ModelRefused",
    "ModelRequestInvalid",
    "ModelTransient",
    "ModelUnavailable",
    "ModelUsage",
    "PriceTable",
    "classify_model_error",
]
