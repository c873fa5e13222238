"""Notifications: email (SMTP) and Slack-compatible incoming webhooks, on approval
requests, failures and any other event type a route names, and from `ctx.notify`.
See docs/notifications.md and ADR 69."""

from tether.notify.channels import (
    DEFAULT_TRIGGERS,
    NOTIFY_TRIGGER,
    EmailChannel,
    NotificationBook,
    NotifyRoute,
    SlackChannel,
)
from tether.notify.messages import render
from tether.notify.notifications import Notifications
from tether.notify.notifier import Notifier, NotifierOptions
from tether.notify.senders import Senders, SmtpServer

__all__ = [
    "DEFAULT_TRIGGERS",
    "NOTIFY_TRIGGER",
    "EmailChannel",
    "NotificationBook",
    "Notifications",
    "Notifier",
    "NotifierOptions",
    "NotifyRoute",
    "Senders",
    "SlackChannel",
    "SmtpServer",
    "render",
]
