"""Notifications end to end, on both backends: a real SMTP server (aiosmtpd) and a real
local HTTP receiver for Slack, real workers. An approval request arrives by mail with
its summary, risk and review link; a failure arrives in Slack; a failed send is retried;
`ctx.notify` sends once although its task is re-claimed and replayed."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from receiver import Behaviour, Receiver
from smtp_server import SmtpServer
from tether import Context, Permanent, TaskStatus, Tether, load_settings
from tether.models import ApprovalFilter
from tether.notify import EmailChannel, NotifierOptions, SlackChannel
from tether.notify.notifier import CURSOR
from tether.retry import RetryPolicy
from tether.services import webhooks

CONSOLE = "https://console.test/"
SLACK_PATH = "/services/T000/B000/very-secret-token"


@pytest.fixture
def smtp() -> Any:
    with SmtpServer() as server:
        yield server


@pytest.fixture
async def build(store_url: str, smtp: SmtpServer) -> AsyncIterator[Callable[..., Tether]]:
    apps: list[Tether] = []

    def make(**overrides: Any) -> Tether:
        values: dict[str, Any] = {
            "database_url": store_url,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "smtp_starttls": False,
            "smtp_from": "tether@example.test",
            "console_url": CONSOLE,
            "egress_allow": ["127.0.0.1"],
            "poll_interval": 0.05,
        }
        values.update(overrides)
        app = Tether(settings=load_settings(values))
        app.notifications.options = NotifierOptions(
            poll_interval=0.05, retry=RetryPolicy(max_attempts=5, initial_interval=0.1)
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        await app.close()


async def _place_cursor(app: Tether) -> None:
    """The notifier starts at the head of the feed on its first run: place its cursor
    before the test's events, or an eager start may write them before it looks."""
    await app.open()
    await app.store.notify_position(CURSOR, app.clock.now())


async def _until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_an_approval_request_arrives_by_mail(
    build: Callable[..., Tether], smtp: SmtpServer
) -> None:
    app = build()
    app.notifications.channel("reviewers", EmailChannel(("reviewers@example.test",)))
    app.notifications.route(["approval.requested"], channels=["reviewers"])

    @app.workflow("refund")
    async def refund(ctx: Context, amount: int) -> bool:
        decision = await ctx.approval(summary=f"Refund {amount} EUR to customer 4411", risk="high")
        return decision.approved

    await _place_cursor(app)
    async with app.worker():
        handle = await app.submit("refund", {"amount": 30})
        (mail,) = await smtp.wait_for(lambda m: len(m) >= 1)
        (approval,) = await app.store.list_approvals(ApprovalFilter(status="pending"))
        assert approval.task_id == handle.id
        body = mail.get_content()
        assert mail["To"] == "reviewers@example.test"
        assert mail["From"] == "tether@example.test"
        assert "high risk" in mail["Subject"]
        assert "Refund 30 EUR to customer 4411" in body
        assert "Risk: high" in body
        assert f"https://console.test/approvals/{approval.id}" in body
        (record,) = await _until(
            lambda: _sent(app, handle.id)
        )  # the outbox row is settled once the mail went
        assert record.trigger == "approval.requested" and record.attempts == 1
        await app.decide(approval.id, reviewer="rita", approve=True, reason="ok")
        assert await handle.result(timeout=10) is True
    assert len(smtp.messages) == 1  # the decision and the end announce nothing here


async def _sent(app: Tether, task_id: str) -> list[Any]:
    found = await app.store.list_notifications(task_id=task_id)
    return found if found and all(r.status == "sent" for r in found) else []


