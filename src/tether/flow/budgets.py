"""Which spend budgets apply to a task: the book of limits (ADR 92).

Three lines of the ledger limit a step: its task's (the submission's `spend_budget`,
else the one configured for its workflow, else `@app.workflow(spend_budget=)`; fixed
on the task when it is submitted), its tenant's per UTC day (the tenant's own, else
every tenant's), and its tenant's workflow's per UTC day (configured, else
`@app.workflow(daily_budget=)`). A line without a budget is not limited.

    [tether.budgets]
    daily = { usd = 50.0 }                 # each tenant, per UTC day
    recheck = 900                          # seconds between looks of a waiting step
    [tether.budgets.tenants.acme]
    daily = { usd = 200.0, tokens = 5000000, on_exhausted = "fail" }
    [tether.budgets.workflows.research]
    task = { usd = 0.5 }                   # each task of it
    daily = { usd = 20.0 }                 # each tenant's tasks of it, per UTC day
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tether.engine.registry import WorkflowDef
from tether.errors import ConfigError
from tether.models import Budget, Task
from tether.models.budgets import Scope

DEFAULT_RECHECK = 900.0
"""Seconds a step waiting on an exhausted budget sleeps before it looks again, in case
no decision wakes it (a raise made outside an approval, a missed wake)."""


@dataclass
class BudgetBook:
    """Spend limits by tenant and workflow: the `budgets` setting, then `set_daily` and
    `set_task` in code, over the workflows' own (`@app.workflow(spend_budget=,
    daily_budget=)`)."""

    daily: Budget | None = None
    """Each tenant's limit per UTC day (None: none)."""
    tenants: dict[str, Budget] = field(default_factory=dict)
    """A tenant's own daily limit, instead of `daily`."""
    workflow_daily: dict[str, Budget] = field(default_factory=dict)
    """Per workflow: each tenant's limit on its tasks per UTC day."""
    workflow_task: dict[str, Budget] = field(default_factory=dict)
    """Per workflow: each task's limit, unless its submission gives one."""
    recheck: float = DEFAULT_RECHECK
    """Seconds between looks of a step waiting on an exhausted budget."""

    def set_daily(
        self, budget: Budget | None, *, tenant: str | None = None, workflow: str | None = None
    ) -> None:
        """Limit spend per UTC day: of `workflow`'s tasks (of each tenant), of
        `tenant`, or (neither) of every tenant without one of its own. None removes it."""
        if tenant is not None and workflow is not None:
            raise ValueError("a daily budget is a tenant's or a workflow's, not both")
        table = self.tenants if tenant is not None else self.workflow_daily
        key = tenant if tenant is not None else workflow
        if key is None:
            self.daily = budget
        elif budget is None:
            table.pop(key, None)
        else:
            table[key] = budget

    def set_task(self, budget: Budget | None, *, workflow: str) -> None:
        """Limit each new task of `workflow` (unless its submission says otherwise)."""
        if budget is None:
            self.workflow_task.pop(workflow, None)
        else:
            self.workflow_task[workflow] = budget

    def task_default(self, wf: WorkflowDef) -> Budget | None:
        """The limit a new task of `wf` gets when its submission gives none."""
        return self.workflow_task.get(wf.name) or wf.spend_budget

    def lines(self, task: Task, wf: WorkflowDef) -> dict[Scope, Budget]:
        """The budgets that limit `task`'s steps, by ledger line."""
        found: dict[Scope, Budget] = {}
        if task.spend_budget is not None:
            found["task"] = task.spend_budget
        tenant = self.tenants.get(task.tenant) or self.daily
        if tenant is not None:
            found["tenant"] = tenant
        workflow = self.workflow_daily.get(task.workflow) or wf.daily_budget
        if workflow is not None:
            found["workflow"] = workflow
        return found

    @classmethod
    def from_config(cls, table: Mapping[str, Any] | None) -> BudgetBook:
        """The book of the `[tether.budgets]` table (module docstring). Raises
        `ConfigError` naming what is wrong."""
        book = cls()
        if not table:
            return book
        _only(table, {"daily", "recheck", "tenants", "workflows"}, "budgets")
        book.daily = _budget(table.get("daily"), "budgets.daily")
        recheck = table.get("recheck", DEFAULT_RECHECK)
        if isinstance(recheck, bool) or not isinstance(recheck, int | float) or recheck <= 0:
            raise ConfigError("budgets.recheck: expected a number of seconds above 0")
        book.recheck = float(recheck)
        for tenant, sub in _tables(table, "tenants").items():
            where = f"budgets.tenants.{tenant}"
            _only(sub, {"daily"}, where)
            if (daily := _budget(sub.get("daily"), f"{where}.daily")) is not None:
                book.tenants[tenant] = daily
        for name, sub in _tables(table, "workflows").items():
            where = f"budgets.workflows.{name}"
            _only(sub, {"daily", "task"}, where)
            if (daily := _budget(sub.get("daily"), f"{where}.daily")) is not None:
                book.workflow_daily[name] = daily
            if (task := _budget(sub.get("task"), f"{where}.task")) is not None:
                book.workflow_task[name] = task
        return book


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")


def _tables(table: Mapping[str, Any], key: str) -> dict[str, Mapping[str, Any]]:
    value = table.get(key, {})
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise ConfigError(f"budgets.{key}: expected tables named by {key[:-1]}")
    return {str(k): v for k, v in value.items()}


def _budget(value: Any, where: str) -> Budget | None:
    try:
        return Budget.from_json(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc} (e.g. {{ usd = 5.0, tokens = 100000 }})") from None
