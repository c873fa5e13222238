"""Application services: the queries, read models and actions that every surface (the
HTTP API, the CLI, and later the console) calls. A surface never reaches into the store
itself: the import contracts in `make test` say so.

Operations on tasks and approvals are the facade's own methods (`Tether.submit`, `get`,
`cancel`, `signal`, `rerun`, `approvals`, `decide`, ...); the modules here hold the
rest, each a few async functions of a `Tether` app, one module per concern.
"""

from tether.services import (
    admin,
    api_keys,
    approvals,
    breakers,
    dlq,
    health,
    hooks,
    rate_limits,
    schedules,
    webhooks,
)

__all__ = [
    "admin",
    "api_keys",
    "approvals",
    "breakers",
    "dlq",
    "health",
    "hooks",
    "rate_limits",
    "schedules",
    "webhooks",
]
