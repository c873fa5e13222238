"""Test app for the notification crash test: `ctx.notify` by email, then a step that is
slow on the task's first claim (the worker is SIGKILLed in it). The SMTP server's port
comes from NOTIFY_TEST_SMTP_PORT (the test's aiosmtpd)."""

from __future__ import annotations

import os

from apps.crashy import long_then_quick
from tether import Context, EmailChannel, Tether, load_settings

app = Tether(
    settings=load_settings(
        {
            "smtp_host": "127.0.0.1",
            "smtp_port": int(os.environ.get("NOTIFY_TEST_SMTP_PORT", "2525")),
            "smtp_starttls": False,
            "smtp_from": "tether@example.test",
        }
    )
)
app.notifications.channel("ops", EmailChannel(("ops@example.test",)))


@app.workflow("notify_then_slow")
async def notify_then_slow(ctx: Context, log: str) -> str:
    """Notify, then a step that takes a minute on the first claim."""
    await ctx.notify("Started the nightly import", subject="Nightly import", channels=["ops"])
    return await ctx.step("slow", long_then_quick, log, 60.0, ctx.attempt)
