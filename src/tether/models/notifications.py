"""Notifications (email, Slack) and the receipts of inbound signed webhooks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Notification:
    """A message for people: the subject and text a channel sends (an email's subject
    and body, a Slack message's text), and a link to the console page it is about."""

    text: str
    subject: str = ""
    link: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "text": self.text, "link": self.link}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        return cls(text=data["text"], subject=data.get("subject", ""), link=data.get("link"))

    @property
    def body(self) -> str:
        """The text, with the link on a line of its own when there is one."""
        return self.text if self.link is None else f"{self.text}\n\n{self.link}"


@dataclass
class NotificationRecord:
    """One notification of the outbox: a message for one channel, caused by one event
    (`trigger` is its type) of one task, and how sending it went."""

    id: str
    tenant: str
    channel: str
    trigger: str
    message: Notification
    task_id: str | None = None
    event_id: int | None = None
    status: str = "pending"
    """pending (to send, or being sent), sent, or failed (gave up)."""
    attempts: int = 0
    next_at: float = 0.0
    last_error: str | None = None
    created_at: float = 0.0
    sent_at: float | None = None


@dataclass(frozen=True)
class HookReceipt:
    """What an inbound webhook did: the task it started or signalled. A redelivery of
    the same `webhook_id` to the same hook gets this receipt back (`replayed`)."""

    hook: str
    webhook_id: str
    tenant: str
    action: str
    """`started` (a new task) or `signalled` (a signal to an existing task)."""
    task_id: str
    signal_id: int | None
    received_at: float
    replayed: bool = False
