"""Where notifications go: named channels (email, Slack-compatible incoming webhooks)
and routes that say which triggers of which tenant's and workflow's tasks go to which
channels. Configured in `[tether.notifications]` and in code (`app.notifications`).

A trigger is an event type of the catalogue (`tether.EVENT_CATALOGUE`), so a type a
later release adds (a budget or circuit event) is announced by naming it in a route,
`notify` for the workflows' own `ctx.notify(...)` calls, `webhook.disabled` for a
webhook subscription that was disabled, `dlq.escalated` for a dead-letter group
escalated to someone, or `circuit.opened` for a circuit breaker that opened.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from tether.config import secret_from
from tether.errors import ConfigError
from tether.models import EVENT_CATALOGUE, EventType

NOTIFY_TRIGGER = "notify"
"""The trigger of `ctx.notify(...)` calls that name no channels."""

WEBHOOK_DISABLED_TRIGGER = "webhook.disabled"
"""The trigger of a webhook subscription being disabled (410 Gone, too many failures):
not a task's event, so routes naming it match by tenant only."""

DLQ_ESCALATED_TRIGGER = "dlq.escalated"
"""The trigger of a dead-letter group escalated to someone (docs/dlq.md): not a task's
event, so routes naming it match by tenant only."""

CIRCUIT_OPENED_TRIGGER = "circuit.opened"
"""The trigger of a circuit breaker opening (docs/flow-control.md): not a task's event,
so routes naming it match by tenant only; a fleet-wide breaker's opening matches the
routes of no tenant (the fleet's operators), a tenant's breaker those of its tenant."""

OTHER_TRIGGERS = (
    NOTIFY_TRIGGER,
    WEBHOOK_DISABLED_TRIGGER,
    DLQ_ESCALATED_TRIGGER,
    CIRCUIT_OPENED_TRIGGER,
)
"""Triggers beside the event types of the catalogue."""

DEFAULT_TRIGGERS = (EventType.APPROVAL_REQUESTED.value, EventType.TASK_FAILED.value)
"""What a route announces when it names no triggers."""


@dataclass(frozen=True)
class EmailChannel:
    """Email to `to`, through the SMTP server of the settings (`smtp_host`, ...)."""

    to: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.to or not all(isinstance(a, str) and "@" in a for a in self.to):
            raise ValueError("an email channel needs at least one address (name@host)")


@dataclass(frozen=True)
class SlackChannel:
    """A Slack-compatible incoming webhook: `POST {"text": ...}` to `url`, through
    `tether.egress`. The URL is a secret (it is the credential): it is never logged,
    shown or stored with a notification."""

    url: SecretStr

    def __post_init__(self) -> None:
        if not self.url.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("a Slack channel's url must be an http(s) URL")

    def __repr__(self) -> str:
        return "SlackChannel(url=**********)"


Channel = EmailChannel | SlackChannel


@dataclass(frozen=True)
class NotifyRoute:
    """Send `triggers` of the matching tasks to `channels`. A route without `tenant`
    (`workflow`) matches every tenant (workflow)."""

    triggers: tuple[str, ...]
    channels: tuple[str, ...]
    tenant: str | None = None
    workflow: str | None = None

    def matches(self, trigger: str, tenant: str, workflow: str) -> bool:
        return (
            trigger in self.triggers
            and self.tenant in (None, tenant)
            and self.workflow in (None, workflow or None)
        )


def check_trigger(trigger: str, where: str = "trigger") -> str:
    """`trigger` when it is an event type of the catalogue, `notify`, `webhook.disabled`,
    `dlq.escalated` or `circuit.opened`."""
    if trigger in OTHER_TRIGGERS or trigger in EVENT_CATALOGUE:
        return trigger
    known = ", ".join([*sorted(EVENT_CATALOGUE), *OTHER_TRIGGERS])
    raise ConfigError(f"{where}: {trigger!r} is not an event type ({known})")


