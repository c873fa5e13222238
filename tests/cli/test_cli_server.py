"""`tether server`, `tether token create`, `tether apikey create|revoke`, run for real:
the server in a subprocess on a free port, driven with HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from apps.procs import CLI, cli_env, run_cli

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(self, cwd: Path, *args: str, **env: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*CLI, "server", "--port", str(self.port), "--log-level", "warning", *args],
            env=cli_env(**env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("server did not become ready")

    def stop(self) -> tuple[str, str]:
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=30)
        return out, err


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def _env(workdir: Path, **extra: str) -> dict[str, str]:
    return cli_env(
        TETHER_APP="apps.crashy:app",
        TETHER_DATABASE_URL=f"sqlite:///{workdir / 'server.db'}",
        **extra,
    )


def test_token_create_signs_with_the_configured_secret(workdir: Path) -> None:
    out = run_cli(
        "token", "create", "--tenant", "acme", "-r", "submitter", "-r", "viewer",
        "--subject", "ci", "--ttl", "600",
        env=_env(workdir, TETHER_JWT_SECRET=SECRET), cwd=workdir,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    claims = jwt.decode(out.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["tenant"] == "acme" and claims["sub"] == "ci"
    assert claims["roles"] == ["submitter", "viewer"]
    assert 590 <= claims["exp"] - claims["iat"] <= 600


def test_token_create_without_a_secret_or_with_a_bad_role_is_refused(workdir: Path) -> None:
    out = run_cli("token", "create", "--tenant", "acme", "-r", "viewer", env=_env(workdir))
    assert out.returncode == 2 and "TETHER_JWT_SECRET" in out.stderr
    assert "Traceback" not in out.stderr
    out = run_cli("token", "create", "-r", "wizard", env=_env(workdir, TETHER_JWT_SECRET=SECRET))
    assert out.returncode == 2 and "unknown role 'wizard'" in out.stderr


def test_server_refuses_a_secret_shorter_than_32_bytes(workdir: Path) -> None:
    short = "only-20-bytes-secret"
    env = _env(workdir, TETHER_JWT_SECRET=short)
    out = run_cli("server", "--port", str(_free_port()), env=env, cwd=workdir)
    assert out.returncode == 2, out.stderr
    assert "jwt_secret is 20 bytes" in out.stderr and "at least 32 bytes" in out.stderr
    assert short not in out.stderr + out.stdout and "Traceback" not in out.stderr


def test_server_refuses_to_start_without_auth(workdir: Path) -> None:
    out = run_cli("server", "--port", str(_free_port()), env=_env(workdir), cwd=workdir)
    assert out.returncode == 2
    assert "needs authentication" in out.stderr and "--dev" in out.stderr
    assert "Traceback" not in out.stderr


def test_server_with_tokens_and_api_keys_end_to_end(workdir: Path) -> None:
    env = _env(workdir, TETHER_JWT_SECRET=SECRET)
    created = run_cli(
        "apikey", "create", "--tenant", "acme", "-r", "submitter", "-r", "viewer",
        "--name", "ci", "--json", env=env, cwd=workdir,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["key"].startswith("tth_") and key["tenant"] == "acme"
    token = run_cli("token", "create", "--tenant", "acme", "-r", "viewer", env=env).stdout
    server = Server(workdir, **{k: v for k, v in env.items() if k.startswith("TETHER_")})
    try:
        server.wait_ready()
        submitted = httpx.post(
            f"{server.base}/v1/tasks",
            json={"workflow": "greet", "input": {"name": "ada", "times": 1}},
            headers={"X-API-Key": key["key"]},
        )
        assert submitted.status_code == 202, submitted.text
        task_id = submitted.json()["id"]
        # the embedded worker runs it; a viewer token can follow it
        deadline = time.monotonic() + 20
        while True:
            got = httpx.get(
                f"{server.base}/v1/tasks/{task_id}",
                headers={"Authorization": f"Bearer {token.strip()}"},
            )
            assert got.status_code == 200, got.text
            if got.json()["status"] == "succeeded" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert got.json()["result"] == "hello ada"
        revoked = run_cli("apikey", "revoke", key["id"], "--tenant", "acme", env=env, cwd=workdir)
        assert revoked.returncode == 0, revoked.stderr
        refused = httpx.get(f"{server.base}/v1/tasks", headers={"X-API-Key": key["key"]})
        assert refused.status_code == 401
    finally:
        server.stop()


def test_dev_mode_prints_a_ready_token_and_no_workers_runs_nothing(workdir: Path) -> None:
    server = Server(workdir, "--dev", "--no-workers", **{
        k: v for k, v in _env(workdir).items() if k.startswith("TETHER_")
    })  # fmt: skip
    try:
        server.wait_ready()
        assert (workdir / ".tether" / "dev-secret").is_file()
        # `token create --dev` in the same folder signs with the same local secret
        token = run_cli(
            "token", "create", "--dev", "-r", "submitter", "-r", "viewer",
            env=_env(workdir), cwd=workdir,
        ).stdout.strip()  # fmt: skip
        auth = {"Authorization": f"Bearer {token}"}
        submitted = httpx.post(
            f"{server.base}/v1/tasks",
            json={"workflow": "greet", "input": {"name": "ada"}},
            headers=auth,
        )
        assert submitted.status_code == 202, submitted.text
        time.sleep(0.5)  # an API-only node must not run it: nothing may change
        got = httpx.get(f"{server.base}/v1/tasks/{submitted.json()['id']}", headers=auth)
        assert got.json()["status"] == "queued"
    finally:
        out, err = server.stop()
    printed = re.search(r"(eyJ[\w-]+\.[\w-]+\.[\w-]+)", out + err)
    assert printed, out + err
    assert jwt.decode(printed.group(1), options={"verify_signature": False})["roles"] == ["admin"]


def _children(parent: int) -> set[int]:
    """The live child processes of `parent` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == parent and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def _wait_children(parent: int, count: int, not_in: set[int] = frozenset()) -> set[int]:  # type: ignore[assignment]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = _children(parent)
        if len(found) == count and not (found & not_in):
            return found
        time.sleep(0.05)
    raise AssertionError(f"children of {parent}: {_children(parent)}, wanted {count} new")


