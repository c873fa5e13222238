"""API keys: create, revoke, and check them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tether import auth

if TYPE_CHECKING:
    from tether.app import Tether
    from tether.auth import Principal


async def create(app: Tether, tenant: str, roles: Sequence[str], name: str) -> tuple[str, str]:
    """A new key for `tenant`; returns `(key_id, plaintext)`, the plaintext shown once."""
    await app.open()
    return await auth.create_api_key(app.store, tenant, roles, name)


async def revoke(app: Tether, key_id: str, tenant: str | None) -> bool:
    """Revoke a key at once; False when there is no such live key (for `tenant`)."""
    await app.open()
    return await app.store.revoke_api_key(key_id, tenant, app.clock.now())


async def verify(app: Tether, plaintext: str) -> Principal:
    """The principal of an API key; raises `AuthError` when unknown, wrong or revoked."""
    await app.open()
    return await auth.verify_api_key(app.store, plaintext)
