"""Authentication, roles and tenancy over HTTP."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator

import httpx
import jwt
import pytest

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