def test_several_server_processes_share_the_port_and_one_that_dies_is_replaced(
    workdir: Path,
) -> None:
    env = _env(workdir, TETHER_JWT_SECRET=SECRET)
    token = run_cli(
        "token", "create", "--tenant", "acme", "-r", "submitter", "-r", "viewer", env=env
    ).stdout.strip()  # fmt: skip
    auth = {"Authorization": f"Bearer {token}"}
    server = Server(
        workdir, "--processes", "2", **{k: v for k, v in env.items() if k.startswith("TETHER_")}
    )
    try:
        server.wait_ready()
        first = _wait_children(server.proc.pid, 2)

        def submit_all(n: int) -> list[str]:
            ids = []
            for i in range(n):  # a new connection each: the kernel picks a process
                answer = httpx.post(
                    f"{server.base}/v1/tasks",
                    json={"workflow": "greet", "input": {"name": f"n{i}"}},
                    headers=auth,
                )
                assert answer.status_code == 202, answer.text
                ids.append(answer.json()["id"])
            return ids

        ids = submit_all(10)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        replaced = _wait_children(server.proc.pid, 2, not_in={victim})
        assert len(replaced & first) == 1  # the other one kept serving
        server.wait_ready()
        ids += submit_all(10)
        deadline = time.monotonic() + 30
        while True:  # the embedded workers of the processes run them all
            listed = httpx.get(
                f"{server.base}/v1/tasks",
                params={"status": "succeeded", "limit": 100},
                headers=auth,
            ).json()["items"]
            if {t["id"] for t in listed} >= set(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert {t["id"] for t in listed} >= set(ids)
    finally:
        _out, err = server.stop()
    assert server.proc.returncode == 0, err
    assert not any(Path(f"/proc/{pid}").exists() for pid in first | replaced)  # none orphaned
    assert "exited (signal 9); starting another" in err
