"""The egress guard (tether.egress): what it refuses, that it refuses before any
connection (a recording network backend proves no connect was attempted), that the
connect-time check catches DNS rebinding, and the limits (redirects, timeouts, size).

Refused addresses are never contacted: their tests either stop at `check_url` (which
only resolves, and an IP literal resolves without DNS) or go through a client whose
socket-opening backend records every connect and must record none.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from typing import Any

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from receiver import Behaviour, Receiver
from tether import egress
from tether.config import load_settings
from tether.egress import EgressPolicy, EgressRefused, IPAddress, ResponseTooLarge


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Opens real sockets, and records every (host, port) it is asked to connect to."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        return await self.inner.connect_tcp(host, port, **kwargs)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def fixed_resolver(table: dict[str, list[str]]) -> egress.Resolver:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        if host not in table:
            raise OSError(f"no such host {host}")
        return [ipaddress.ip_address(a) for a in table[host]]

    return resolve


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", "http is allowed only to allowlisted"),
        ("https://169.254.169.254/latest/meta-data", "cloud metadata"),
        ("https://[fd00:ec2::254]/", "cloud metadata"),
        ("http://10.0.0.1/", "http is allowed only to allowlisted"),
        ("https://10.0.0.1/", "private address"),
        ("https://192.168.1.20/", "private address"),
        ("https://127.0.0.1/", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://[::ffff:a9fe:a9fe]/", "cloud metadata"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://224.0.0.1/", "multicast"),
        ("https://240.0.0.1/", "reserved"),
        ("https://100.64.0.1/", "not a public address"),
        ("https://localhost/", "'localhost' resolves to 127.0.0.1"),
        ("ftp://example.com/", "scheme 'ftp'"),
        ("https://user:pw@example.com/", "credentials"),
        ("not a url", "scheme"),
    ],
)
async def test_check_url_refuses_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(EgressRefused) as info:
        await egress.check_url(url)
    assert reason in str(info.value)


async def test_check_url_accepts_public_https_and_normalises() -> None:
    assert await egress.check_url("https://93.184.216.34/hook") == "https://93.184.216.34/hook"
    policy = EgressPolicy(resolver=fixed_resolver({"hooks.example.com": ["93.184.216.34"]}))
    await egress.check_url("https://hooks.example.com/x?token=1", policy)


async def test_one_private_address_among_public_ones_refuses_the_name() -> None:
    policy = EgressPolicy(resolver=fixed_resolver({"mixed.test": ["93.184.216.34", "10.1.2.3"]}))
    with pytest.raises(EgressRefused, match=r"10\.1\.2\.3, which is a private address"):
        await egress.check_url("https://mixed.test/", policy)


async def test_the_allowlist_takes_names_addresses_and_networks() -> None:
    resolver = fixed_resolver({"hooks.internal": ["10.0.0.5"], "other.internal": ["10.9.9.9"]})
    by_name = EgressPolicy(allow=["hooks.internal"], resolver=resolver)
    await egress.check_url("http://hooks.internal:8080/", by_name)
    with pytest.raises(EgressRefused):
        await egress.check_url("https://other.internal/", by_name)
    by_network = EgressPolicy(allow=["10.0.0.0/8"], resolver=resolver)
    await egress.check_url("https://other.internal/", by_network)
    await egress.check_url("http://10.0.0.1/", by_network)
    # http needs the host as written allowlisted: a name in an allowlisted network is not.
    with pytest.raises(EgressRefused, match="http is allowed only"):
        await egress.check_url("http://other.internal/", by_network)
    loopback = EgressPolicy(allow=["127.0.0.1"])
    await egress.check_url("http://127.0.0.1:9/", loopback)


def test_settings_read_the_allowlist_from_the_environment_form() -> None:
    settings = load_settings({"egress_allow": "127.0.0.1, hooks.internal ,10.0.0.0/8"})
    assert settings.egress_allow == ["127.0.0.1", "hooks.internal", "10.0.0.0/8"]
    assert load_settings({"egress_allow": '["::1"]'}).egress_allow == ["::1"]
    policy = EgressPolicy.from_settings(settings)
    assert policy.host_allowed("HOOKS.internal.") and policy.host_allowed("10.2.3.4")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "https://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "https://10.0.0.1/",
        "https://localhost/",
        "http://127.0.0.1:1/",
    ],
)
async def test_a_client_refuses_before_any_connection(url: str) -> None:
    backend = RecordingBackend()
    async with egress.client(delegate=backend) as http:
        with pytest.raises(EgressRefused):
            await http.post(url, content=b"{}")
    assert backend.connects == []


async def test_dns_rebinding_is_refused_at_connect_time() -> None:
    answers = [["93.184.216.34"], ["127.0.0.1"]]

    async def rebinding(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in answers.pop(0)]

    policy = EgressPolicy(resolver=rebinding)
    await egress.check_url("https://rebind.test/hook", policy)  # public at registration
    backend = RecordingBackend()
    async with egress.client(policy, delegate=backend) as http:
        with pytest.raises(EgressRefused, match=r"resolves to 127\.0\.0\.1"):
            await http.post("https://rebind.test/hook", content=b"{}")
    assert backend.connects == []


async def test_allowlisted_loopback_is_reached_at_the_validated_ip() -> None:
    backend = RecordingBackend()
    policy = EgressPolicy(
        allow=["hooks.test"], resolver=fixed_resolver({"hooks.test": ["127.0.0.1"]})
    )
    async with Receiver() as receiver, egress.client(policy, delegate=backend) as http:
        response = await http.post(f"http://hooks.test:{receiver.port}/in", content=b"hi")
    assert response.status_code == 200 and response.text == "ok"
    assert backend.connects == [("127.0.0.1", receiver.port)]
    assert receiver.requests[0].headers["host"] == f"hooks.test:{receiver.port}"
    assert receiver.requests[0].body == b"hi"


def _certificate_for(name: str) -> tuple[bytes, bytes]:
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
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_tls_checks_the_hostname_while_connecting_to_the_ip(tmp_path: Any) -> None:
    # The certificate names hooks.test only (no IP): the handshake succeeds only if SNI
    # and verification use the name although the socket goes to 127.0.0.1.
    cert_pem, key_pem = _certificate_for("hooks.test")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client_ctx = ssl.create_default_context(cadata=cert_pem.decode())
    policy = EgressPolicy(
        allow=["127.0.0.1"], resolver=fixed_resolver({"hooks.test": ["127.0.0.1"]})
    )
    backend = RecordingBackend()
    async with (
        Receiver(ssl_context=server_ctx) as receiver,
        egress.client(policy, verify=client_ctx, delegate=backend) as http,
    ):
        response = await http.get(f"https://hooks.test:{receiver.port}/")
        assert response.status_code == 200
        assert backend.connects == [("127.0.0.1", receiver.port)]
        # The same server under a name its certificate does not carry fails verification.
        other = EgressPolicy(
            allow=["127.0.0.1"], resolver=fixed_resolver({"other.test": ["127.0.0.1"]})
        )
        async with egress.client(other, verify=client_ctx) as wrong:
            with pytest.raises(httpx.ConnectError, match="certificate"):
                await wrong.get(f"https://other.test:{receiver.port}/")


async def test_redirects_are_answers_not_followed() -> None:
    moved = Behaviour(status=302, headers={"location": "http://169.254.169.254/"})
    policy = EgressPolicy(allow=["127.0.0.1"])
    async with Receiver(moved) as receiver, egress.client(policy) as http:
        response = await http.post(f"{receiver.url}/hook", content=b"{}")
    assert response.status_code == 302
    assert len(receiver.requests) == 1


async def test_a_slow_receiver_times_out() -> None:
    policy = EgressPolicy(allow=["127.0.0.1"], timeout=0.2)
    async with Receiver(Behaviour(delay=5)) as receiver, egress.client(policy) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"{receiver.url}/hook", content=b"{}")


async def test_a_response_over_the_cap_is_refused() -> None:
    policy = EgressPolicy(allow=["127.0.0.1"], max_response_bytes=1000)
    async with Receiver(Behaviour(body=b"x" * 5000)) as receiver, egress.client(policy) as http:
        with pytest.raises(ResponseTooLarge, match="5000 bytes"):
            await http.post(f"{receiver.url}/hook", content=b"{}")


async def test_a_body_without_length_is_capped_as_it_streams() -> None:
    class Chunked(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            for _ in range(10):
                yield b"y" * 400

    stream = egress._CappedStream(Chunked(), 1000, "https://x.test/")
    with pytest.raises(ResponseTooLarge, match="exceeds 1000 bytes"):
        async for _chunk in stream:
            pass


def test_unix_sockets_and_proxies_are_not_egress() -> None:
    client = egress.client()
    assert client.trust_env is False and client.follow_redirects is False
