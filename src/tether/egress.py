"""Egress: the one way Tether sends HTTP to addresses users give it (webhooks, agents).

A URL a tenant registers can name anything, including the cloud metadata service or a
database on the operator's private network (server-side request forgery). Every
outbound request therefore goes through `client(...)`, which refuses, before any
connection is made:

- a scheme other than https, unless the host as written is allowlisted;
- a name that resolves to a loopback, private, link-local, cloud metadata, multicast,
  unspecified or reserved address (any one such address refuses the name), unless the
  name or that address is allowlisted.

The check runs twice: `check_url` at registration, for a clear error, and again inside
the connection (a guarded httpcore network backend resolves the name, validates every
address and connects to a validated IP), so a name that resolved to a public address at
registration and to 127.0.0.1 later (DNS rebinding) is still refused. TLS still uses the
hostname for SNI and certificate checks: only the TCP connect is pinned to the IP.
Redirects are never followed, environment proxies are ignored, every request has a
timeout, and a response body larger than the cap is refused as it is read.

The allowlist (`egress_allow`) holds host names (`hooks.internal`) and IP addresses or
networks (`127.0.0.1`, `10.0.0.0/8`). See docs/webhooks.md and ADR 68.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from tether.errors import TetherError

if TYPE_CHECKING:
    from tether.config import Settings

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_TIMEOUT",
    "EgressPolicy",
    "EgressRefused",
    "IPAddress",
    "Resolver",
    "ResponseTooLarge",
    "check_url",
    "client",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""Resolves (host, port) to its addresses; the system resolver unless a test injects one."""

DEFAULT_TIMEOUT = 10.0
"""Seconds for the whole of each phase (connect, write, read) of one request."""
DEFAULT_MAX_RESPONSE_BYTES = 1 << 20

# Cloud metadata services, named in refusals so the operator sees why.
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressRefused(TetherError):
    """An outbound request was refused before any connection: `url` and why (`reason`)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"refused to send to {url}: {reason}")


class ResponseTooLarge(TetherError):
    """A response body was larger than the egress policy's `max_response_bytes`."""


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for `host` (an IP literal resolves to itself)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        seen[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    return list(seen)


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), else `ip` itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def refusal_reason(ip: IPAddress) -> str | None:
    """Why `ip` is no place to send a request to, or None when it is a public address."""
    ip = _unwrap(ip)
    checks = (
        (ip in _METADATA, "a cloud metadata address"),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
        (not ip.is_global, "not a public address"),
    )
    for refused, reason in checks:
        if refused:
            return reason
    return None


def _bare_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class EgressPolicy:
    """What outbound HTTP may reach, and its limits. The default allows public https only."""

    allow: Sequence[str] = ()
    """Host names and IP addresses or networks exempt from the https and address checks."""
    timeout: float = DEFAULT_TIMEOUT
    """Seconds per phase (connect, write, read, pool wait) of one request."""
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    """A response body larger than this is refused (`ResponseTooLarge`) as it is read."""
    resolver: Resolver = system_resolver
    """Name resolution; tests inject one to play DNS rebinding without a DNS server."""
    _names: frozenset[str] = field(init=False, repr=False, compare=False)
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        names: set[str] = set()
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in self.allow:
            entry = _bare_host(entry.strip())
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry)
        object.__setattr__(self, "_names", frozenset(names))
        object.__setattr__(self, "_networks", tuple(networks))

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        """The policy the settings name (`egress_allow`, `egress_timeout`, ...)."""
        return cls(
            allow=tuple(settings.egress_allow),
            timeout=settings.egress_timeout,
            max_response_bytes=settings.egress_max_response_bytes,
        )

    def host_allowed(self, host: str) -> bool:
        """Whether `host` as written (a name, or an IP literal) is on the allowlist."""
        host = _bare_host(host)
        if host in self._names:
            return True
        ip = _literal(host)
        return ip is not None and self.address_allowed(ip)

    def address_allowed(self, ip: IPAddress) -> bool:
        """Whether `ip` lies in an allowlisted address or network."""
        return any(ip in net for net in self._networks) or any(
            _unwrap(ip) in net for net in self._networks
        )

    def check_target(self, url: httpx.URL) -> None:
        """Refuse what the URL alone shows: a scheme, a missing host, credentials."""
        text = _redacted(url)
        if url.scheme not in ("http", "https"):
            raise EgressRefused(text, f"scheme {url.scheme or '(none)'!r} is not https")
        if not url.host:
            raise EgressRefused(text, "the URL names no host")
        if url.userinfo:
            raise EgressRefused(text, "credentials in the URL are not allowed")
        if url.scheme == "http" and not self.host_allowed(url.host):
            raise EgressRefused(
                text,
                f"http is allowed only to allowlisted hosts; use https or add "
                f"{url.host!r} to egress_allow",
            )

    async def resolve_checked(self, host: str, port: int, url: str) -> list[IPAddress]:
        """The addresses of `host`, all validated; refuses if any one is not allowed."""
        host = _bare_host(host)
        literal = _literal(host)
        try:
            addresses = [literal] if literal is not None else await self.resolver(host, port)
        except OSError as exc:
            raise EgressRefused(url, f"cannot resolve {host!r}: {exc}") from None
        if not addresses:
            raise EgressRefused(url, f"{host!r} resolves to no address")
        if host in self._names:
            return addresses
        for ip in addresses:
            reason = refusal_reason(ip)
            if reason is not None and not self.address_allowed(ip):
                shown = host if literal is not None else f"{host!r} resolves to {ip}, which"
                raise EgressRefused(
                    url, f"{shown} is {reason}; allowlist it in egress_allow to permit it"
                )
        return addresses


