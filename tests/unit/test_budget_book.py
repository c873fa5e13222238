"""Budgets as values and as configuration: `Budget`, `Cost` and `BudgetBook` (which
limit applies to a task), from code and from the `budgets` setting, with every bad
value refused by name."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tether import Budget, BudgetBook, ConfigError, Context, Cost, Tether, load_settings
from tether.models.budgets import check_day, day_end, utc_day


def test_costs_add_exactly_and_budgets_round_trip() -> None:
    total = Cost()
    for _ in range(20):
        total += Cost(usd=0.05, tokens=1)
    assert total.nanos == 1_000_000_000 and total.tokens == 20
    budget = Budget(tokens=5000, on_exhausted="fail")
    assert Budget.from_json(budget.to_json()) == budget
    assert Budget.from_json(None) is None
    with pytest.raises(ValueError, match="unknown budget key"):
        Budget.from_json({"usd": 1, "dollars": 2})
    with pytest.raises(ValueError, match="whole number"):
        Cost(tokens=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most"):
        Budget(usd=1e12)


def test_days_are_utc_and_checked() -> None:
    assert utc_day(0) == "1970-01-01"
    assert day_end("1970-01-01") == 86400.0
    assert check_day("2026-12-04") == "2026-12-04"
    for bad in ("2026-02-31", "20261204", "tomorrow", "2026-1-1"):
        with pytest.raises(ValueError, match="not a day"):
            check_day(bad)


def test_the_book_picks_each_lines_budget() -> None:
    app = Tether("sqlite:///:memory:")

    @app.workflow("w", spend_budget=Budget(usd=1), daily_budget=Budget(usd=10))
    async def w(ctx: Context) -> None:
        return None

    wf = app.registry_lookup("w")
    assert app.budgets.task_default(wf) == Budget(usd=1)
    app.budgets.set_task(Budget(usd=2), workflow="w")
    assert app.budgets.task_default(wf) == Budget(usd=2)
    app.budgets.set_daily(Budget(usd=50))
    app.budgets.set_daily(Budget(usd=70), tenant="acme")
    task = app.new_task("w", tenant="acme")
    assert task.spend_budget == Budget(usd=2)  # fixed on the task when it is created
    acme = replace(app.handle("x", "acme").initial, workflow="w", spend_budget=Budget(usd=3))
    assert app.budgets.lines(acme, wf) == {
        "task": Budget(usd=3),
        "tenant": Budget(usd=70),
        "workflow": Budget(usd=10),
    }
    app.budgets.set_daily(None, tenant="acme")
    app.budgets.set_daily(Budget(usd=5), workflow="w")
    zeta = replace(acme, tenant="zeta", spend_budget=None)
    assert app.budgets.lines(zeta, wf) == {"tenant": Budget(usd=50), "workflow": Budget(usd=5)}
    with pytest.raises(ValueError, match="not both"):
        app.budgets.set_daily(Budget(usd=1), tenant="a", workflow="w")


def test_the_budgets_setting_reads_from_toml_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = {
        "daily": {"usd": 50},
        "recheck": 60,
        "tenants": {"acme": {"daily": {"usd": 200, "tokens": 5_000_000, "on_exhausted": "fail"}}},
        "workflows": {"research": {"task": {"usd": 0.5}, "daily": {"usd": 20}}},
    }
    monkeypatch.setenv("TETHER_BUDGETS", json.dumps(table))
    book = BudgetBook.from_config(load_settings().budgets)
    assert book.daily == Budget(usd=50) and book.recheck == 60
    assert book.tenants["acme"] == Budget(usd=200, tokens=5_000_000, on_exhausted="fail")
    assert book.workflow_task["research"] == Budget(usd=0.5)
    assert book.workflow_daily["research"] == Budget(usd=20)


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"dayly": {"usd": 1}}, "budgets: unknown key(s) dayly"),
        ({"daily": {"usd": -1}}, "budgets.daily: Budget.usd must not be negative"),
        ({"daily": {}}, "budgets.daily: a Budget limits usd, tokens or both"),
        ({"recheck": 0}, "budgets.recheck"),
        ({"tenants": {"acme": {"weekly": {"usd": 1}}}}, "budgets.tenants.acme: unknown"),
        ({"workflows": {"w": {"task": {"usd": 1, "when": "x"}}}}, "budgets.workflows.w.task"),
        ({"tenants": ["acme"]}, "budgets.tenants: expected tables"),
    ],
)
def test_bad_budget_settings_are_refused_by_name(table: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        BudgetBook.from_config(table)
