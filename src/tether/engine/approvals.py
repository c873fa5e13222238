"""Risk policy: what an approval request of a given risk level needs.

Approval is layered by impact (seed 000): some actions pass automatically, some need one
reviewer, the riskiest two distinct reviewers, and a sampled share of medium-risk work
can be spot-checked while the rest flows. The submitter of a task never approves it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from tether.errors import ConfigError


class Requirement(StrEnum):
    """What a risk level needs before the workflow may go on."""

    AUTO = "auto"
    ONE = "one_approver"
    TWO = "two_approvers"
    SAMPLED = "sampled"


@dataclass(frozen=True)
class RiskPolicy:
    """Maps risk levels to requirements. Unknown levels need one approver."""

    levels: dict[str, Requirement] = field(
        default_factory=lambda: {
            "low": Requirement.AUTO,
            "medium": Requirement.ONE,
            "high": Requirement.ONE,
            "critical": Requirement.TWO,
        }
    )
    sample_rate: float = 0.1
    """Share of SAMPLED requests sent to a reviewer; the rest are auto-approved."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ValueError("sample_rate must be between 0 and 1")

    def requirement(self, risk: str) -> Requirement:
        return self.levels.get(risk, Requirement.ONE)

    def required_approvers(self, risk: str, sample_key: str) -> tuple[int, str | None]:
        """(approvers needed, auto-resolution) for a request. 0 approvers means the
        request is resolved at once, as `auto` or `sampled`. Sampling is decided by a
        hash of `sample_key`, so a replay decides the same way."""
        req = self.requirement(risk)
        if req is Requirement.AUTO:
            return 0, "auto"
        if req is Requirement.TWO:
            return 2, None
        if req is Requirement.SAMPLED:
            digest = int(hashlib.sha256(sample_key.encode()).hexdigest()[:8], 16)
            if digest / 0xFFFFFFFF < self.sample_rate:
                return 1, None
            return 0, "sampled"
        return 1, None


@dataclass
class PolicyBook:
    """Risk policies by workflow and tenant; the most specific one applies."""

    default: RiskPolicy = field(default_factory=RiskPolicy)
    by_workflow: dict[str, RiskPolicy] = field(default_factory=dict)
    by_tenant: dict[str, RiskPolicy] = field(default_factory=dict)
    by_tenant_workflow: dict[tuple[str, str], RiskPolicy] = field(default_factory=dict)

    def set(
        self, policy: RiskPolicy, *, workflow: str | None = None, tenant: str | None = None
    ) -> None:
        """Use `policy` for a workflow, a tenant, or a tenant's workflow."""
        if workflow and tenant:
            self.by_tenant_workflow[(tenant, workflow)] = policy
        elif workflow:
            self.by_workflow[workflow] = policy
        elif tenant:
            self.by_tenant[tenant] = policy
        else:
            self.default = policy

    def lookup(self, tenant: str, workflow: str) -> RiskPolicy:
        return (
            self.by_tenant_workflow.get((tenant, workflow))
            or self.by_tenant.get(tenant)
            or self.by_workflow.get(workflow)
            or self.default
        )

    @classmethod
    def from_config(cls, table: Mapping[str, Any] | None) -> PolicyBook:
        """Policies from the `[tether.approval_policy]` table of the config file:

            [tether.approval_policy]                      # the default policy
            levels = { low = "auto", medium = "sampled", high = "one", critical = "two" }
            sample_rate = 0.1
            [tether.approval_policy.workflows.publish]    # one workflow, any tenant
            levels = { high = "two" }
            [tether.approval_policy.tenants.acme]         # one tenant, any workflow
            sample_rate = 0.5
            [tether.approval_policy.tenants.acme.workflows.publish]

        A sub-table changes only what it names: the levels it lists and its sample
        rate; the rest comes from its parent (a tenant's workflow from the tenant, the
        tenant and workflow tables from the default). Raises `ConfigError`.
        """
        book = cls()
        if not table:
            return book
        where = "approval_policy"
        book.default = _policy(table, RiskPolicy(), where, nested=True)
        for name, sub in _tables(table, "workflows", where).items():
            book.by_workflow[name] = _policy(sub, book.default, f"{where}.workflows.{name}")
        for tenant, sub in _tables(table, "tenants", where).items():
            at = f"{where}.tenants.{tenant}"
            tenant_policy = _policy(sub, book.default, at, nested=True)
            book.by_tenant[tenant] = tenant_policy
            for name, wf_sub in _tables(sub, "workflows", at).items():
                book.by_tenant_workflow[(tenant, name)] = _policy(
                    wf_sub, tenant_policy, f"{at}.workflows.{name}"
                )
        return book


REQUIREMENT_NAMES: dict[str, Requirement] = {
    "auto": Requirement.AUTO,
    "one": Requirement.ONE,
    "one_approver": Requirement.ONE,
    "two": Requirement.TWO,
    "two_approvers": Requirement.TWO,
    "sampled": Requirement.SAMPLED,
}
"""Names a config file may use for each requirement."""


def _tables(table: Mapping[str, Any], key: str, where: str) -> dict[str, Mapping[str, Any]]:
    value = table.get(key, {})
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise ConfigError(f"{where}.{key}: expected tables named by {key[:-1]}")
    return {str(k): v for k, v in value.items()}


def _policy(
    table: Mapping[str, Any], parent: RiskPolicy, where: str, *, nested: bool = False
) -> RiskPolicy:
    allowed = {"levels", "sample_rate"} | ({"workflows", "tenants"} if nested else set())
    if where.count(".tenants.") and nested:
        allowed.discard("tenants")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    levels = dict(parent.levels)
    raw_levels = table.get("levels", {})
    if not isinstance(raw_levels, Mapping):
        raise ConfigError(f'{where}.levels: expected a table such as {{ high = "one" }}')
    for level, name in raw_levels.items():
        req = REQUIREMENT_NAMES.get(str(name).lower()) if isinstance(name, str) else None
        if req is None:
            known = ", ".join(REQUIREMENT_NAMES)
            raise ConfigError(f"{where}.levels.{level}: {name!r} is not one of {known}")
        levels[str(level)] = req
    rate = table.get("sample_rate", parent.sample_rate)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ConfigError(f"{where}.sample_rate: expected a number between 0 and 1")
    return replace(parent, levels=levels, sample_rate=float(rate))
