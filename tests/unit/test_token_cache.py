"""The bearer-token verifier remembers verified tokens, but never past their expiry and
never for a token that failed."""

from __future__ import annotations

import asyncio
import time

import pytest

from tether.auth import AuthError, TokenVerifier, create_token

SECRET = "unit-secret-0123456789abcdef0123456789"


async def test_a_cached_token_is_refused_once_it_expires() -> None:
    verifier = TokenVerifier(SECRET, leeway=0)
    token = create_token(SECRET, "acme", ["submitter"], subject="ann", ttl=1)
    who = await verifier.verify(token)
    assert (who.tenant, who.subject) == ("acme", "ann")
    assert await verifier.verify(token) is who  # the second use is the remembered one
    deadline = time.monotonic() + 5
    while True:
        try:
            await verifier.verify(token)
        except AuthError as exc:
            assert "expired" in str(exc)
            break
        assert time.monotonic() < deadline, "an expired token was still accepted"
        await asyncio.sleep(0.05)


async def test_a_refused_token_is_not_remembered() -> None:
    verifier = TokenVerifier(SECRET)
    forged = create_token("another-secret-0123456789abcdef012345", "acme", ["admin"])
    for _ in range(2):
        with pytest.raises(AuthError, match="invalid token"):
            await verifier.verify(forged)


async def test_the_cache_is_bounded() -> None:
    verifier = TokenVerifier(SECRET)
    verifier.CACHE_SIZE = 3
    tokens = [create_token(SECRET, "acme", ["viewer"], subject=f"s{i}") for i in range(7)]
    for token in tokens:
        assert (await verifier.verify(token)).subject.startswith("s")
    assert len(verifier._verified) <= 3
