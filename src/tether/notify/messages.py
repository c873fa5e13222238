"""What a notification says: one message per trigger, rendered when the event is fanned
out. Approval requests and failures have their own wording; any other event type (a
budget or circuit event of a later release) gets the generic one, so announcing it
needs no code."""

from __future__ import annotations

import httpx

from tether.models import Approval, Event, EventType, Notification, Task
from tether.models.breakers import FLEET, Breaker
from tether.models.dlq import DlqAction, DlqGroup
from tether.models.webhooks import WebhookSubscription

SUMMARY_LIMIT = 500
"""Characters of a summary or error message quoted in a notification."""


def console_link(console_url: str | None, kind: str, ident: str) -> str | None:
    """`{console_url}/{kind}/{id}`, or None without a console URL."""
    if not console_url:
        return None
    return f"{console_url.rstrip('/')}/{kind}/{ident}"


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def render(
    event: Event, task: Task, approval: Approval | None, console_url: str | None
) -> Notification:
    """The notification `event` (of `task`; `approval` for approval events) calls for."""
    if event.type == EventType.APPROVAL_REQUESTED and approval is not None:
        summary = _clip(str(approval.request.get("summary") or ""))
        needed = approval.required
        return Notification(
            subject=f"[tether] Approval needed ({approval.risk} risk): {summary[:80]}",
            text=(
                f"Approval requested for task {task.id} ({task.workflow}, tenant "
                f"{task.tenant}).\n"
                f"Summary: {summary}\n"
                f"Risk: {approval.risk}; needs {needed} approver{'s' if needed != 1 else ''}."
            ),
            link=console_link(console_url, "approvals", approval.id),
        )
    if event.type == EventType.TASK_FAILED:
        error = task.error
        kind = error.type if error else (event.error_class or "error")
        message = _clip(error.message if error else str((event.data or {}).get("message", "")))
        step = f" at step {event.step!r}" if event.step else ""
        return Notification(
            subject=f"[tether] Task failed: {task.workflow} ({kind})",
            text=(
                f"Task {task.id} of workflow {task.workflow} (tenant {task.tenant}) "
                f"failed{step}: {kind}: {message}\n"
                f"Reason: {event.decision or 'failed'}; attempt {event.attempt}."
            ),
            link=console_link(console_url, "tasks", task.id),
        )
    details = ", ".join(
        f"{k}={v}" for k, v in sorted((event.data or {}).items()) if isinstance(v, str | int)
    )
    return Notification(
        subject=f"[tether] {event.type}: {task.workflow}",
        text=(
            f"{event.type} for task {task.id} ({task.workflow}, tenant {task.tenant})"
            + (f": {event.decision}" if event.decision else "")
            + (f" ({details})" if details else "")
            + "."
        ),
        link=console_link(console_url, "tasks", task.id),
    )


def render_webhook_disabled(sub: WebhookSubscription) -> Notification:
    """What the tenant's operators are told when a webhook subscription is disabled. The
    URL is named by its host only (its path or query may hold a token)."""
    try:
        host = httpx.URL(sub.url).host or "?"
    except httpx.InvalidURL:
        host = "?"
    return Notification(
        subject=f"[tether] Webhook subscription disabled ({host})",
        text=(
            f"Webhook subscription {sub.id} of tenant {sub.tenant} (to {host}) was "
            f"disabled: {sub.disabled_reason or 'disabled'}. Its events are no longer "
            "delivered; fix the receiver, re-enable the subscription "
            f"(tether webhooks update {sub.id} --enable) and replay what it missed."
        ),
    )


def render_dlq_escalated(
    group: DlqGroup, action: DlqAction, console_url: str | None
) -> Notification:
    """What the tenant's channels are told when a dead-letter group is escalated."""
    error = group.example_error
    where = f" at step {group.step!r}" if group.step else ""
    named = f" ({len(action.task_ids)} tasks named)" if action.task_ids else ""
    return Notification(
        subject=f"[tether] Dead letters escalated to {action.assignee}: {group.error_type}",
        text=(
            f"{action.actor} escalated the dead-letter group {group.fingerprint} of tenant "
            f"{group.tenant} to {action.assignee}{named}.\n"
            f"Note: {_clip(action.reason or '-')}\n"
            f"{group.open} open of {group.failures} failures{where} in "
            f"{', '.join(group.workflows) or '-'}: {group.error_type}: {_clip(error.message)}"
        ),
        link=console_link(console_url, "dlq", group.fingerprint),
    )


def render_circuit_opened(breaker: Breaker) -> Notification:
    """What operators are told when a circuit breaker opens: which integration, whose
    breaker, why and until when. Never an error's text: a fleet-wide breaker counts every
    tenant's steps."""
    whose = "every tenant" if breaker.tenant == FLEET else f"tenant {breaker.tenant}"
    if breaker.open_until is None:
        until = "until it is closed by hand (tether breaker close)"
    else:
        wait = max(0.0, breaker.open_until - (breaker.opened_at or breaker.open_until))
        until = f"for {wait:g} s, then a probe tries it again"
    return Notification(
        subject=f"[tether] Circuit open: {breaker.integration}",
        text=(
            f"The circuit breaker of {breaker.integration} ({whose}) opened: "
            f"{_clip(breaker.reason or 'opened')}.\n"
            f"Steps calling {breaker.integration} wait (circuit_open) {until}."
        ),
    )
