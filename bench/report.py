"""Rich tables of the medians, with the peers' figures for orientation."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.common import HERE
from bench.gate import Change, Verdict

PEER_RESULTS = HERE.parent.parent / "shared" / "peerbench" / "results"
PEERS_NOT_DURABLE = {"celery", "arq_default", "arq_tuned", "temporal_mem"}

MAIN = [
    ("W1 enqueue s", "w1_enqueue_s", "{:.2f}"),
    ("W1 drain s", "w1_drain_s", "{:.2f}"),
    ("W1 tasks/s", "w1_tasks_per_s", "{:,.0f}"),
    ("W2 ms/step", "w2_ms_per_step", "{:.2f}"),
    ("W3 s", "w3_total_s", "{:.2f}"),
    ("W4 p50 ms", "w4_p50_ms", "{:.1f}"),
    ("W4 p99 ms", "w4_p99_ms", "{:.1f}"),
]
SCALE = [
    ("claim/s empty", "w5_claim_empty_per_s", "{:,.0f}"),
    ("claim/s 1M done", "w5_claim_1m_per_s", "{:,.0f}"),
    ("W1 1 proc", "w1_tasks_per_s_procs_1", "{:,.0f}"),
    ("W1 2 procs", "w1_tasks_per_s_procs_2", "{:,.0f}"),
    ("W1 4 procs", "w1_tasks_per_s_procs_4", "{:,.0f}"),
    ("idle RSS MB", "w5_idle_rss_mb", "{:.0f}"),
    ("heap B/parked task", "w5_parked_heap_bytes_per_task", "{:.1f}"),
    ("RSS B/parked task", "w5_parked_rss_bytes_per_task", "{:.0f}"),
    ("of which SQLite", "w5_parked_sqlite_bytes_per_task", "{:.0f}"),
    ("tasks held", "w5_parked_held_tasks", "{:.0f}"),
]

WEBHOOKS = [
    ("deliveries/s", "wh_deliveries_per_s", "{:,.0f}"),
    ("delay p50 ms", "wh_delay_p50_ms", "{:.1f}"),
    ("delay p99 ms", "wh_delay_p99_ms", "{:.1f}"),
    ("W1/s no sub", "wh_w1_base_tasks_per_s", "{:,.0f}"),
    ("W1/s sub", "wh_w1_same_tasks_per_s", "{:,.0f}"),
    ("cost %", "wh_w1_same_cost_pct", "{:.0f}"),
    ("delivered s", "wh_w1_same_all_delivered_s", "{:.2f}"),
    ("W1/s sub, split", "wh_w1_split_tasks_per_s", "{:,.0f}"),
    ("cost % split", "wh_w1_split_cost_pct", "{:.0f}"),
    ("delivered s split", "wh_w1_split_all_delivered_s", "{:.2f}"),
]


def _fmt(value: float | None, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pattern.format(value)


def load_peers(folder: Path = PEER_RESULTS) -> dict[str, dict[str, float]]:
    """Medians of the peers' last full run (../shared/peerbench/results)."""
    peers: dict[str, dict[str, float]] = {}
    if not folder.is_dir():
        return peers
    for path in sorted(folder.glob("*.json")):
        if path.stem == "physical" or path.stem.startswith("tether"):
            continue
        try:
            peers[path.stem] = json.loads(path.read_text()).get("median", {})
        except (OSError, ValueError):
            continue
    return peers


def _console() -> Console:
    probe = Console()
    return probe if probe.is_terminal else Console(width=160)


def print_tables(
    medians: dict[str, dict[str, float]], unavailable: dict[str, str], *, peers: bool
) -> None:
    console = _console()
    table = Table(
        title="Tether W1-W4 (medians)",
        caption="peer rows: ../shared/peerbench/results, an earlier session (only same-session "
        "ratios count); * = not durable (Redis without persistence, in-memory store)",
    )
    table.add_column("system")
    for title, _, _ in MAIN:
        table.add_column(title, justify="right")
    for backend, values in medians.items():
        table.add_row(f"tether_{backend}", *(_fmt(values.get(k), p) for _, k, p in MAIN))
    for backend, reason in unavailable.items():
        table.add_row(f"tether_{backend}", f"unavailable: {reason}", *[""] * (len(MAIN) - 1))
    if peers:
        for name, values in load_peers().items():
            label = f"{name}{' *' if name in PEERS_NOT_DURABLE else ''} (peer)"
            table.add_row(label, *(_fmt(values.get(k), p) for _, k, p in MAIN), style="dim")
    console.print(table)

    if any(any(k in v for _, k, _ in SCALE) for v in medians.values()):
        scale = Table(title="Tether W5 scale (medians)")
        scale.add_column("system")
        for title, _, _ in SCALE:
            scale.add_column(title, justify="right")
        for backend, values in medians.items():
            scale.add_row(f"tether_{backend}", *(_fmt(values.get(k), p) for _, k, p in SCALE))
        console.print(scale)

    if any(any(k in v for _, k, _ in WEBHOOKS) for v in medians.values()):
        hooks = Table(title="Tether webhooks (medians; bench/webhooks.py)")
        hooks.add_column("system")
        for title, _, _ in WEBHOOKS:
            hooks.add_column(title, justify="right")
        for backend, values in medians.items():
            hooks.add_row(f"tether_{backend}", *(_fmt(values.get(k), p) for _, k, p in WEBHOOKS))
        console.print(hooks)


_NUMERIC = {"baseline", "now", "worse by", "ceiling"}


def _verdict(change: Change) -> str:
    if not change.regressed:
        return "ok"
    return "over the ceiling" if change.ceiling is not None else "REGRESSED"


def print_verdict(verdict: Verdict, *, compared: bool) -> None:
    """What the run failed to measure, then (with a baseline) every judged metric."""
    console = _console()
    if verdict.problems:
        problems = Table(title="Not measured or not judged (each fails the run)")
        for column in ("backend", "what", "why"):
            problems.add_column(column)
        for p in verdict.problems:
            problems.add_row(p.backend or "-", p.subject, p.reason, style="bold red")
        console.print(problems)
    if compared:
        threshold = verdict.threshold
        table = Table(
            title=f"Against the baseline (regression: more than {threshold:.0%} worse, "
            "or over the ceiling)"
        )
        for column in ("backend", "metric", "baseline", "now", "worse by", "ceiling", "verdict"):
            table.add_column(column, justify="right" if column in _NUMERIC else "left")
        for c in verdict.changes:
            table.add_row(
                c.backend,
                c.metric,
                "-" if c.baseline is None else f"{c.baseline:.4g}",
                f"{c.current:.4g}",
                f"{c.worse_by:+.0%}" if math.isfinite(c.worse_by) else "inf",
                "-" if c.ceiling is None else f"{c.ceiling:g}",
                _verdict(c),
                style="bold red" if c.regressed else None,
            )
        console.print(table)
        bad = verdict.regressions
        if bad:
            console.print(f"[bold red]{len(bad)} regression(s)[/]")
        else:
            console.print(f"no regression over {threshold:.0%} and no ceiling crossed")
    if verdict.problems:
        console.print(f"[bold red]{len(verdict.problems)} problem(s): the run fails[/]")
