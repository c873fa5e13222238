"""Approval endpoints: the tenant's inbox, one request in full, and decisions.

Included by `tether.api.app.create_app` (listed in `OPTIONAL_ROUTERS`). Every lookup is
scoped to the caller's tenant, so another tenant's approval answers 404. The reviewer of
a decision is always the caller's subject; the submitter of a task (its `created_by`)
never decides on its own task's approvals (403). A second decision by the same reviewer,
a decision on a closed approval and one that arrives after the timeout answer 409; the
problem body then carries `approval`, the outcome that stands.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tether.api import cursors, problem_types
from tether.api.deps import require, tether_app
from tether.api.problems import PROBLEM_TYPE, ProblemError, problem_body, responses
from tether.api.schemas import StepOut, TaskOut, Time
from tether.api.tasks import ShortId
from tether.app import Tether
from tether.auth import Permission, Principal
from tether.errors import ApprovalClosed, InvalidTransition, TaskNotFound
from tether.models import Approval, ApprovalFilter
from tether.services import approvals

router = APIRouter(prefix="/v1", tags=["approvals"])

AUTH = (401, 403)
ApprovalId = Annotated[str, Path(min_length=1, max_length=100, description="Approval id")]
Status = Literal["pending", "approved", "rejected"]


class DecisionOut(BaseModel):
    """One reviewer's decision (the audit record: who, when, why, what changed)."""

    reviewer: str
    approve: bool
    reason: str | None = None
    changes: dict[str, Any] | None = None
    at: Time


class ApprovalOut(BaseModel):
    """An approval request, its decisions so far and, once closed, its outcome."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0190f3c2-7a00-7cc1-9d2a-1f2e3d4c5b6a",
                    "task_id": "0190f3c2-6b1e-7cc1-9d2a-1f2e3d4c5b6a",
                    "tenant": "acme",
                    "seq": 3,
                    "workflow": "support-reply",
                    "status": "pending",
                    "risk": "high",
                    "summary": "Send the refund reply to customer 4411",
                    "evidence": ["ticket #4411", "refund policy 3.2"],
                    "impact": "customer-facing email",
                    "rollback": "send a correction",
                    "required_approvers": 1,
                    "approvals": 0,
                    "submitter": "app-backend",
                    "decisions": [],
                    "resolution": None,
                    "reason": None,
                    "changes": None,
                    "created_at": "2024-06-10T06:13:20.000000Z",
                    "expires_at": "2024-06-11T06:13:20.000000Z",
                    "on_timeout": "reject",
                    "decided_at": None,
                }
            ]
        }
    )

    id: str
    task_id: str
    tenant: str
    seq: int = Field(
        description="Position of the approval in the task's step log (below 0: a request "
        "to raise a spend budget, which holds no position)"
    )
    workflow: str | None = None
    status: Status
    risk: str
    summary: str | None = None
    evidence: list[Any] = Field(default_factory=list)
    impact: str | None = None
    rollback: str | None = None
    budget: dict[str, Any] | None = Field(
        default=None,
        description="A request to raise a spend budget (risk `budget`): the ledger line "
        "(`scope` task, tenant or workflow; `subject`; `day`), the `step` waiting, its "
        "`limit`, `spent`, `reserved` and `estimate`, and the `proposed` limits. Approving "
        "grants `proposed`, or the `changes` given (`usd`, `tokens`: the new limits)",
    )
    required_approvers: int = Field(description="Distinct approvals needed to approve")
    approvals: int = Field(description="Approving decisions so far")
    submitter: str | None = Field(default=None, description="Who submitted the task")
    decisions: list[DecisionOut] = Field(default_factory=list)
    resolution: str | None = Field(
        default=None, description="How it closed: reviewer, auto, sampled or timeout"
    )
    reason: str | None = None
    changes: dict[str, Any] | None = Field(
        default=None, description="Edits the approvers made (reach the workflow)"
    )
    created_at: Time
    expires_at: Time | None = None
    on_timeout: str = "reject"
    decided_at: Time | None = None

    @classmethod
    def of(cls, a: Approval) -> ApprovalOut:
        request = a.request or {}
        evidence = request.get("evidence")
        return cls(
            id=a.id,
            task_id=a.task_id,
            tenant=a.tenant,
            seq=a.seq,
            workflow=a.workflow,
            status=a.status,
            risk=a.risk,
            summary=request.get("summary"),
            evidence=evidence if isinstance(evidence, list) else [],
            impact=request.get("impact"),
            rollback=request.get("rollback"),
            budget=request.get("budget") if isinstance(request.get("budget"), dict) else None,
            required_approvers=a.required,
            approvals=sum(1 for d in a.decisions if d.get("approve")),
            submitter=a.submitter,
            decisions=[
                DecisionOut(
                    reviewer=str(d["reviewer"]),
                    approve=bool(d["approve"]),
                    reason=d.get("reason"),
                    changes=d.get("changes"),
                    at=float(d["at"]),
                )
                for d in a.decisions
            ],
            resolution=a.resolution,
            reason=a.reason,
            changes=a.changes,
            created_at=a.created_at,
            expires_at=a.expires_at,
            on_timeout=a.on_timeout,
            decided_at=a.decided_at,
        )


class ApprovalDetail(ApprovalOut):
    """An approval request with its task and the task's steps so far."""

    task: TaskOut
    steps: list[StepOut] = Field(description="The task's step log, in sequence order")


