"""`tether webhooks ...`: the SSRF guard as a usage error, and a subscription's life
cycle from the command line (create with the secret shown once, list, show, update,
rotate, deliveries, retry, replay, delete)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import CLI, assert_one_line_error

from tether.cli.webhooks import parse_since


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://169.254.169.254/", "http is allowed only to allowlisted hosts"),
        ("https://10.0.0.1/", "private address"),
        ("https://localhost/", "'localhost' resolves to 127.0.0.1"),
    ],
)
def test_a_refused_url_is_a_usage_error(cli: CLI, url: str, needle: str) -> None:
    out = cli("webhooks", "create", url, "-e", "task.failed")
    assert out.returncode == 2
    assert_one_line_error(out, needle)
    assert cli.json("webhooks", "list", local=True) == []


def test_a_subscriptions_life_cycle(cli: CLI) -> None:
    created = cli.json(
        "webhooks", "create", "https://93.184.216.34/in", "-e", "task.succeeded", "-w", "greet"
    )
    assert isinstance(created, dict) and created["secret"].startswith("whsec_")
    sid = created["id"]
    listed = cli.json("webhooks", "list", local=True)
    assert isinstance(listed, list) and [s["id"] for s in listed] == [sid]
    assert "secret" not in listed[0]
    shown = json.loads(cli.ok("webhooks", "show", sid, local=True))
    assert shown["workflows"] == ["greet"] and "secret" not in shown
    off = json.loads(cli.ok("webhooks", "update", sid, "--disable", local=True))
    assert off["status"] == "disabled"
    on = json.loads(cli.ok("webhooks", "update", sid, "--enable", "-e", "*", local=True))
    assert on["status"] == "active" and on["event_types"] == ["*"]
    rotated = json.loads(cli.ok("webhooks", "rotate", sid, "--overlap", "60", local=True))
    assert rotated["secret"] != created["secret"]
    cli.submit("greet", {"name": "w"})
    assert "replaying:" in cli.ok("webhooks", "replay", sid, "--since", "1h", local=True)
    assert cli.json("webhooks", "deliveries", "-s", sid, local=True) == []  # not fanned out
    bad = cli("webhooks", "create", "https://93.184.216.34/", "-e", "task.exploded")
    assert_one_line_error(bad, "unknown event type 'task.exploded'")
    missing = cli("webhooks", "retry", "nope")
    assert_one_line_error(missing, "delivery not found: nope")
    assert f"deleted {sid}" in cli.ok("webhooks", "delete", sid, local=True)
    assert_one_line_error(cli("webhooks", "show", sid), "subscription not found")


def test_since_reads_ages_times_and_epochs() -> None:
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_since("30m", now=10_000.0) == 10_000.0 - 1800
    assert parse_since("1718000000") == 1718000000.0
    assert parse_since("2024-06-10T06:13:20Z") == 1718000000.0
