"""Machine credentials for the HTTP API."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ApiKey:
    """A machine credential for the HTTP API. Only a hash of its secret is stored."""

    id: str
    tenant: str
    name: str
    roles: list[str]
    secret_hash: str
    created_at: float
    revoked_at: float | None = None
