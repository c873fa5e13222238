"""Circuit breakers and step limits configured (ADR 91): in code and in settings (the
file's tables, JSON in the environment), every mistake a `ConfigError` naming its key;
what counts as a failure; the failure rate's sliding window."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether import (
    AttemptError,
    Breaker,
    BreakerPolicy,
    ConfigError,
    RetryDecision,
    Tether,
    load_settings,
)
from tether.flow import SpendGate
from tether.flow.breakers import outcome_of, policies_from_config
from tether.flow.integrations import IntegrationGate
from tether.flow.step_limits import limits_from_config
from tether.notify.channels import check_trigger
from tether.store.breakers import Outcome


def test_settings_configure_breakers_and_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tether.toml").write_text(
        "[tether.breakers.crm]\nfailures = 4\ncool_down = 10\n"
        "[tether.breakers.openai]\nfailures = 10\nfailure_rate = 0.5\nper_tenant = true\n"
        "[tether.step_limits]\ncrm = 5\n"
    )
    monkeypatch.chdir(tmp_path)
    app = Tether(settings=load_settings({"database_url": f"sqlite:///{tmp_path / 'a.db'}"}))
    assert app.breakers.policies == {
        "crm": BreakerPolicy(failures=4, cool_down=10),
        "openai": BreakerPolicy(failures=10, failure_rate=0.5, per_tenant=True),
    }
    assert app.step_limits.limits["crm"].max_running == 5
    assert [type(g) for g in _flow_gates(app)] == [IntegrationGate]

    monkeypatch.setenv("TETHER_STEP_LIMITS", json.dumps({"mail": 2}))
    monkeypatch.setenv("TETHER_BREAKERS", json.dumps({"mail": {"failures": 1}}))
    from_env = Tether(settings=load_settings({"database_url": f"sqlite:///{tmp_path / 'b.db'}"}))
    assert list(from_env.breakers.policies) == ["mail"]
    assert from_env.step_limits.limits["mail"].max_running == 2


def test_no_breaker_nor_limit_costs_steps_nothing(tmp_path: Path) -> None:
    app = Tether(f"sqlite:///{tmp_path / 'a.db'}")
    assert _flow_gates(app) == []
    app.step_limit("crm", 3)
    app.breaker("crm")
    assert len(_flow_gates(app)) == 1, "one gate asks both"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"crm": {"failures": 0}}, "breakers.crm: failures: at least 1"),
        ({"crm": {"failures": None, "failure_rate": None}}, "needs `failures` or `failure_rate`"),
        ({"crm": {"failure_rate": 1.5}}, "breakers.crm: failure_rate: above 0 and at most 1"),
        ({"crm": {"cool_down": -1}}, "breakers.crm: cool_down: a positive number"),
        ({"crm": {"probes": 0}}, "breakers.crm: probes"),
        ({"crm": {"failures": 2.5}}, "breakers.crm: failures: expected a whole number"),
        ({"crm": {"cooldown": 3}}, "breakers.crm: unknown key(s) cooldown"),
        ({"crm": 5}, "breakers.crm: expected a table"),
        ({"no spaces": {}}, "breakers.no spaces: 'no spaces' is not an integration name"),
    ],
)
def test_a_bad_breaker_setting_names_its_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        policies_from_config(table)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"crm": 0}, "step_limits.crm: max_running: a whole number of at least 1"),
        ({"crm": "5"}, "step_limits.crm: max_running"),
        ({"a/b": 1}, "step_limits.a/b: 'a/b' is not an integration name"),
    ],
)
def test_a_bad_step_limit_setting_names_its_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        limits_from_config(table)
    assert message in str(err.value)


def test_code_refuses_bad_names_and_settings(tmp_path: Path) -> None:
    app = Tether(f"sqlite:///{tmp_path / 'a.db'}")
    with pytest.raises(ConfigError, match="breaker 'a:b'"):
        app.breaker("a:b")
    with pytest.raises(ConfigError, match="min_calls"):
        app.breaker("crm", failure_rate=0.5, min_calls=0)
    with pytest.raises(ConfigError, match="step limit 'crm'"):
        app.step_limit("crm", 0)
    assert _flow_gates(app) == [], "nothing half-configured"


def _error(transient: bool) -> AttemptError:
    return AttemptError(
        1, "E", "m", None, 0.0, 1.0, transient, "rule", RetryDecision.GIVE_UP, "permanent"
    )


def test_only_transient_failures_count_against_an_integration() -> None:
    assert outcome_of(None) == Outcome.SUCCESS
    assert outcome_of(_error(True)) == Outcome.FAILURE
    assert outcome_of(_error(False)) == Outcome.NEUTRAL
    assert check_trigger("circuit.opened") == "circuit.opened"


def test_the_failure_rate_slides_over_the_last_window() -> None:
    b = Breaker("*", "crm", window_start=120.0, window_calls=10, window_failures=5)
    assert b.rate(150.0, 60.0) == (10, 5)  # the current window only
    later = b.rolled(195.0, 60.0)  # a quarter into the next: the previous weighs 3/4
    assert (later.window_start, later.prev_calls, later.window_calls) == (180.0, 10, 0)
    assert later.rate(195.0, 60.0) == (7.5, 3.75)
    gone = b.rolled(300.0, 60.0)  # two windows on: nothing of it is left
    assert (gone.prev_calls, gone.window_calls) == (0, 0)
    assert b.window_calls == 10, "rolling copies"


def _flow_gates(app: Tether) -> list[object]:
    """The app's step gates but the spend gate every app has (budgets, ADR 92)."""
    return [g for g in app.step_gates if not isinstance(g, SpendGate)]
