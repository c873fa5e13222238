"""Authentication and roles for the HTTP API: JWT bearer tokens and hashed API keys.

A caller is a `Principal`: a subject, a tenant and a set of roles. Bearer tokens are JWTs
carrying `sub`, `tenant`, `roles` and `exp`, signed HS256 with the configured secret or,
when a JWKS URL is configured, RS256/ES256 with the issuer's published keys. API keys
(`tth_<id>_<secret>`) are for machines; only a SHA-256 of the secret is stored.

Permission matrix (what each role may do; `admin` may do everything):

| permission         | viewer | submitter | approver | operator | admin |
|--------------------|:------:|:---------:|:--------:|:--------:|:-----:|
| tasks:read         |   x    |     x     |    x     |    x     |   x   |
| tasks:submit       |        |     x     |          |          |   x   |
| tasks:cancel       |        |     x     |          |    x     |   x   |
| tasks:signal       |        |     x     |          |    x     |   x   |
| tasks:rerun        |        |           |          |    x     |   x   |
| tasks:compensate   |        |           |          |    x     |   x   |
| approvals:read     |   x    |           |    x     |    x     |   x   |
| approvals:decide   |        |           |    x     |          |   x   |
| apikeys:manage     |        |           |          |          |   x   |
| metrics:read       |        |           |          |    x     |   x   |
| webhooks:read      |        |           |          |    x     |   x   |
| webhooks:replay    |        |           |          |    x     |   x   |
| webhooks:manage    |        |           |          |          |   x   |
| schedules:read     |   x    |           |          |    x     |   x   |
| schedules:run      |        |           |          |    x     |   x   |
| schedules:manage   |        |           |          |          |   x   |
| workflows:read     |   x    |           |          |    x     |   x   |
| workflows:manage   |        |           |          |          |   x   |
| dlq:read           |   x    |           |          |    x     |   x   |
| dlq:act            |        |           |          |    x     |   x   |
| breakers:read      |   x    |           |          |    x     |   x   |
| breakers:operate   |        |           |          |    x     |   x   |

`schedules:run` pauses, resumes and triggers a schedule; `schedules:manage` creates and
deletes one (a schedule starts tasks for ever: like a standing submission).
`workflows:manage` starts, promotes and rolls back a canary version of a workflow for
the caller's tenant (docs/rollouts.md); `workflows:read` shows it, with the figures.

`dlq:act` retries, escalates and dismisses dead-letter groups (and their tasks); a
retry re-runs tasks, as `tasks:rerun` does.

`breakers:read` shows the circuit breakers as they apply to the caller's tenant's steps;
`breakers:operate` opens and closes the tenant's own breaker by hand (the fleet-wide one
is changed on the database only: docs/flow-control.md).

`metrics:read` shows the caller's own tenant's figures only; the deployment-wide
`/metrics` needs the `metrics_token` setting instead (ADR 66).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt

from tether.config import Settings, check_secret
from tether.errors import ConfigError, TetherError
from tether.ids import new_id
from tether.models import ApiKey
from tether.storable import text_violation
from tether.store.base import Store


class Role(StrEnum):
    """Roles a credential can carry."""

    VIEWER = "viewer"
    SUBMITTER = "submitter"
    APPROVER = "approver"
    OPERATOR = "operator"
    ADMIN = "admin"


class Permission(StrEnum):
    """Things an endpoint may require."""

    READ = "tasks:read"
    SUBMIT = "tasks:submit"
    CANCEL = "tasks:cancel"
    SIGNAL = "tasks:signal"
    RERUN = "tasks:rerun"
    COMPENSATE = "tasks:compensate"
    APPROVALS_READ = "approvals:read"
    APPROVALS_DECIDE = "approvals:decide"
    KEYS_MANAGE = "apikeys:manage"
    METRICS_READ = "metrics:read"
    WEBHOOKS_READ = "webhooks:read"
    WEBHOOKS_REPLAY = "webhooks:replay"
    WEBHOOKS_MANAGE = "webhooks:manage"
    SCHEDULES_READ = "schedules:read"
    SCHEDULES_RUN = "schedules:run"
    SCHEDULES_MANAGE = "schedules:manage"
    WORKFLOWS_READ = "workflows:read"
    WORKFLOWS_MANAGE = "workflows:manage"
    DLQ_READ = "dlq:read"
    DLQ_ACT = "dlq:act"
    BREAKERS_READ = "breakers:read"
    BREAKERS_OPERATE = "breakers:operate"


P = Permission
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset(
        {
            P.READ,
            P.APPROVALS_READ,
            P.SCHEDULES_READ,
            P.WORKFLOWS_READ,
            P.DLQ_READ,
            P.BREAKERS_READ,
        }
    ),
    Role.SUBMITTER: frozenset({P.READ, P.SUBMIT, P.CANCEL, P.SIGNAL}),
    Role.APPROVER: frozenset({P.READ, P.APPROVALS_READ, P.APPROVALS_DECIDE}),
    Role.OPERATOR: frozenset(
        {
            P.READ,
            P.CANCEL,
            P.SIGNAL,
            P.RERUN,
            P.COMPENSATE,
            P.APPROVALS_READ,
            P.METRICS_READ,
            P.WEBHOOKS_READ,
            P.WEBHOOKS_REPLAY,
            P.SCHEDULES_READ,
            P.SCHEDULES_RUN,
            P.WORKFLOWS_READ,
            P.DLQ_READ,
            P.DLQ_ACT,
            P.BREAKERS_READ,
            P.BREAKERS_OPERATE,
        }
    ),
    Role.ADMIN: frozenset(Permission),
}
"""The permission matrix (also in the module docstring and docs/api.md)."""

API_KEY_PREFIX = "tth"


class AuthError(TetherError):
    """The credential is missing, malformed, expired, revoked or badly signed (HTTP 401)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a subject of a tenant, with roles."""

    subject: str
    tenant: str
    roles: frozenset[Role]
    via: str = "jwt"  # jwt | api_key

    def can(self, permission: Permission) -> bool:
        return any(permission in PERMISSIONS[r] for r in self.roles)


def parse_roles(values: Iterable[str], *, strict: bool = True) -> frozenset[Role]:
    """Roles from names; unknown names raise ValueError when `strict`, else are dropped."""
    out: set[Role] = set()
    for value in values:
        try:
            out.add(Role(value))
        except ValueError:
            if strict:
                known = ", ".join(r.value for r in Role)
                raise ValueError(f"unknown role {value!r} (known: {known})") from None
    return frozenset(out)


# Tokens ---------------------------------------------------------------------------------


def create_token(
    secret: str,
    tenant: str,
    roles: Sequence[str],
    subject: str = "cli",
    ttl: float = 3600.0,
) -> str:
    """A HS256 bearer token for `tenant` with `roles`, valid for `ttl` seconds."""
    if not secret:
        raise ValueError("a token needs a non-empty secret")
    check_secret("the signing secret", secret)
    if not tenant:
        raise ValueError("a token needs a tenant")
    parsed = parse_roles(roles)
    now = int(time.time())
    claims = {
        "sub": subject,
        "tenant": tenant,
        "roles": sorted(r.value for r in parsed),
        "iat": now,
        "exp": now + int(ttl),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


_ASYMMETRIC = {"RS256", "RS384", "RS512", "ES256", "ES384", "PS256"}


class TokenVerifier:
    """Checks bearer tokens: HS256 against the secret, asymmetric ones against a JWKS.

    The accepted algorithm follows the key source (never the token alone), so a token
    cannot pick HS256 with a public key as its secret.

    A verified token is remembered until it expires (up to `CACHE_SIZE` of them): a
    client sends the same token on every request, and checking its signature again
    costs more than the rest of a submit's validation. An entry is only a shortcut for
    a verification already passed; expiry is still checked on every use.
    """

    CACHE_SIZE = 4096

    def __init__(
        self, secret: str | None = None, jwks_url: str | None = None, leeway: float = 30.0
    ) -> None:
        self._secret = secret
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None
        self._leeway = leeway
        self._verified: dict[str, tuple[Principal, float]] = {}

    async def verify(self, token: str) -> Principal:
        """The principal a token names; raises `AuthError`."""
        hit = self._verified.get(token)
        if hit is not None:
            if time.time() <= hit[1] + self._leeway:
                return hit[0]
            del self._verified[token]
        who, expires = await self._check(token)
        if len(self._verified) >= self.CACHE_SIZE:
            self._verified.clear()  # rare: more live tokens than slots; start over
        self._verified[token] = (who, expires)
        return who

    async def _check(self, token: str) -> tuple[Principal, float]:
        """Verify signature and claims: the principal and the token's expiry time."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed bearer token") from None
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and self._secret:
            key = self._secret
        elif alg in _ASYMMETRIC and self._jwks is not None:
            try:
                signing = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
            except jwt.PyJWTError:
                raise AuthError("no matching signing key for the token") from None
            key = signing.key
        else:
            raise AuthError("token algorithm not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                leeway=self._leeway,
                options={"require": ["exp", "sub", "tenant"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.PyJWTError:
            raise AuthError("invalid token") from None
        tenant, subject, roles = claims.get("tenant"), claims.get("sub"), claims.get("roles", [])
        if not isinstance(tenant, str) or not tenant or not isinstance(subject, str):
            raise AuthError("token lacks a tenant or subject")
        for claim, value in (("tenant", tenant), ("sub", subject)):
            # Both are stored (a task's tenant, its created_by): refused here, as a bad
            # credential, rather than by the database later (ADR 73).
            found = text_violation(value)
            if found is not None:
                raise AuthError(f"the token's {claim} claim {found.reason}")
        if isinstance(roles, str):
            roles = roles.split()
        if not isinstance(roles, list):
            raise AuthError("token roles must be a list")
        who = Principal(subject, tenant, parse_roles(map(str, roles), strict=False), "jwt")
        return who, float(claims["exp"])


# API keys -------------------------------------------------------------------------------


def _hash_secret(secret: str) -> str:
    # The secret is 256 random bits: a fast hash is as safe as a slow one here, and
    # keeps key checks cheap on every request.
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_api_key(
    store: Store, tenant: str, roles: Sequence[str], name: str
) -> tuple[str, str]:
    """Create an API key; return `(key_id, plaintext)`. The plaintext is shown once."""
    if not tenant:
        raise ValueError("an API key needs a tenant")
    parsed = parse_roles(roles)
    key_id = new_id()
    secret = secrets.token_urlsafe(32)
    await store.create_api_key(
        ApiKey(
            id=key_id,
            tenant=tenant,
            name=name,
            roles=sorted(r.value for r in parsed),
            secret_hash=_hash_secret(secret),
            created_at=time.time(),
        )
    )
    return key_id, f"{API_KEY_PREFIX}_{key_id}_{secret}"


async def verify_api_key(store: Store, plaintext: str) -> Principal:
    """The principal of an API key; raises `AuthError` when unknown, wrong or revoked."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or not parts[1] or not parts[2]:
        raise AuthError("malformed API key")
    if text_violation(parts[1]) is not None:  # the id is looked up in a text column
        raise AuthError("malformed API key")
    key = await store.get_api_key(parts[1])
    # Compare even when the key is unknown, so timing does not tell ids apart.
    expected = key.secret_hash if key is not None else _hash_secret("")
    if not hmac.compare_digest(expected, _hash_secret(parts[2])) or key is None:
        raise AuthError("invalid API key")
    if key.revoked_at is not None:
        raise AuthError("API key revoked")
    return Principal(
        f"apikey:{key.id}", key.tenant, parse_roles(key.roles, strict=False), "api_key"
    )


# Server set-up --------------------------------------------------------------------------


def auth_configured(settings: Settings) -> bool:
    """True when bearer tokens can be verified (a secret or a JWKS URL is set)."""
    return bool(
        (settings.jwt_secret and settings.jwt_secret.get_secret_value()) or settings.jwks_url
    )


def dev_secret(path: Path | None = None) -> str:
    """The local development secret, created (mode 0600) on first use."""
    path = path or Path(".tether") / "dev-secret"
    if path.is_file():
        value = path.read_text().strip()
        if value:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def require_auth(settings: Settings) -> None:
    """Refuse to serve without authentication unless in dev mode, and with a secret
    shorter than `MIN_SECRET_BYTES` (settings built without validation included)."""
    for name in ("jwt_secret", "metrics_token"):
        value = getattr(settings, name)
        try:
            check_secret(name, "" if value is None else value.get_secret_value())
        except ValueError as exc:
            raise ConfigError(f"invalid configuration: {exc}") from None
    if not auth_configured(settings) and not settings.dev:
        raise ConfigError(
            "the API needs authentication: set TETHER_JWT_SECRET (or jwt_secret in "
            "tether.toml) or TETHER_JWKS_URL, or run with --dev for local development"
        )


__all__ = [
    "PERMISSIONS",
    "AuthError",
    "Permission",
    "Principal",
    "Role",
    "TokenVerifier",
    "auth_configured",
    "create_api_key",
    "create_token",
    "dev_secret",
    "require_auth",
    "verify_api_key",
]