class ApprovalList(BaseModel):
    """A page of the inbox: approval requests, newest first."""

    items: list[ApprovalOut]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last"
    )


class DecisionIn(BaseModel):
    """A reviewer's decision. The reviewer is the caller."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"approve": True, "reason": "checked the refund", "changes": {"amount": 30}}
            ]
        },
    )

    approve: bool = Field(description="true approves (with `changes`, if any), false rejects")
    reason: str = Field(min_length=1, max_length=4000, description="Why (kept in the audit log)")
    changes: dict[str, Any] | None = Field(
        default=None, description="Approve with changes: edits handed to the workflow"
    )


def _conflict(
    request: Request, kind: problem_types.ProblemType, detail: str, approval: Approval
) -> JSONResponse:
    body = problem_body(kind, detail, request.url.path)
    body["approval"] = ApprovalOut.of(approval).model_dump(mode="json")
    return JSONResponse(body, status_code=409, media_type=PROBLEM_TYPE)


async def _approval(app: Tether, approval_id: str, who: Principal) -> Approval:
    found = await approvals.get(app, approval_id, who.tenant)
    if found is None:
        raise ProblemError(problem_types.APPROVAL_NOT_FOUND, "approval not found")
    return found


@router.get(
    "/approvals",
    response_model=ApprovalList,
    summary="The approval inbox",
    responses=responses(*AUTH, 422),
)
async def list_approvals(
    who: Annotated[Principal, Depends(require(Permission.APPROVALS_READ))],
    app: Annotated[Tether, Depends(tether_app)],
    status: Annotated[Status | None, Query(description="Only this status")] = None,
    risk: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    task_id: Annotated[
        str | None, Query(min_length=1, max_length=100, description="Only this task's")
    ] = None,
    short_id: ShortId = None,
    cursor: cursors.Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ApprovalList:
    """The caller's tenant's approval requests, newest first, filtered by status, risk,
    task, or a short id (the beginning or end of the approval's id); page with `cursor`."""
    before = None if cursor is None else cursors.decode("approvals", cursor, (float, str))
    flt = ApprovalFilter(
        tenant=who.tenant,
        status=status,
        risk=risk,
        task_id=task_id,
        short_id=short_id,
        before=None if before is None else (before[0], before[1]),
        limit=limit + 1,
    )
    found = await app.approvals(flt)
    items, next_cursor = cursors.page(
        found, limit, lambda a: cursors.encode("approvals", a.created_at, a.id)
    )
    return ApprovalList(
        items=[ApprovalOut.of(a) for a in items],
        next_cursor=next_cursor,
    )


@router.get(
    "/approvals/{approval_id}",
    response_model=ApprovalDetail,
    summary="An approval request in full",
    responses=responses(*AUTH, 404),
)
async def get_approval(
    approval_id: ApprovalId,
    who: Annotated[Principal, Depends(require(Permission.APPROVALS_READ))],
    app: Annotated[Tether, Depends(tether_app)],
) -> ApprovalDetail:
    """Summary, evidence, impact, rollback, risk, required approvers, the decisions so
    far, and the task with its steps so far: what a reviewer needs to decide."""
    found = await approvals.review(app, approval_id, who.tenant)
    if found is None:
        raise ProblemError(problem_types.APPROVAL_NOT_FOUND, "approval not found")
    return ApprovalDetail(
        **ApprovalOut.of(found.approval).model_dump(),
        task=TaskOut.of(found.task),
        steps=[StepOut.of(s) for s in found.steps],
    )


@router.post(
    "/approvals/{approval_id}/decision",
    response_model=ApprovalOut,
    summary="Approve or reject",
    responses={
        **responses(400, *AUTH, 404, 413, 415, 422),
        409: {
            "description": "Already decided by this reviewer, closed, or past its timeout; "
            "the body's `approval` member is the outcome that stands",
            "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
    },
)
async def decide(
    request: Request,
    approval_id: ApprovalId,
    decision: Annotated[DecisionIn, Body()],
    who: Annotated[Principal, Depends(require(Permission.APPROVALS_DECIDE))],
    app: Annotated[Tether, Depends(tether_app)],
) -> ApprovalOut | JSONResponse:
    """Record the caller's decision. One rejection closes the request; approvals close
    it once enough distinct reviewers agreed (the risk policy says how many). Answers
    the approval as it now stands (still `pending` when more approvers are needed)."""
    approval = await _approval(app, approval_id, who)
    if approval.submitter is not None and approval.submitter == who.subject:
        raise ProblemError(
            problem_types.SELF_APPROVAL, "the submitter of a task cannot decide on its own approval"
        )
    try:
        decided = await app.decide(
            approval_id,
            reviewer=who.subject,
            approve=decision.approve,
            reason=decision.reason,
            changes=decision.changes,
            tenant=who.tenant,
        )
    except ApprovalClosed as exc:
        return _conflict(request, problem_types.APPROVAL_CLOSED, str(exc), exc.approval)
    except InvalidTransition as exc:  # this reviewer already decided
        current = await _approval(app, approval_id, who)
        return _conflict(request, problem_types.ALREADY_DECIDED, str(exc), current)
    except TaskNotFound:
        raise ProblemError(problem_types.APPROVAL_NOT_FOUND, "approval not found") from None
    return ApprovalOut.of(decided)