async def test_a_failed_task_arrives_in_slack_and_a_500_is_retried(
    build: Callable[..., Tether], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = iter([500, 200])

    def respond(_: Any) -> Behaviour:
        return Behaviour(status=next(answers, 200))

    async with Receiver(respond=respond) as slack:
        app = build()
        url = f"{slack.url}{SLACK_PATH}"
        app.notifications.channel("team", SlackChannel(SecretStr(url)))
        app.notifications.route(["task.failed"], channels=["team"], workflow="charge")

        @app.workflow("charge")
        async def charge(ctx: Context, order: int) -> None:
            await ctx.step("charge-card", _decline, order)

        @app.workflow("other")
        async def other(ctx: Context) -> None:
            raise Permanent("not announced: no route for this workflow")

        await _place_cursor(app)
        async with app.worker():
            ignored = await app.submit("other", {})
            handle = await app.submit("charge", {"order": 17})
            await slack.wait_for(lambda r: len(r) >= 2)
            (record,) = await _until(lambda: _sent(app, handle.id))
            assert (await app.get(ignored.id)).status == TaskStatus.FAILED
        first, second = slack.requests
        assert first.body == second.body  # the same message, sent again after the 500
        assert first.path == SLACK_PATH
        assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
        text = json.loads(second.body)["text"]
        assert "charge" in text and handle.id in text
        assert "Permanent: card declined for order 17" in text
        assert "charge-card" in text
        assert f"https://console.test/tasks/{handle.id}" in text
        assert (
            record.attempts == 2
            and record.last_error == "Transient: slack: the webhook answered 500"
        )
        assert await app.store.list_notifications(task_id=ignored.id) == []
        # The webhook URL is the credential: nowhere in what was stored or logged.
        stored = [r.message.to_json() for r in await app.store.list_notifications()]
        assert "very-secret-token" not in json.dumps(stored) + (record.last_error or "")
        assert "very-secret-token" not in caplog.text


async def _decline(order: int) -> None:
    raise Permanent(f"card declined for order {order}")


async def test_ctx_notify_sends_once_across_a_reclaim(
    build: Callable[..., Tether], smtp: SmtpServer
) -> None:
    app = build()
    app.notifications.channel("ops", EmailChannel(("ops@example.test",)))
    app.notifications.route(["notify"], channels=["ops"], workflow="report")
    entered = asyncio.Event()
    release = asyncio.Event()
    calls = {"hang": 0}

    async def hang() -> str:
        calls["hang"] += 1
        entered.set()
        if calls["hang"] == 1:
            await release.wait()  # never set: the first worker is stopped in here
        return "done"

    @app.workflow("report")
    async def report(ctx: Context) -> list[str]:
        sent = await ctx.notify("The weekly report is ready", subject="Report ready")
        await ctx.step("hang", hang)
        return sent

    await _place_cursor(app)
    async with app.worker(grace=0):
        handle = await app.submit("report", {})
        await smtp.wait_for(lambda m: len(m) >= 1)
        await asyncio.wait_for(entered.wait(), 10)
    # The first worker handed the task back mid-step: the next one replays it from the
    # top, and the recorded notify step does not send again.
    assert (await app.get(handle.id)).status == TaskStatus.QUEUED
    await _place_cursor(app)
    async with app.worker():
        assert await handle.result(timeout=10) == ["ops"]
    assert calls["hang"] == 2
    (mail,) = smtp.messages
    assert mail["Subject"] == "Report ready"
    assert mail.get_content().strip() == "The weekly report is ready"
    assert mail["Message-ID"] == f"<{handle.id}.1@tether>"  # the step's idempotency key
    steps = await app.steps(handle.id)
    assert [(s.name, s.result) for s in steps] == [("notify", ["ops"]), ("hang", "done")]


async def test_a_webhook_subscription_disabled_by_410_is_announced(
    build: Callable[..., Tether], smtp: SmtpServer
) -> None:
    async with Receiver(Behaviour(status=410)) as gone:
        app = build()
        app.notifications.channel("ops", EmailChannel(("ops@example.test",)))
        app.notifications.route(["webhook.disabled"], channels=["ops"], tenant="t1")

        @app.workflow("quick")
        async def quick(ctx: Context) -> int:
            return 1

        await app.open()
        sub = await webhooks.create(app, "t1", f"{gone.url}/in?token=abc123", ["task.succeeded"])
        await _place_cursor(app)
        async with app.worker(webhooks=True):
            await app.submit("quick", {}, tenant="t2")  # not this tenant's: no delivery
            handle = await app.submit("quick", {}, tenant="t1")
            (mail,) = await smtp.wait_for(lambda m: len(m) >= 1)
            # The mail arrives before its outbox row is settled: wait for that too,
            # while the notifier still runs.
            (record,) = await _until(lambda: _settled(app, "t1"))
        assert (await app.get(handle.id, tenant="t1")).status == TaskStatus.SUCCEEDED
        body = mail.get_content()
        assert "Webhook subscription disabled (127.0.0.1)" in mail["Subject"]
        assert sub.id in body and "410" in body
        assert "abc123" not in body  # the URL is named by its host only
        assert (record.trigger, record.status, record.task_id) == ("webhook.disabled", "sent", None)


async def _settled(app: Tether, tenant: str) -> list[Any]:
    found = await app.store.list_notifications(tenant=tenant)
    return found if found and all(r.status != "pending" for r in found) else []
