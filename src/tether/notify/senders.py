"""Sending one notification on one channel: email through SMTP (the standard library's
`smtplib`, run in a thread: no async SMTP client is a dependency), Slack-compatible
incoming webhooks through `tether.egress`.

A failed send raises `Transient` (worth another try: connection errors, timeouts, SMTP
4xx, HTTP 429/5xx) or `Permanent` (SMTP 5xx, HTTP 4xx, misconfiguration), with a
message that names the channel's kind and the failure, never its address or
credentials (the Slack URL is the credential).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

import httpx
from pydantic import SecretStr

from tether import egress
from tether.config import Settings
from tether.errors import Permanent, Transient
from tether.models import Notification
from tether.notify.channels import Channel, EmailChannel, SlackChannel


class _SecretUrls(logging.Filter):
    """Redacts, in httpx's request log line ("HTTP Request: POST <url> ..."), the URLs
    that are credentials (Slack webhook URLs): scheme and host stay, the rest goes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.urls and isinstance(record.args, tuple):
            record.args = tuple(self._redact(a) for a in record.args)
        return True

    def _redact(self, value: object) -> object:
        if isinstance(value, httpx.URL) and str(value) in self.urls:
            return f"{value.scheme}://{value.netloc.decode()}/[redacted]"
        return value


_SECRET_URLS = _SecretUrls()
logging.getLogger("httpx").addFilter(_SECRET_URLS)


@dataclass(frozen=True)
class SmtpServer:
    """The SMTP server of the settings (`smtp_*`)."""

    host: str | None
    port: int = 587
    starttls: bool = True
    username: str | None = None
    password: SecretStr | None = None
    sender: str | None = None
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, s: Settings) -> SmtpServer:
        return cls(
            s.smtp_host,
            s.smtp_port,
            s.smtp_starttls,
            s.smtp_username,
            s.smtp_password,
            s.smtp_from,
            s.smtp_timeout,
        )


def message_id(key: str) -> str:
    """A Message-ID made of the idempotency key, so that a resent email is the same
    email to a receiver that deduplicates."""
    return "<" + "".join(c if c.isalnum() or c in "-." else "." for c in key) + "@tether>"


class Senders:
    """Sends a notification on a channel (`send`), whatever its kind."""

    def __init__(self, smtp: SmtpServer, egress_policy: egress.EgressPolicy) -> None:
        self.smtp = smtp
        self.egress_policy = egress_policy

    @classmethod
    def from_settings(cls, settings: Settings) -> Senders:
        """Senders for the SMTP server and the egress policy of `settings`."""
        return cls(SmtpServer.from_settings(settings), egress.EgressPolicy.from_settings(settings))

    async def send(self, channel: Channel, message: Notification, key: str) -> None:
        """Send `message` on `channel`; `key` identifies it across resends."""
        if isinstance(channel, EmailChannel):
            await asyncio.to_thread(self._send_email, channel, message, key)
        else:
            await self._send_slack(channel, message, key)

    # email ------------------------------------------------------------------------------
    def _send_email(self, channel: EmailChannel, message: Notification, key: str) -> None:
        server = self.smtp
        if not server.host or not server.sender:
            raise Permanent("email: smtp_host and smtp_from must be configured")
        mail = EmailMessage()
        mail["From"] = server.sender
        mail["To"] = ", ".join(channel.to)
        mail["Subject"] = message.subject or message.text.splitlines()[0][:120]
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = message_id(key)
        mail.set_content(message.body)
        try:
            with smtplib.SMTP(server.host, server.port, timeout=server.timeout) as smtp:
                if server.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if server.username:
                    password = server.password.get_secret_value() if server.password else ""
                    smtp.login(server.username, password)
                smtp.send_message(mail)
        except smtplib.SMTPResponseException as exc:
            text = f"email: the SMTP server answered {exc.smtp_code}"
            raise (Transient(text) if 400 <= exc.smtp_code < 500 else Permanent(text)) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            text = f"email: every recipient was refused ({', '.join(map(str, codes))})"
            transient = all(400 <= c < 500 for c in codes)
            raise (Transient(text) if transient else Permanent(text)) from None
        except smtplib.SMTPNotSupportedError:
            raise Permanent("email: the SMTP server does not support STARTTLS or AUTH") from None
        except ssl.SSLCertVerificationError:
            raise Permanent("email: the SMTP server's TLS certificate is not trusted") from None
        except OSError as exc:  # connection refused, timeouts, dropped connections
            raise Transient(f"email: cannot reach the SMTP server ({type(exc).__name__})") from None

    # Slack ------------------------------------------------------------------------------
    async def _send_slack(self, channel: SlackChannel, message: Notification, key: str) -> None:
        text = message.body if not message.subject else f"*{message.subject}*\n{message.body}"
        _SECRET_URLS.urls.add(str(httpx.URL(channel.url.get_secret_value())))
        try:
            async with egress.client(self.egress_policy) as http:
                response = await http.post(
                    channel.url.get_secret_value(),
                    json={"text": text},
                    headers={"Idempotency-Key": key},
                )
                await response.aread()
        except egress.EgressRefused as exc:
            # The reason names the address class, never the URL's path (the secret).
            raise Permanent(f"slack: refused by the egress policy ({exc.reason})") from None
        except egress.ResponseTooLarge:
            raise Permanent("slack: the webhook's answer is over the response cap") from None
        except httpx.HTTPError as exc:  # connect errors, timeouts, protocol errors
            raise Transient(f"slack: cannot reach the webhook ({type(exc).__name__})") from None
        status = response.status_code
        if status < 300:
            return
        text = f"slack: the webhook answered {status}"
        if status == 429 or status == 408 or status >= 500:
            after = response.headers.get("retry-after", "")
            raise Transient(text, retry_after=float(after) if after.isdigit() else None)
        raise Permanent(text)