def _redacted(url: httpx.URL) -> str:
    # Query strings often carry tokens: errors and logs show scheme, host, port, path.
    return str(url.copy_with(query=None, fragment=None, username=None, password=None))


async def check_url(url: str, policy: EgressPolicy | None = None) -> str:
    """Validate a URL someone wants Tether to send to; return it normalised.

    Raises `EgressRefused` with the reason (scheme, credentials, or an address the name
    resolves to) before any connection is made. Run at registration; the same checks
    run again at connect time.
    """
    policy = policy or EgressPolicy()
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise EgressRefused(str(url)[:200], f"not a valid URL: {exc}") from None
    policy.check_target(parsed)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    await policy.resolve_checked(parsed.host, port, _redacted(parsed))
    return str(parsed)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that resolves, validates and connects to a validated IP.

    httpcore hands it the URL's host; TLS is started afterwards by httpcore on the
    returned stream with that same host as server name, so certificates are checked
    against the name, not the IP.
    """

    def __init__(
        self, policy: EgressPolicy, delegate: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.policy = policy
        self.delegate = delegate or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to the first reachable validated address of `host`."""
        shown = f"{host}:{port}"
        addresses = await self.policy.resolve_checked(host, port, shown)
        last: Exception | None = None
        for ip in addresses:
            try:
                return await self.delegate.connect_tcp(
                    str(ip),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Refused: egress goes to network hosts only."""
        raise EgressRefused(path, "unix sockets are not an egress destination")

    async def sleep(self, seconds: float) -> None:
        """Sleep, as the delegate does."""
        await self.delegate.sleep(seconds)


class _CappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, cap: int, url: str) -> None:
        self._inner = inner
        self._cap = cap
        self._url = url

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._cap:
                await self._inner.aclose()
                raise ResponseTooLarge(f"response from {self._url} exceeds {self._cap} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the URL checks per request, the guarded backend, and the
    response cap."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits | None = None,
        delegate: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        super().__init__(verify=verify, trust_env=False, limits=limits)
        self.policy = policy
        self.backend = GuardedBackend(policy, delegate)
        # httpx's transport takes no network backend: its pool is rebuilt with ours, the
        # same settings otherwise (tests/unit/test_egress.py pins that this holds).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=self.backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Check the URL, send, and cap the body."""
        self.policy.check_target(request.url)
        response = await super().handle_async_request(request)
        shown = _redacted(request.url)
        cap = self.policy.max_response_bytes
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > cap:
            await response.aclose()
            raise ResponseTooLarge(f"response from {shown} declares {length} bytes, over {cap}")
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _CappedStream(response.stream, cap, shown)
        return response


def client(
    policy: EgressPolicy | None = None,
    *,
    headers: dict[str, str] | None = None,
    verify: ssl.SSLContext | bool = True,
    limits: httpx.Limits | None = None,
    delegate: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` whose every request goes through the egress guard.

    Redirects are not followed (a 3xx is an answer like any other), environment proxies
    are ignored, and every request times out after `policy.timeout` seconds per phase.
    `delegate` replaces the backend that opens sockets (tests count connects with it).
    """
    policy = policy or EgressPolicy()
    return httpx.AsyncClient(
        transport=GuardedTransport(policy, verify=verify, limits=limits, delegate=delegate),
        timeout=httpx.Timeout(policy.timeout),
        follow_redirects=False,
        trust_env=False,
        headers=headers,
    )
