"""schemathesis against a live server on each backend, with every check and every phase
(examples, coverage, fuzzing, stateful), on valid and invalid data: no 5xx, every
response as the OpenAPI document says (status, content type, headers, body), requests
the schema allows accepted, requests it forbids refused.

The run is schemathesis' own command line with the repository's `schemathesis.toml`
(and its hooks, `tests/api/schemathesis_hooks.py`), so what runs here is what a
developer runs by hand; its report is the assertion message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.live import LiveServer, make_settings, token

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("schemathesis")
PHASES = ("Examples", "Coverage", "Fuzzing", "Stateful")
RUN_LIMIT = 420.0
"""Seconds the whole run may take (about a minute is usual; the machine may be busy)."""


@pytest.mark.timeout(RUN_LIMIT + 60)
def test_api_matches_its_openapi_document(store_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        store_url,
        # Callback and subscription URLs are accepted for this host; no dispatcher
        # runs, so nothing is sent.
        egress_allow=["127.0.0.1"],
        webhooks=False,
        # A breaker to open and close (any other integration answers 404).
        breakers={"crm": {"failures": 5}},
    )
    # No workers: schemathesis submits thousands of odd tasks; running them adds nothing.
    with LiveServer(settings, workers=False) as live:
        env = {
            **os.environ,
            "TETHER_ST_TOKEN": token("fuzz", ttl=RUN_LIMIT + 600),
            "TETHER_ST_URL": "http://127.0.0.1:9/tether-st",
        }
        done = subprocess.run(
            [
                str(CLI),
                "--config-file",
                str(ROOT / "schemathesis.toml"),
                "--no-color",
                "run",
                f"{live.url}/openapi.json",
            ],
            cwd=ROOT,  # the config names its hooks by a path from here
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_LIMIT,
            check=False,
        )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-20000:]
    for phase in PHASES:  # each ran and passed (none was skipped by a config change)
        assert f"✅ {phase}" in report, report[-5000:]
