"""`SpendGate`: the step gate that keeps steps within their spend budgets (ADR 92).

Before an attempt of a step that declares an estimate (`ctx.step(..., estimate=Cost(
usd=0.02))`; model calls always do), the gate reserves the estimate on the ledger
lines of the task's budgets, in one atomic booking (`SpendStore.reserve`). When a line
cannot cover it, the line's policy decides: `fail` raises `BudgetExceeded` (the step
fails with it), `approve` asks for the line to be raised (an approval, once per line
while it is pending) and holds the step, reason `budget`, until a decision or the next
look. After every attempt, what it charged (`ctx.charge`, a model call's cost) is
booked and its reservation released, whether or not it succeeded.

So steps running together cannot overspend a budget by their estimates: it is exceeded
only by what a step spends beyond what it declared.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from tether.clock import Clock
from tether.engine.approvals import RiskPolicy
from tether.engine.context import ESTIMATE_KEY, SPEND_KEY
from tether.engine.gates import Hold, StepCall
from tether.engine.registry import WorkflowDef
from tether.errors import BudgetExceeded
from tether.flow.budgets import BudgetBook
from tether.ids import new_id
from tether.models import Approval, Budget, Cost, SpendLine, WaitReason
from tether.models.budgets import Scope, day_end, from_nanos, to_nanos, utc_day
from tether.store.base import Store
from tether.store.spend import HoldOutcome, LineLimit, SpendClaim, SpendReport

log = logging.getLogger("tether.flow.budgets")

BUDGET_RISK = "budget"
"""The risk level of an approval to raise a budget: the risk policy says who decides
(one approver unless a policy names it: `levels = { budget = "two" }`)."""

TRIES = 3
"""Reservations tried per ask before the step waits (a line released or raised between
two looks is tried again at once)."""


class BudgetHost(Protocol):
    """What the gate needs of the application (`Tether` is one)."""

    store: Store
    clock: Clock
    budgets: BudgetBook

    def registry_lookup(self, workflow: str, version: int | None = None) -> WorkflowDef: ...

    def approval_policy(self, tenant: str, workflow: str) -> RiskPolicy: ...


def estimate_of(meta: Mapping[str, Any]) -> Cost | None:
    """The estimate a step declared (`meta["estimate"]`), None if it declared none."""
    value = meta.get(ESTIMATE_KEY)
    return None if value is None else Cost.from_json(value)


def limit_of(budget: Budget) -> LineLimit:
    return LineLimit(None if budget.usd is None else to_nanos(budget.usd), budget.tokens)


class SpendGate:
    """Reserves declared estimates before step attempts and books what they spent."""

    def __init__(self, host: BudgetHost) -> None:
        self.host = host
        self._held: dict[tuple[str, int, int], str] = {}
        """Reservations this process made, by (task, seq, task attempt): their day."""

    async def before(self, call: StepCall) -> Hold | None:
        estimate = estimate_of(call.meta)
        if estimate is None:
            return None  # a step that declares nothing is not held back (it still books)
        task = call.task
        wf = self.host.registry_lookup(task.workflow, task.workflow_version)
        budgets = self.host.budgets.lines(task, wf)
        if not budgets:
            return None
        store, now = self.host.store, self.host.clock.now()
        claim = SpendClaim(
            task_id=task.id,
            seq=call.seq,
            attempt=task.attempt,
            tenant=task.tenant,
            workflow=task.workflow,
            day=utc_day(now),
            estimate=estimate,
            limits={scope: limit_of(b) for scope, b in budgets.items()},
        )
        short: SpendLine | None = None
        for _ in range(TRIES):
            short = await store.reserve(claim, now)
            if short is not None and await store.release_dead(
                task.tenant, claim.day, task.id if short.scope == "task" else None, now
            ):
                short = await store.reserve(claim, now)  # dead reservations held room
            if short is None:
                if estimate.nanos or estimate.tokens:
                    self._remember((task.id, call.seq, task.attempt), claim.day)
                return None
            budget = budgets[short.scope]
            if budget.on_exhausted == "fail":
                raise BudgetExceeded(
                    f"{_what(short)} cannot cover step {call.name!r}: {_figures(short, estimate)}"
                )
            approval = self._approval(call, short, estimate, now)
            result = await store.hold_for_raise(claim, short.scope, approval, now)
            if result.outcome == HoldOutcome.RETRY:
                now = self.host.clock.now()
                continue
            if result.outcome == HoldOutcome.FAIL:
                refused = result.approval
                by = "" if refused is None else f" (approval {refused.id}, {refused.resolution})"
                raise BudgetExceeded(
                    f"{_what(short)} cannot cover step {call.name!r} and its raise was "
                    f"refused{by}: {_figures(short, estimate)}"
                )
            break
        assert short is not None
        return Hold(WaitReason.BUDGET, self._until(short, now))

    async def after(self, call: StepCall, error: Any, notes: dict[str, Any]) -> None:
        task = call.task
        raw = notes.get(SPEND_KEY)
        day = self._held.pop((task.id, call.seq, task.attempt), None) if self._held else None
        if raw is None and day is None:
            return  # the common step: it neither reserved nor spent (no I/O, no objects)
        try:
            spent = Cost.from_json(raw)
        except ValueError:  # a hand-written `spend` note that is no cost
            log.warning("task %s step %s: its spend note is not a cost", task.id, call.name)
            spent = Cost()
        if day is None and not (spent.nanos or spent.tokens):
            return
        now = self.host.clock.now()
        report = SpendReport(
            task_id=task.id,
            seq=call.seq,
            attempt=task.attempt,
            tenant=task.tenant,
            workflow=task.workflow,
            day=day or utc_day(now),
            spent=spent,
        )
        for attempt in range(TRIES):
            try:
                await self.host.store.settle(report, now)
                return
            except Exception:
                if attempt == TRIES - 1:
                    # What was spent is spent: the step's outcome stands, the ledger
                    # misses it (said loudly) and the reservation expires with the task.
                    log.error(
                        "task %s step %s: its spend (%s) could not be booked",
                        task.id,
                        call.name,
                        spent,
                        exc_info=True,
                    )
                    return
                await asyncio.sleep(0.1 * (attempt + 1))

    # ---------------------------------------------------------------------------------
    def _remember(self, key: tuple[str, int, int], day: str) -> None:
        if len(self._held) > 100_000:  # attempts that never ended here (lost, held by
            self._held.clear()  # another gate): their reservations expire in the store
        self._held[key] = day

    def _until(self, short: SpendLine, now: float) -> float:
        """When a held step looks again if no decision wakes it first: after the
        recheck interval, and at the latest when its day line's day is over."""
        until = now + self.host.budgets.recheck
        if short.day:
            until = min(until, day_end(short.day))
        return until

    def _approval(self, call: StepCall, short: SpendLine, estimate: Cost, now: float) -> Approval:
        """The request to raise `short` (its `seq` is the store's to assign)."""
        task = call.task
        policy = self.host.approval_policy(task.tenant, task.workflow)
        key = f"{task.id}:budget:{short.scope}:{short.subject}:{short.day}:{now}"
        required, auto = policy.required_approvers(BUDGET_RISK, key)
        proposed = _proposal(short, estimate)
        request: dict[str, Any] = {
            "summary": f"Raise {_what(short)}: {_figures(short, estimate)}",
            "evidence": [],
            "impact": f"step {call.name!r} of task {task.id} waits until it is raised",
            "rollback": None,
            "budget": {
                "scope": short.scope,
                "subject": short.subject,
                "day": short.day,
                "step": call.name,
                "limit": {"usd": short.limit_usd, "tokens": short.limit_tokens},
                "spent": short.spent.to_json(),
                "reserved": short.reserved.to_json(),
                "estimate": estimate.to_json(),
                "proposed": proposed,
            },
        }
        return Approval(
            id=new_id(),
            task_id=task.id,
            tenant=task.tenant,
            workflow=task.workflow,
            seq=0,
            status="approved" if auto else "pending",
            risk=BUDGET_RISK,
            request=request,
            required=required,
            submitter=task.created_by,
            created_at=now,
            expires_at=day_end(short.day) if short.day else None,
            on_timeout="reject",
            resolution=auto,
            decided_at=now if auto else None,
        )


