"""Configuring rate limits (ADR 90): in code (`app.rate_limit`) and in the `rate_limits`
setting (tether.toml, or JSON in the environment); which buckets a step of a tenant
takes from; and a limit that makes no sense is refused with the table at fault named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether import ConfigError, Tether
from tether.config import load_settings
from tether.flow import RateLimit, RateLimitGate, RateLimits, SpendGate
from tether.models.buckets import SHARED, BucketKey, BucketKind

TOML = """
[tether.rate_limits.openai]
requests_per_minute = 600
tokens_per_minute = 90000
[tether.rate_limits.openai.per_tenant]
requests_per_minute = 60
[tether.rate_limits.openai.tenants.acme]
requests_per_minute = 300
burst_seconds = 2
[tether.rate_limits.crm.per_tenant]
requests_per_minute = 30
"""


def test_limits_from_the_config_file_and_the_buckets_a_step_takes(tmp_path: Path) -> None:
    path = tmp_path / "tether.toml"
    path.write_text(TOML)
    limits = RateLimits.from_config(load_settings(path=path).rate_limits)
    assert {(lim.integration, lim.scope) for lim in limits.all()} == {
        ("openai", "shared"),
        ("openai", "per tenant"),
        ("openai", "tenant acme"),
        ("crm", "per tenant"),
    }
    shared, own = limits.applying("openai", "zeta")
    assert shared.scope == "shared" and own.scope == "per tenant"
    assert limits.applying("openai", "acme")[1].scope == "tenant acme"
    assert [lim.scope for lim in limits.applying("crm", "zeta")] == ["per tenant"]
    assert limits.applying("stripe", "zeta") == []
    # The shared bucket is everyone's; a tenant's own is named by the tenant.
    take = shared.take(BucketKind.REQUESTS, "zeta", 1)
    assert take is not None and take.key == BucketKey(BucketKind.REQUESTS, "openai", SHARED)
    assert (take.rate, take.burst) == (10, 10)  # 600 a minute, a second's worth
    tokens = shared.take(BucketKind.TOKENS, "zeta", 700)
    assert tokens is not None and (tokens.rate, tokens.burst, tokens.cost) == (1500, 1500, 700)
    acme = limits.applying("openai", "acme")[1].take(BucketKind.REQUESTS, "acme", 1)
    assert acme is not None and acme.key.tenant == "acme" and acme.burst == 10
    assert own.take(BucketKind.TOKENS, "zeta", 5) is None  # it counts requests only
    slow = RateLimit("crm", requests_per_minute=6)
    assert (slow.take(BucketKind.REQUESTS, "t", 1) or slow).burst == 1  # at least one


def test_limits_from_the_environment_and_in_code(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {"crm": {"requests_per_minute": 120}}
    monkeypatch.setenv("TETHER_RATE_LIMITS", json.dumps(table))
    app = Tether("sqlite://:memory:")
    assert [lim.integration for lim in app.rate_limits.all()] == ["crm"]
    assert [type(g) for g in _flow_gates(app)] == [RateLimitGate]
    app.rate_limit("crm", requests_per_minute=30)  # replaces the shared one
    app.rate_limit("openai", tokens_per_minute=1000, tokens_per_call=200, tenant="acme")
    assert [lim.requests_per_minute for lim in app.rate_limits.applying("crm", "x")] == [30]
    assert len(_flow_gates(app)) == 1  # one gate for all the limits
    assert app.rate_limits.remove("openai", tenant="acme")
    assert not app.rate_limits.remove("openai", tenant="acme")
    monkeypatch.delenv("TETHER_RATE_LIMITS")
    assert _flow_gates(Tether("sqlite://:memory:")) == []  # no limits: no gate to ask


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give requests_per_minute, tokens_per_minute or both"),
        ({"requests_per_minute": 0}, "requests_per_minute must be a number above 0"),
        ({"requests_per_minute": float("inf")}, "requests_per_minute must be a number above 0"),
        ({"tokens_per_minute": "many"}, "tokens_per_minute must be a number above 0"),
        ({"requests_per_minute": 1, "burst_seconds": -1}, "burst_seconds must be"),
        ({"requests_per_minute": 1, "tokens_per_call": 10}, "estimate of a tokens_per_minute"),
        ({"tokens_per_minute": 1, "tokens_per_call": -1}, "tokens_per_call must be 0 or more"),
        ({"requests_per_minute": 1, "tenant": "a", "per_tenant": True}, "not both"),
        ({"requests_per_minute": 1, "tenant": "*"}, "names the shared bucket"),
        ({"requests_per_minute": 1, "tenant": ""}, "tenant must be a non-empty string"),
    ],
)
def test_a_limit_that_makes_no_sense_is_refused(kwargs: dict[str, object], message: str) -> None:
    app = Tether("sqlite://:memory:")
    with pytest.raises(ValueError, match=message):
        app.rate_limit("crm", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="names its integration"):
        app.rate_limit("", requests_per_minute=1)
    assert not app.rate_limits and _flow_gates(app) == []


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"crm": 5}, "rate_limits.crm: expected a table"),
        (
            {"crm": {"requests_per_minut": 5}},
            r"rate_limits.crm: unknown keys \['requests_per_minut'\]",
        ),
        ({"crm": {"requests_per_minute": -5}}, "rate_limits.crm: requests_per_minute must be"),
        ({"crm": {"per_tenant": {}}}, "rate_limits.crm.per_tenant: rate limit of 'crm': give"),
        ({"crm": {"per_tenant": {"tenant": "x"}}}, r"per_tenant: unknown keys \['tenant'\]"),
        ({"crm": {"tenants": {"acme": []}}}, "rate_limits.crm.tenants.acme: expected a table"),
        (
            {"crm": {"tenants": {"acme": {"requests_per_minute": 0}}}},
            "rate_limits.crm.tenants.acme: requests_per_minute must be a number above 0",
        ),
    ],
)
def test_a_bad_rate_limits_table_names_the_table_at_fault(
    table: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        RateLimits.from_config(table)
    with pytest.raises(ConfigError, match=message):
        Tether(settings=load_settings({"database_url": "sqlite://:memory:", "rate_limits": table}))


def _flow_gates(app: Tether) -> list[object]:
    """The app's step gates but the spend gate every app has (budgets, ADR 92)."""
    return [g for g in app.step_gates if not isinstance(g, SpendGate)]
