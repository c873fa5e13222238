"""The senders against real servers on loopback: SMTP with STARTTLS and a login
(aiosmtpd), refusals and an absent server; Slack through the egress guard. The
password and the webhook URL never appear in what a failure says."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from receiver import Behaviour, Receiver
from smtp_server import SmtpServer, free_port
from tether import egress
from tether.errors import Permanent, Transient
from tether.models import Notification
from tether.notify import EmailChannel, Senders, SlackChannel
from tether.notify.senders import SmtpServer as SmtpSettings

MESSAGE = Notification("body text", subject="Subject line", link="https://c.test/tasks/1")
OPEN = egress.EgressPolicy(allow=["127.0.0.1"])


def _self_signed(name: str, folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_email_over_starttls_with_a_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _self_signed("localhost", tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts this certificate
    with SmtpServer(login=("tether", "hunter2"), tls=tls, hostname="localhost") as server:
        smtp = SmtpSettings(
            "localhost",
            server.port,
            starttls=True,
            username="tether",
            password=SecretStr("hunter2"),
            sender="tether@example.test",
        )
        await Senders(smtp, OPEN).send(EmailChannel(("a@example.test",)), MESSAGE, "t-1:3")
        (mail,) = await server.wait_for(lambda m: len(m) >= 1)
        assert server.logins == ["tether"]
        assert mail["Subject"] == "Subject line"
        assert mail["Message-ID"] == "<t-1.3@tether>"
        assert mail.get_content().replace("\r\n", "\n").strip() == (
            "body text\n\nhttps://c.test/tasks/1"
        )
        # The wrong password: refused for good, and the error does not quote it.
        wrong = SmtpSettings(
            "localhost",
            server.port,
            username="tether",
            password=SecretStr("letmein"),
            sender="tether@example.test",
        )
        with pytest.raises(Permanent) as refused:
            await Senders(wrong, OPEN).send(EmailChannel(("a@example.test",)), MESSAGE, "k")
        assert "535" in str(refused.value) and "letmein" not in str(refused.value)
        # No STARTTLS on a server that requires it... and none offered: the plain login
        # is refused before any password is sent.
        plain = SmtpSettings(
            "localhost",
            server.port,
            starttls=False,
            username="tether",
            password=SecretStr("hunter2"),
            sender="tether@example.test",
        )
        with pytest.raises(Permanent):
            await Senders(plain, OPEN).send(EmailChannel(("a@example.test",)), MESSAGE, "k")
    assert len(server.messages) == 1


async def test_an_absent_smtp_server_is_transient() -> None:
    smtp = SmtpSettings("127.0.0.1", free_port(), starttls=False, sender="t@example.test")
    with pytest.raises(Transient, match="cannot reach the SMTP server"):
        await Senders(smtp, OPEN).send(EmailChannel(("a@example.test",)), MESSAGE, "k")
    unset = SmtpSettings(None)
    with pytest.raises(Permanent, match="smtp_host"):
        await Senders(unset, OPEN).send(EmailChannel(("a@example.test",)), MESSAGE, "k")


@pytest.mark.parametrize(
    ("status", "kind"), [(404, Permanent), (410, Permanent), (429, Transient), (503, Transient)]
)
async def test_slack_answers_are_classified(status: int, kind: type[Exception]) -> None:
    async with Receiver(Behaviour(status=status, headers={"retry-after": "7"})) as slack:
        channel = SlackChannel(SecretStr(f"{slack.url}/services/T/B/token-xyz"))
        with pytest.raises(kind) as failed:
            await Senders(SmtpSettings(None), OPEN).send(channel, MESSAGE, "k-1")
        assert "token-xyz" not in str(failed.value)
        assert str(status) in str(failed.value)
        if status == 429:
            assert isinstance(failed.value, Transient) and failed.value.retry_after == 7
        (request,) = slack.requests
        assert request.headers["idempotency-key"] == "k-1"


async def test_slack_to_a_private_address_is_refused_without_allowlisting() -> None:
    async with Receiver() as slack:
        channel = SlackChannel(SecretStr(f"{slack.url}/services/T/B/token-xyz"))
        with pytest.raises(Permanent, match="egress") as refused:
            await Senders(SmtpSettings(None), egress.EgressPolicy()).send(channel, MESSAGE, "k")
        assert "token-xyz" not in str(refused.value)
        assert slack.requests == [] and slack.connections == 0
