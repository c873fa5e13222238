"""`tether status ID --steps` shows every failed attempt of each step (error, traceback,
classification, retry decision), for people and with `--json`; on both backends
(ADR 62). `tether watch` says what each attempt raised and what was decided."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import flaky
from apps.procs import cli_env, run_cli
from tether import Tether


async def test_status_steps_shows_each_attempts_error(
    make_app: Callable[[], Tether],
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    flaky.durable_backoffs_from(monkeypatch)
    app = make_app()
    flaky.register(app)
    task_id = await flaky.run_to_failure(app)
    (stored,) = await app.steps(task_id)
    env = cli_env(TETHER_DATABASE_URL=store_url)

    def tether(*args: str) -> str:
        out = run_cli(*args, env=env, cwd=tmp_path)
        assert out.returncode in (0, 1), out.stderr  # watch exits 1: the task failed
        return out.stdout

    plain = tether("status", task_id)
    hint = f"3 failed attempts; their errors and tracebacks: tether status {task_id} --steps"
    assert hint in " ".join(plain.split()), plain[-600:]  # Rich may wrap it
    assert "Traceback" not in plain

    detailed = tether("status", task_id, "--steps")
    assert "step #1 parse (failed, 3 attempts)" in detailed
    lines = detailed.splitlines()
    for n, (error, verdict) in enumerate(
        [
            (
                "ConnectionResetError: connection reset by peer",
                "transient (by network or timeout error) → retry in 0.01s (backoff)",
            ),
            (
                "Transient: provider busy",
                "transient (by Transient) → retry in 0.30s as a durable retry_backoff wait "
                "(retry after)",
            ),
            ("ValueError: cannot parse 'doc-1': bad record", "permanent (by default) → give up "),
        ],
        start=1,
    ):
        (at,) = [i for i, line in enumerate(lines) if line.startswith(f"  attempt {n}  ")]
        assert error in lines[at], lines[at]
        assert lines[at + 1].strip().startswith(verdict), lines[at + 1]
        assert "Traceback (most recent call last):" in lines[at + 2] + lines[at + 3]
    assert "give up (permanent)" in detailed
    assert "in _parse_deeper" in detailed and "earlier frames cut" in detailed

    shown = json.loads(tether("status", task_id, "--steps", "--json"))
    assert shown["id"] == task_id and shown["status"] == "failed"
    (step,) = shown["steps"]
    assert [a["attempt"] for a in step["attempt_errors"]] == [1, 2, 3]
    for printed, kept in zip(step["attempt_errors"], stored.attempt_errors, strict=True):
        assert printed["traceback"] == kept.traceback
        assert (printed["decision"], printed["reason"]) == (str(kept.decision), kept.reason)
        assert printed["started_at"].endswith("Z")  # ISO-8601 UTC, as every --json time
    assert "steps" not in json.loads(tether("status", task_id, "--json"))

    watched = tether("watch", task_id)
    assert "attempt 1 failed: ConnectionResetError: connection reset by peer" in watched
    assert "(transient, by network or timeout error), will retry in 0.01s" in watched
    assert "will retry in 0.30s (durable wait)" in watched
    assert "failed: ValueError: cannot parse" in watched and "gave up (permanent)" in watched