@dataclass
class NotificationBook:
    """The channels by name and the routes to them, for every tenant and workflow."""

    channels: dict[str, Channel] = field(default_factory=dict)
    routes: list[NotifyRoute] = field(default_factory=list)

    def channel(self, name: str, channel: Channel) -> None:
        """Define (or replace) the channel `name`."""
        if not isinstance(channel, EmailChannel | SlackChannel):
            raise TypeError("a channel is an EmailChannel or a SlackChannel")
        self.channels[name] = channel

    def route(
        self,
        triggers: Iterable[str] = DEFAULT_TRIGGERS,
        *,
        channels: Sequence[str],
        tenant: str | None = None,
        workflow: str | None = None,
    ) -> NotifyRoute:
        """Send `triggers` (event types, or `notify`) of `tenant`'s / `workflow`'s
        tasks (all, when None) to `channels`, which must be defined already."""
        names = tuple(channels)
        unknown = [c for c in names if c not in self.channels]
        if not names or unknown:
            raise ConfigError(f"route: unknown channel(s) {unknown or '(none named)'}")
        route = NotifyRoute(
            tuple(check_trigger(t) for t in triggers), names, tenant=tenant, workflow=workflow
        )
        self.routes.append(route)
        return route

    @property
    def triggers(self) -> frozenset[str]:
        """Every trigger some route announces."""
        return frozenset(t for r in self.routes for t in r.triggers)

    def channels_for(self, trigger: str, tenant: str, workflow: str) -> list[str]:
        """The channels `trigger` of a task of `tenant` and `workflow` goes to, each once,
        in route order."""
        found: dict[str, None] = {}
        for r in self.routes:
            if r.matches(trigger, tenant, workflow):
                found.update(dict.fromkeys(r.channels))
        return list(found)

    @classmethod
    def from_config(cls, table: Mapping[str, Any] | None) -> NotificationBook:
        """Channels and routes from the `[tether.notifications]` table:

            [tether.notifications.channels.ops-mail]
            type = "email"
            to = ["ops@example.com"]
            [tether.notifications.channels.team]
            type = "slack"
            url_env = "TEAM_SLACK_URL"        # or url = "https://hooks.slack.com/..."
            [[tether.notifications.routes]]
            on = ["approval.requested", "task.failed"]
            channels = ["ops-mail", "team"]
            tenant = "acme"                   # optional
            workflow = "publish"              # optional

        Raises `ConfigError` naming the key at fault.
        """
        book = cls()
        if not table:
            return book
        where = "notifications"
        _only(table, {"channels", "routes"}, where)
        channels = table.get("channels", {})
        if not isinstance(channels, Mapping):
            raise ConfigError(f"{where}.channels: expected tables named by channel")
        for name, spec in channels.items():
            book.channel(str(name), _channel(spec, f"{where}.channels.{name}"))
        routes = table.get("routes", [])
        if not isinstance(routes, list):
            raise ConfigError(f"{where}.routes: expected an array of tables ([[...routes]])")
        for i, spec in enumerate(routes):
            at = f"{where}.routes[{i}]"
            if not isinstance(spec, Mapping):
                raise ConfigError(f"{at}: expected a table")
            _only(spec, {"on", "channels", "tenant", "workflow"}, at)
            on = spec.get("on", list(DEFAULT_TRIGGERS))
            names = spec.get("channels")
            if not isinstance(on, list) or not isinstance(names, list):
                raise ConfigError(f"{at}: `on` and `channels` are lists of names")
            for t in on:
                check_trigger(str(t), f"{at}.on")
            book.route(
                [str(t) for t in on],
                channels=[str(c) for c in names],
                tenant=_optional_str(spec, "tenant", at),
                workflow=_optional_str(spec, "workflow", at),
            )
        return book


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _optional_str(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: expected a string")
    return value


def _channel(spec: Any, where: str) -> Channel:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected a table")
    kind = spec.get("type")
    try:
        if kind == "email":
            _only(spec, {"type", "to"}, where)
            to = spec.get("to")
            addresses = [to] if isinstance(to, str) else to
            if not isinstance(addresses, list):
                raise ConfigError(f"{where}.to: expected an address or a list of addresses")
            return EmailChannel(tuple(str(a) for a in addresses))
        if kind == "slack":
            _only(spec, {"type", "url", "url_env"}, where)
            return SlackChannel(secret_from(spec, "url", where))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    raise ConfigError(f"{where}.type: expected 'email' or 'slack', got {kind!r}")
