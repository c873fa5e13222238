"""Outbound webhooks: subscriptions' events, signed per Standard Webhooks, delivered
from a durable outbox by dispatchers that run in workers and servers.

- `signing`: secrets and the `webhook-*` headers.
- `payload`: the body (the event and its task's summary) and the `webhook-id`.
- `fanout`: which subscriptions an event goes to (the plan the store's fan-out runs).
- `dispatcher`: the fan-out and delivery loops, retries and disabling.

Managing subscriptions and replaying deliveries is `tether.services.webhooks` (what the
API, the CLI and `tether.Client` call). See docs/webhooks.md and ADRs 67 and 68.
"""

from tether.webhooks.dispatcher import DisabledHook, DispatchConfig, Dispatcher

__all__ = ["DisabledHook", "DispatchConfig", "Dispatcher"]
