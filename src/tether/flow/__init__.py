"""Flow control: the engine-facing policies that decide when work may go on (issue 16,
ADR 87), each a step gate or a claim rule whose state the store keeps, so that it holds
across every worker and server.

- Rate limits (ADR 90): token buckets per integration or model provider (requests and
  tokens a minute), shared or per tenant (`RateLimits`, `RateLimitGate`), and the HTTP
  API's per-tenant submission limit (`SubmitLimiter`).
"""

from tether.flow.buckets import Buckets, FlowHost
from tether.flow.gate import RateLimitGate
from tether.flow.limits import RateLimit, RateLimits
from tether.flow.submits import SubmitLimiter

__all__ = ["Buckets", "FlowHost", "RateLimit", "RateLimitGate", "RateLimits", "SubmitLimiter"]
