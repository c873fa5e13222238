"""Request dependencies: the caller (`principal`), role checks (`require`), the app.

Routers added later (approvals, dead-letter queue) use the same two dependencies:

    @router.post("/v1/approvals/{id}/decision")
    async def decide(who: Principal = Depends(require(Permission.APPROVALS_DECIDE))): ...
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from tether.api import problem_types
from tether.api.problems import ProblemError
from tether.app import Tether
from tether.auth import AuthError, Permission, Principal, TokenVerifier
from tether.services import api_keys

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description="JWT with claims sub, tenant, roles, exp",
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="API key"
)


async def tether_app(request: Request) -> Tether:
    """The Tether application behind this API (async: FastAPI would run a sync
    dependency in its thread pool, a hop that cost more than the rest of a submit)."""
    return app_of(request)


def app_of(request: Request) -> Tether:
    """The Tether application behind the API serving `request` (for a route that takes
    the request anyway: one dependency fewer to solve)."""
    app: Tether = request.app.state.tether
    return app


async def principal(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
    api_key: str | None = Depends(api_key_scheme),
) -> Principal:
    """Who is calling; 401 when no valid credential was given."""
    verifier: TokenVerifier = request.app.state.verifier
    if bearer is not None and bearer.credentials:
        who = await verifier.verify(bearer.credentials)
    elif api_key:
        who = await api_keys.verify(app_of(request), api_key)
    elif request.headers.get("authorization"):
        raise AuthError("unsupported Authorization scheme (use Bearer)")
    else:
        raise AuthError("missing credentials: send Authorization: Bearer <token> or X-API-Key")
    request.state.principal = who
    return who


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold `permission` (else 403)."""

    async def check(who: Principal = Depends(principal)) -> Principal:
        if not who.can(permission):
            raise ProblemError(
                problem_types.FORBIDDEN, f"this credential lacks the {permission.value} permission"
            )
        return who

    check.__name__ = f"require_{permission.name.lower()}"
    return check


async def metrics_reader(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
    api_key: str | None = Depends(api_key_scheme),
) -> Principal | None:
    """Who reads `/metrics`: None for the deployment's scrape token (`metrics_token`:
    every tenant's figures), else a credential holding `metrics:read` (its tenant's
    figures only); 401 without a credential, 403 without the permission (ADR 66)."""
    scrape: str | None = request.app.state.metrics_token
    offered = bearer.credentials if bearer is not None else ""
    if scrape and hmac.compare_digest(offered.encode(), scrape.encode()):
        return None
    who = await principal(request, bearer, api_key)
    if not who.can(Permission.METRICS_READ):
        raise ProblemError(
            403, f"this credential lacks the {Permission.METRICS_READ.value} permission"
        )
    return who


def state(request: Request, name: str) -> Any:
    return getattr(request.app.state, name)
