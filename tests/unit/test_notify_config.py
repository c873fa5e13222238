"""Notification channels and routes, and inbound hooks, from the config file's tables
and from code; what notifications say. No database."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from pydantic import SecretStr

from tether import ConfigError, load_settings
from tether.inbound import HookBook, HookMappingError, make_hook
from tether.models import Approval, Event, Task, TaskError, TaskStatus
from tether.notify import EmailChannel, NotificationBook, SlackChannel, render

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_channels_and_routes_from_the_config_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_URL", "https://hooks.slack.example/services/T/B/secret")
    book = NotificationBook.from_config(
        {
            "channels": {
                "ops": {"type": "email", "to": ["ops@example.test", "oncall@example.test"]},
                "team": {"type": "slack", "url_env": "TEAM_URL"},
            },
            "routes": [
                {"channels": ["ops"]},  # the default triggers, every tenant and workflow
                {"on": ["task.failed", "notify"], "channels": ["team", "ops"], "tenant": "acme"},
                {"on": ["task.cancelled"], "channels": ["team"], "workflow": "publish"},
            ],
        }
    )
    assert book.channels["ops"] == EmailChannel(("ops@example.test", "oncall@example.test"))
    assert "secret" not in repr(book.channels["team"])
    assert book.channels_for("task.failed", "acme", "x") == ["ops", "team"]
    assert book.channels_for("task.failed", "other", "x") == ["ops"]
    assert book.channels_for("approval.requested", "other", "x") == ["ops"]
    assert book.channels_for("task.cancelled", "other", "publish") == ["team"]
    assert book.channels_for("task.cancelled", "other", "x") == []
    assert book.channels_for("notify", "acme", "x") == ["team", "ops"]
    assert book.triggers == {"approval.requested", "task.failed", "task.cancelled", "notify"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"routes": [{"on": ["task.exploded"], "channels": []}]}, "'task.exploded' is not"),
        ({"routes": [{"channels": ["nowhere"]}]}, "unknown channel"),
        ({"channels": {"x": {"type": "pager"}}}, "channels.x.type"),
        ({"channels": {"x": {"type": "email", "to": ["nobody"]}}}, "channels.x"),
        ({"channels": {"x": {"type": "slack", "url_env": "UNSET_VAR"}}}, "UNSET_VAR is unset"),
        ({"channels": {"x": {"type": "slack"}}}, "url (or url_env) is required"),
        ({"channels": {"x": {"type": "email", "to": "a@b", "cc": 1}}}, "unknown key(s) cc"),
        ({"routes": {"channels": []}}, "array of tables"),
        ({"chanels": {}}, "unknown key(s) chanels"),
    ],
)
def test_mistakes_are_config_errors_naming_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        NotificationBook.from_config(table)


def test_routes_in_code_check_their_names() -> None:
    book = NotificationBook()
    book.channel("team", SlackChannel(SecretStr("https://hooks.example/x")))
    with pytest.raises(ConfigError):
        book.route(["task.failed"], channels=["missing"])
    with pytest.raises(ConfigError):
        book.route(["not.a.type"], channels=["team"])
    book.route(["task.failed"], channels=["team"], tenant="acme", workflow="w")
    assert book.channels_for("task.failed", "acme", "w") == ["team"]
    assert book.channels_for("task.failed", "acme", "v") == []


def test_settings_take_the_tables_as_json_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "TETHER_NOTIFICATIONS",
        '{"channels": {"ops": {"type": "email", "to": "ops@example.test"}}, '
        '"routes": [{"channels": ["ops"]}]}',
    )
    monkeypatch.setenv("TETHER_SMTP_PASSWORD", "hunter2")
    settings = load_settings()
    assert NotificationBook.from_config(settings.notifications).channels_for(
        "task.failed", "t", "w"
    ) == ["ops"]
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())


def _task(**over: Any) -> Task:
    values: dict[str, Any] = dict(
        id="0190-task",
        tenant="acme",
        workflow="refund",
        workflow_version=1,
        queue="default",
        priority=0,
        status=TaskStatus.FAILED,
        input=None,
        created_at=0.0,
        updated_at=0.0,
    )
    values.update(over)
    return Task(**values)


def test_what_notifications_say() -> None:
    approval = Approval(
        id="0190-appr",
        task_id="0190-task",
        tenant="acme",
        workflow="refund",
        seq=1,
        status="pending",
        risk="critical",
        request={"summary": "Refund  30 EUR\nto customer 4411"},
        required=2,
        submitter=None,
        created_at=0.0,
    )
    event = Event(1, "0190-task", "acme", 0.0, "approval.requested", data={"approval_id": "x"})
    asked = render(event, _task(status=TaskStatus.WAITING), approval, "https://c.test/")
    assert "Refund 30 EUR to customer 4411" in asked.text
    assert "Risk: critical; needs 2 approvers." in asked.text
    assert asked.link == "https://c.test/approvals/0190-appr"
    assert "critical risk" in asked.subject

    error = TaskError(type="Permanent", message="card declined", fingerprint="f", step="charge")
    failed = Event(
        2, "0190-task", "acme", 0.0, "task.failed", step="charge", decision="step_failed_permanent"
    )
    told = render(failed, _task(error=error), None, None)
    assert "failed at step 'charge': Permanent: card declined" in told.text
    assert told.link is None
    # A type with no wording of its own (a later release's budget event) still reads.
    other = Event(
        3,
        "0190-task",
        "acme",
        0.0,
        "task.cancelled",
        decision="cancel_requested",
        data={"by": "ops"},
    )
    generic = render(other, _task(), None, "https://c.test")
    assert generic.text.startswith("task.cancelled for task 0190-task")
    assert "by=ops" in generic.text and generic.link == "https://c.test/tasks/0190-task"


def test_hooks_from_the_config_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    book = HookBook.from_config(
        {
            "in": {"secret_env": "HOOK_SECRET", "workflow": "ingest", "input": "data.report"},
            "go": {"secret": SECRET, "signal": "go", "task_id": "data.task", "payload": "data"},
        }
    )
    start, go = book.hooks["in"], book.hooks["go"]
    assert start.start_input({"data": {"report": {"n": 1}}}) == {"n": 1}
    assert go.target_task({"data": {"task": "t-1"}}, {}) == "t-1"
    assert go.signal_payload({"data": {"task": "t-1"}}) == {"task": "t-1"}
    with pytest.raises(HookMappingError, match=r"'data\.report'"):
        start.start_input({"data": {}})
    assert SECRET not in repr(start)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"secret": SECRET}, "a workflow to start or a signal"),
        ({"secret": SECRET, "workflow": "w", "signal": "s"}, "a workflow to start or a signal"),
        ({"secret": SECRET, "signal": "s"}, "needs task_id or task_header"),
        ({"secret": "whsec_%%%", "workflow": "w"}, "not a whsec_ secret"),
        ({"workflow": "w"}, "secret"),
        ({"secret": SECRET, "workflow": "w", "inputs": "x"}, "unknown key"),
    ],
)
def test_hook_mistakes_are_config_errors(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HookBook.from_config({"h": spec})


def test_a_hook_in_code_reads_the_task_from_a_header() -> None:
    hook = make_hook("h", secret=SECRET, signal="go", task_header="X-Task")
    assert hook.target_task({}, {"x-task": "t-9"}) == "t-9"
    with pytest.raises(HookMappingError, match="X-Task header is missing"):
        hook.target_task({}, {})