def _what(line: SpendLine) -> str:
    scope: Scope = line.scope
    if scope == "task":
        return f"the budget of task {line.subject}"
    if scope == "tenant":
        return f"tenant {line.tenant}'s budget for {line.day}"
    return f"workflow {line.subject}'s budget for tenant {line.tenant} on {line.day}"


def _figures(line: SpendLine, estimate: Cost) -> str:
    parts = []
    if line.limit_usd is not None:
        parts.append(
            f"${line.spent.usd:.6g} spent and ${line.reserved.usd:.6g} reserved of "
            f"${line.limit_usd:.6g}, ${estimate.usd:.6g} more asked"
        )
    if line.limit_tokens is not None:
        parts.append(
            f"{line.spent.tokens} tokens spent and {line.reserved.tokens} reserved of "
            f"{line.limit_tokens}, {estimate.tokens} more asked"
        )
    return "; ".join(parts)


def _proposal(line: SpendLine, estimate: Cost) -> dict[str, Any]:
    """The raise an approval proposes: at least twice the limit, and enough for the
    step that asks (approving without changes grants it)."""
    out: dict[str, Any] = {"usd": None, "tokens": None}
    if line.limit_usd is not None:
        need = to_nanos(line.spent.usd + line.reserved.usd + estimate.usd)
        top = max(2 * to_nanos(line.limit_usd), need + (0 if estimate.nanos else 1_000_000))
        out["usd"] = from_nanos(top)
    if line.limit_tokens is not None:
        need_t = line.spent.tokens + line.reserved.tokens + estimate.tokens
        out["tokens"] = max(2 * line.limit_tokens, need_t + (0 if estimate.tokens else 1000))
    return out
