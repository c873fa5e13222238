"""The regression gate: save medians as a baseline, compare a later run against it.

A metric regresses when it is more than `threshold` worse than the baseline: slower
(`*_s`, `*_ms`, `*_mb`, lower is better) or less throughput (`*_per_s`, higher is better).
The machine is noisy, so compare runs of the same machine and session where possible.
"""

from __future__ import annotations

import json
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

IGNORED = {"w5_history_build_s"}
"""Set-up costs, not product behaviour."""


def higher_is_better(metric: str) -> bool:
    """Throughputs: `..._per_s`, also with a suffix (`w1_tasks_per_s_procs_2`); not
    `w2_ms_per_step`."""
    return re.search(r"_per_s(_|$)", metric) is not None


def save_baseline(path: Path, medians: dict[str, dict[str, float]]) -> None:
    """Write {backend: {metric: median}} with a note of when and where."""
    data = {
        "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.node()} {platform.machine()} {platform.python_version()}",
        "medians": medians,
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


@dataclass
class Change:
    backend: str
    metric: str
    baseline: float
    current: float
    worse_by: float
    """Fraction by which the current value is worse (negative: better)."""


def compare(baseline_path: Path, medians: dict[str, dict[str, float]]) -> list[Change]:
    """Every metric present in both, with how much worse it got."""
    data = json.loads(baseline_path.read_text())
    base: dict[str, dict[str, float]] = data.get("medians", data)
    changes: list[Change] = []
    for backend, metrics in sorted(medians.items()):
        for metric, current in sorted(metrics.items()):
            old = base.get(backend, {}).get(metric)
            if old is None or metric in IGNORED:
                continue
            if metric.endswith("_held_tasks"):  # must stay at what it was (zero)
                worse = float("inf") if current > old else 0.0
            elif higher_is_better(metric):
                worse = (old / current - 1) if current > 0 else float("inf")
            else:
                worse = (current / old - 1) if old > 0 else 0.0
            changes.append(Change(backend, metric, old, current, worse))
    return changes


def regressions(changes: list[Change], threshold: float) -> list[Change]:
    return [c for c in changes if c.worse_by > threshold]
