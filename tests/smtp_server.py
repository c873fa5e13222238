"""A real SMTP server (aiosmtpd) on 127.0.0.1 for the notification tests: it records
every message it accepts, can require a login, and can offer STARTTLS."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Recorder:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


class SmtpServer:
    """`with SmtpServer() as smtp:` then point `smtp_host`/`smtp_port` at it."""

    def __init__(
        self,
        *,
        login: tuple[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        hostname: str = "127.0.0.1",
    ) -> None:
        self.recorder = _Recorder()
        self.port = free_port()
        self.logins: list[str] = []
        kwargs: dict[str, Any] = {}
        if login is not None:
            user, password = login

            def authenticate(
                server: Any, session: Any, envelope: Any, mechanism: str, data: Any
            ) -> AuthResult:
                ok = (
                    isinstance(data, LoginPassword)
                    and data.login.decode() == user
                    and data.password.decode() == password
                )
                if ok:
                    self.logins.append(user)
                return AuthResult(success=ok, handled=False)

            kwargs.update(authenticator=authenticate, auth_required=True)
            kwargs["auth_require_tls"] = tls is not None
        if tls is not None:
            kwargs.update(tls_context=tls, require_starttls=True)
        self.controller = Controller(
            self.recorder, hostname=hostname, port=self.port, server_hostname=hostname, **kwargs
        )

    @property
    def messages(self) -> list[EmailMessage]:
        return self.recorder.messages

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    async def wait_for(
        self, done: Callable[[list[EmailMessage]], bool], timeout: float = 15.0
    ) -> list[EmailMessage]:
        """Wait until `done(messages)` holds (polling, with a deadline)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not done(self.messages):
            if loop.time() > end:
                raise AssertionError(f"smtp: condition not met, {len(self.messages)} messages")
            await asyncio.sleep(0.02)
        return self.messages
