"""Flow control: the engine policies, built on its step gates (`tether.engine.gates`,
ADR 87), whose state the store keeps so that they hold across every worker and server.

- Rate limits (ADR 90): token buckets per integration or model provider (requests and
  tokens a minute), shared or per tenant (`RateLimits`, `RateLimitGate`), and the HTTP
  API's per-tenant submission limit (`SubmitLimiter`).
- `breakers`: circuit breakers per integration (ADR 91);
- `step_limits`: fleet-wide limits of running steps per integration (ADR 91);
- `integrations`: the one gate that asks both, in order, for a step's integration.
- Budgets (`budgets.py`, `spending.py`; ADR 92) keep steps within their spend limits in
  money and tokens (`BudgetBook`, `SpendGate`).

See docs/flow-control.md.
"""

from tether.flow.buckets import Buckets, FlowHost
from tether.flow.budgets import BudgetBook
from tether.flow.gate import RateLimitGate
from tether.flow.limits import RateLimit, RateLimits
from tether.flow.spending import SpendGate
from tether.flow.submits import SubmitLimiter

__all__ = [
    "Buckets",
    "BudgetBook",
    "FlowHost",
    "RateLimit",
    "RateLimitGate",
    "RateLimits",
    "SpendGate",
    "SubmitLimiter",
]
