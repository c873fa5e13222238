"""Standard Webhooks signing: secrets, and the three headers of every delivery.

Each subscription has its own secret, `whsec_` and base64 of 24 random bytes, as the
`standardwebhooks` library expects. A delivery carries `webhook-id` (the same on every
attempt and replay), `webhook-timestamp` (when this attempt was signed, epoch seconds)
and `webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, once per
signing secret, space-separated (during a rotation's overlap, the new and the old), so
`standardwebhooks.Webhook(secret).verify(body, headers)` accepts it with either.
"""

from __future__ import annotations

import base64
import functools
import secrets as random_bytes
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret (`whsec_...`)."""
    return SECRET_PREFIX + base64.b64encode(random_bytes.token_bytes(24)).decode()


@functools.lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)


def signature(webhook_id: str, timestamp: int, body: str, secrets: Sequence[str]) -> str:
    """The `webhook-signature` value: one `v1,...` per secret, space-separated."""
    at = datetime.fromtimestamp(timestamp, UTC)
    return " ".join(_signer(s).sign(webhook_id, at, body) for s in secrets)


def headers(webhook_id: str, body: str, secrets: Sequence[str], now: float) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt signed at `now`."""
    timestamp = int(now)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(webhook_id, timestamp, body, secrets),
    }
