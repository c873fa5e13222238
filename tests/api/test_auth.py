"""Authentication, roles and tenancy over HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.live import SECRET, LiveServer, auth, build_app, token
from tether.auth import create_api_key, create_token
from tether.errors import ConfigError

# Every endpoint that takes a credential: (method, path template, body).
ENDPOINTS: list[tuple[str, str, object]] = [
    ("POST", "/v1/tasks", {"workflow": "gate", "input": {}}),
    ("POST", "/v1/tasks:batch", {"tasks": [{"workflow": "gate", "input": {}}]}),
    ("GET", "/v1/tasks", None),
    ("GET", "/v1/tasks/{id}", None),
    ("GET", "/v1/tasks/{id}/steps", None),
    ("GET", "/v1/tasks/{id}/events", None),
    ("GET", "/v1/events", None),
    ("POST", "/v1/tasks/{id}/cancel", None),
    ("POST", "/v1/tasks/{id}/signals/go", {"x": 1}),
]
TASK_ENDPOINTS = [e for e in ENDPOINTS if "{id}" in e[1]]

# The documented permission matrix (docs/api.md), written out independently of the code.
READ = {"viewer", "submitter", "approver", "operator", "admin"}
ALLOWED: dict[str, set[str]] = {
    "POST /v1/tasks": {"submitter", "admin"},
    "POST /v1/tasks:batch": {"submitter", "admin"},
    "GET /v1/tasks": READ,
    "GET /v1/tasks/{id}": READ,
    "GET /v1/tasks/{id}/steps": READ,
    "GET /v1/tasks/{id}/events": READ,
    "GET /v1/events": READ,
    "POST /v1/tasks/{id}/cancel": {"submitter", "operator", "admin"},
    "POST /v1/tasks/{id}/signals/go": {"submitter", "operator", "admin"},
}
SUCCESS = {"POST": 202, "GET": 200}


@pytest.fixture(scope="module")
def http(shared_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def new_task(http: httpx.Client) -> Callable[[str], str]:
    """Create a (waiting) gate task of a tenant; return its id."""

    def make(tenant: str = "t1") -> str:
        r = http.post("/v1/tasks", json={"workflow": "gate", "input": {}}, headers=auth(tenant))
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    return make


def _call(
    http: httpx.Client, method: str, path: str, body: object, headers: dict[str, str]
) -> httpx.Response:
    return http.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("role", ["viewer", "submitter", "approver", "operator", "admin"])
def test_role_matrix(role: str, http: httpx.Client, new_task: Callable[[str], str]) -> None:
    wrong: list[str] = []
    for method, template, body in ENDPOINTS:
        path = template.replace("{id}", new_task("t1"))
        r = _call(http, method, path, body, auth("t1", (role,)))
        name = f"{method} {template}"
        expected = SUCCESS[method] if role in ALLOWED[name] else 403
        if r.status_code != expected:
            wrong.append(f"{name}: {r.status_code} (expected {expected}) {r.text[:200]}")
        if expected == 403:
            assert r.headers["content-type"] == "application/problem+json"
    assert not wrong, "\n".join(wrong)


def test_no_roles_is_forbidden_everywhere(
    http: httpx.Client, new_task: Callable[[str], str]
) -> None:
    for method, template, body in ENDPOINTS:
        path = template.replace("{id}", new_task("t1"))
        assert _call(http, method, path, body, auth("t1", ())).status_code == 403, template


@pytest.mark.parametrize(("method", "template", "body"), TASK_ENDPOINTS)
def test_other_tenants_task_is_404(
    method: str, template: str, body: object, http: httpx.Client, new_task: Callable[[str], str]
) -> None:
    theirs = new_task("t1")
    path = template.replace("{id}", theirs)
    r = _call(http, method, path, body, auth("t2"))
    assert r.status_code == 404, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert theirs not in r.text.replace(f"/v1/tasks/{theirs}", "")  # only the path echoes it
    missing = template.replace("{id}", "01900000-0000-7000-8000-000000000000")
    assert _call(http, method, missing, body, auth("t2")).status_code == 404
    # The owner still sees it, unchanged by the other tenant's attempts.
    mine = http.get(f"/v1/tasks/{theirs}", headers=auth("t1"))
    assert mine.status_code == 200 and mine.json()["status"] in ("queued", "running", "waiting")


def test_lists_and_feeds_are_per_tenant(http: httpx.Client, new_task: Callable[[str], str]) -> None:
    theirs = new_task("t1")
    listed = http.get("/v1/tasks", params={"limit": 500}, headers=auth("t3")).json()
    assert all(t["tenant"] == "t3" for t in listed["items"])
    assert theirs not in {t["id"] for t in listed["items"]}
    feed = http.get("/v1/events", headers=auth("t3")).json()["items"]
    assert all(e["tenant"] == "t3" for e in feed) and theirs not in {e["task_id"] for e in feed}
    mine = http.get("/v1/events", params={"limit": 500}, headers=auth("t1")).json()["items"]
    assert theirs in {e["task_id"] for e in mine}


def _tamper(tok: str) -> str:
    header, payload, sig = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["tenant"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{sig}"


BAD_TOKENS: dict[str, Callable[[], str]] = {
    "expired": lambda: create_token(SECRET, "t1", ["admin"], ttl=-120),
    "tampered payload": lambda: _tamper(token()),
    "tampered signature": lambda: (
        token()[:-4] + ("AAAA" if not token().endswith("AAAA") else "BBBB")
    ),
    "wrong secret": lambda: create_token("another-secret-entirely-000000000", "t1", ["admin"]),
    "alg none": lambda: jwt.encode(
        {"sub": "x", "tenant": "t1", "roles": ["admin"], "exp": int(time.time()) + 60},
        key=None,  # type: ignore[arg-type]
        algorithm="none",
    ),
    "no tenant": lambda: jwt.encode(
        {"sub": "x", "roles": ["admin"], "exp": int(time.time()) + 60}, SECRET, "HS256"
    ),
    "no exp": lambda: jwt.encode({"sub": "x", "tenant": "t1", "roles": ["admin"]}, SECRET, "HS256"),
    "garbage": lambda: "not-a-jwt",
}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_bad_tokens_are_401(kind: str, http: httpx.Client) -> None:
    r = http.get("/v1/tasks", headers={"Authorization": f"Bearer {BAD_TOKENS[kind]()}"})
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert SECRET not in r.text and "Traceback" not in r.text


def test_missing_or_odd_credentials_are_401(http: httpx.Client) -> None:
    assert http.get("/v1/tasks").status_code == 401
    assert http.get("/v1/tasks", headers={"Authorization": "Basic dXNlcjpwdw=="}).status_code == 401
    assert http.get("/v1/tasks", headers={"X-API-Key": "tth_nope_nope"}).status_code == 401
    assert http.get("/v1/tasks", headers={"X-API-Key": "garbage"}).status_code == 401
    # Health needs none; metrics do (ADR 66).
    for path in ("/healthz", "/readyz"):
        assert http.get(path).status_code == 200
    assert http.get("/metrics").status_code == 401


async def test_api_keys(server: LiveServer) -> None:
    # A second app on the same database file stores the key, as `tether apikey create` does.
    admin_side = build_app(server.settings.database_url, server.settings)
    async with admin_side:
        key_id, plaintext = await create_api_key(admin_side.store, "t1", ["submitter"], "ci")
        stored = await admin_side.store.get_api_key(key_id)
        assert stored is not None and plaintext.split("_", 2)[2] not in repr(stored)
        async with httpx.AsyncClient(base_url=server.url) as http:
            headers = {"X-API-Key": plaintext}
            r = await http.post("/v1/tasks", json={"workflow": "echo", "input": 1}, headers=headers)
            assert r.status_code == 202, r.text
            assert r.json()["tenant"] == "t1" and r.json()["created_by"] == f"apikey:{key_id}"
            assert (await http.get("/v1/tasks", headers=headers)).status_code == 200
            wrong = plaintext[:-2] + ("xx" if not plaintext.endswith("xx") else "yy")
            assert (await http.get("/v1/tasks", headers={"X-API-Key": wrong})).status_code == 401
            assert await admin_side.store.revoke_api_key(key_id, "t1", time.time())
            assert (await http.get("/v1/tasks", headers=headers)).status_code == 401


def test_server_refuses_to_start_without_auth(tmp_path: object) -> None:
    from tether.api import create_app
    from tether.config import load_settings

    settings = load_settings({"database_url": "sqlite:///x.db"})
    with pytest.raises(ConfigError, match="authentication"):
        create_app(build_app(settings.database_url, settings), settings)


def test_dev_mode_makes_a_secret_and_a_ready_token(start_server: Callable[..., LiveServer]) -> None:
    from tether.api.server import dev_banner

    server = start_server(jwt_secret=None, dev=True)
    ready = dev_banner(server.settings)
    assert ready is not None
    r = httpx.get(f"{server.url}/v1/tasks", headers={"Authorization": f"Bearer {ready}"})
    assert r.status_code == 200
    assert httpx.get(f"{server.url}/v1/tasks", headers=auth()).status_code == 401


class _JwksServer:
    """A real HTTP server on a random local port serving one JWKS document."""

    def __init__(self, keys: list[dict[str, object]]) -> None:
        body = json.dumps({"keys": keys}).encode()
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _jwk(public_key: object, kid: str, alg: str) -> dict[str, object]:
    algorithm = jwt.algorithms.RSAAlgorithm if alg.startswith("RS") else jwt.algorithms.ECAlgorithm
    jwk = algorithm.to_jwk(public_key, as_dict=True)  # type: ignore[arg-type]
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


def _claims(tenant: str = "idp-tenant", ttl: int = 300) -> dict[str, object]:
    now = int(time.time())
    return {"sub": "idp-user", "tenant": tenant, "roles": ["admin"], "iat": now, "exp": now + ttl}


def test_rs256_and_es256_tokens_from_a_jwks_url(
    start_server: Callable[..., LiveServer],
) -> None:
    """`jwks_url`: tokens of an identity provider, RS256 or ES256, are checked against
    the keys it publishes (fetched over HTTP); nothing else passes, HS256 included."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = _JwksServer(
        [
            _jwk(rsa_key.public_key(), "rsa-1", "RS256"),
            _jwk(ec_key.public_key(), "ec-1", "ES256"),
        ]
    )
    try:
        server = start_server(jwt_secret=None, jwks_url=jwks.url)

        def call(tok: str) -> httpx.Response:
            return httpx.post(
                f"{server.url}/v1/tasks",
                json={"workflow": "gate", "input": {}},
                headers={"Authorization": f"Bearer {tok}"},
            )

        rs = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
        r = call(rs)
        assert r.status_code == 202, r.text
        assert (r.json()["tenant"], r.json()["created_by"]) == ("idp-tenant", "idp-user")
        es = jwt.encode(_claims("idp-2"), ec_key, algorithm="ES256", headers={"kid": "ec-1"})
        assert call(es).status_code == 202
        assert jwks.requests >= 1, "the keys came from the JWKS URL"

        public_pem = rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        refused = {
            "another key, same kid": jwt.encode(
                _claims(), impostor, algorithm="RS256", headers={"kid": "rsa-1"}
            ),
            "unknown kid": jwt.encode(
                _claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-2"}
            ),
            "expired": jwt.encode(
                _claims(ttl=-120), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"}
            ),
            "HS256 with the public key as secret": _hs256(_claims(), public_pem, "rsa-1"),
            "HS256 with the old shared secret": create_token(SECRET, "t1", ["admin"]),
        }
        for why, tok in refused.items():
            r = call(tok)
            assert r.status_code == 401, (why, r.text)
            assert r.json()["type"] == "https://tether.dev/problems/unauthenticated", why
    finally:
        jwks.close()


def _hs256(claims: dict[str, object], secret: bytes, kid: str) -> str:
    """An HS256 token signed by hand (PyJWT refuses a PEM key as an HMAC secret)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"
