"""Risk policy: what an approval request of a given risk level needs.

Approval is layered by impact (seed 000): some actions pass automatically, some need one
reviewer, the riskiest two distinct reviewers, and a sampled share of medium-risk work
can be spot-checked while the rest flows. The submitter of a task never approves it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum


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
