"""The regression gate: save medians as a baseline, judge a later run against it.

A run is judged in two steps (`judge`), and any finding fails it (exit status 1):

1. Did it measure what it was asked to? Each part of a workload declares the metrics it
   produces. A backend that could not be opened, a run that raised, a declared metric
   without a value, a value that is not a finite number, or a value no part declared
   is a `Problem`: a gate that skipped what it could not measure would pass by
   measuring nothing.
2. With a baseline: every declared metric is judged, except the few in `NOT_JUDGED`
   (reported only, each for a stated reason). A metric in `CEILINGS` must stay at or
   under its fixed bound (a claim, not a speed). Any other metric regresses when it is
   more than `threshold` worse than its baseline median: slower or bigger (`*_s`,
   `*_ms`, `*_mb` ..., lower is better) or less throughput (`*_per_s`, higher is
   better). A judged metric the baseline lacks or whose name says neither, or a
   baseline measured at other sizes, is a `Problem`.

The machine is noisy: compare runs of the same machine and session where possible.
"""

from __future__ import annotations

import json
import math
import platform
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NOT_JUDGED: frozenset[str] = frozenset(
    {
        # Set-up cost of the 1M-task history, not product behaviour.
        "w5_history_build_s",
        # The few ms between W1's step counter and the database counting every task
        # succeeded: part of `w1_drain_s` (judged); alone, a handful of polls of noise.
        "w1_settle_ms",
        # Resident memory per parked task grows with caches that are bounded but not
        # yet full at 10,000 tasks (SQLite's page cache, the allocators' arenas): shown
        # beside the heap figure, which `CEILINGS` judges.
        "w5_parked_rss_bytes_per_task",
        "w5_parked_sqlite_bytes_per_task",
        # Ratios of two judged throughputs, near zero when webhooks cost little: a
        # relative change of a number near zero is noise.
        "wh_w1_same_cost_pct",
        "wh_w1_split_cost_pct",
    }
)
"""Metrics reported but never judged."""

CEILINGS: Mapping[str, float] = {
    # "A waiting task holds no worker memory": the Python heap a parked task leaves in
    # the worker. Measured ~0-5 B per task (bounded caches); anything the worker kept
    # per task (an id in a dict, a record) would cost 100 B or more.
    "w5_parked_heap_bytes_per_task": 64.0,
    # ... nor a task object: the worker holds none of them once they are parked.
    "w5_parked_held_tasks": 0.0,
}
"""Metrics judged against a fixed bound instead of the baseline."""


_HIGHER = re.compile(r"_per_s(_|$)")
_LOWER = re.compile(r"(_s|_ms|_mb|_per_step|_per_task|_pct|_held_tasks)(_procs_\d+)?$")


def higher_is_better(metric: str) -> bool | None:
    """True for throughputs (`..._per_s`, also with a suffix: `w1_tasks_per_s_procs_2`),
    False for times, sizes and counts (`_s`, `_ms`, `_mb`, `w2_ms_per_step`,
    `..._bytes_per_task`, `_pct`, `_held_tasks`), None when the name does not say: such
    a metric cannot be judged (the gate will not guess which way is better)."""
    if _HIGHER.search(metric):
        return True
    if _LOWER.search(metric):
        return False
    return None


# Inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """What one backend's run produced, and what it was asked to produce."""

    declared: frozenset[str]
    """The metrics the selected parts declare for this backend."""
    medians: Mapping[str, float] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)
    """`part:runN` -> the exception a run raised."""
    unavailable: str | None = None
    """Why the backend could not be opened (then nothing was run on it)."""


@dataclass(frozen=True)
class Baseline:
    """A saved run: medians per backend, and the sizes they were measured at."""

    medians: Mapping[str, Mapping[str, float]]
    sizes: Mapping[str, Any] | None
    saved_at: str = ""
    machine: str = ""

    @classmethod
    def load(cls, path: Path) -> Baseline:
        """Read `path`; ValueError when it is not a baseline file."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read baseline {path}: {exc}") from exc
        medians = data.get("medians") if isinstance(data, dict) else None
        if not isinstance(medians, dict):
            raise ValueError(f"{path} is not a baseline (no 'medians')")
        return cls(medians, data.get("sizes"), data.get("saved_at", ""), data.get("machine", ""))


def save_baseline(
    path: Path, medians: Mapping[str, Mapping[str, float]], sizes: Mapping[str, Any]
) -> None:
    """Write {backend: {metric: median}} with the sizes, and when and where."""
    data = {
        "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.node()} {platform.machine()} {platform.python_version()}",
        "sizes": dict(sizes),
        "medians": {b: dict(m) for b, m in medians.items()},
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# Findings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Something the run did not measure, or cannot be judged on."""

    backend: str
    """The backend, or "" for the run as a whole."""
    subject: str
    """A metric, a `part:runN`, or "backend" / "sizes"."""
    reason: str


@dataclass(frozen=True)
class Change:
    """One judged metric against its baseline (and its ceiling, if it has one)."""

    backend: str
    metric: str
    baseline: float | None
    current: float
    worse_by: float
    """Fraction by which the current value is worse than the baseline (negative:
    better; 0 without a baseline)."""
    ceiling: float | None = None
    regressed: bool = False


@dataclass
class Verdict:
    problems: list[Problem]
    changes: list[Change]
    threshold: float

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.regressed]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.regressions


# Judging --------------------------------------------------------------------------------

SIZES_NOT_COMPARED = {"runs"}
"""Sizes that may differ between a baseline and a run (a median of 3 or of 5)."""


def judge(
    measured: Mapping[str, Measured],
    baseline: Baseline | None = None,
    threshold: float = 0.15,
    sizes: Mapping[str, Any] | None = None,
) -> Verdict:
    """Every problem and every judged change of one run (see the module docstring).
    Without `baseline`, only whether the run measured what it was asked to."""
    problems: list[Problem] = []
    changes: list[Change] = []
    if baseline is not None:
        problems += size_problems(baseline, sizes)
    for backend, m in sorted(measured.items()):
        if m.unavailable is not None:
            problems.append(Problem(backend, "backend", f"unavailable: {m.unavailable}"))
            continue
        for key, message in sorted(m.errors.items()):
            problems.append(Problem(backend, key, f"raised {message}"))
        for metric in sorted(m.declared - m.medians.keys()):
            problems.append(Problem(backend, metric, "declared but not measured"))
        for metric in sorted(m.medians.keys() - m.declared):
            problems.append(Problem(backend, metric, "measured but declared by no part"))
        for metric in sorted(m.declared & m.medians.keys()):
            current = m.medians[metric]
            if not _finite(current):
                problems.append(Problem(backend, metric, f"not a number ({current})"))
            elif baseline is not None and metric not in NOT_JUDGED:
                old = baseline.medians.get(backend, {}).get(metric)
                change, problem = _judge_one(backend, metric, old, current, threshold)
                changes += [change] if change is not None else []
                problems += [problem] if problem is not None else []
    return Verdict(problems, changes, threshold)


def _judge_one(
    backend: str, metric: str, old: float | None, current: float, threshold: float
) -> tuple[Change | None, Problem | None]:
    ceiling = CEILINGS.get(metric)
    if old is not None and not _finite(old):
        return None, Problem(backend, metric, f"baseline value is not a number ({old})")
    if ceiling is not None:
        worse = _worse_by(metric, old, current) if old is not None else 0.0
        return Change(backend, metric, old, current, worse, ceiling, current > ceiling), None
    if old is None:
        return None, Problem(backend, metric, "no baseline value (re-save the baseline)")
    if higher_is_better(metric) is None:
        return None, Problem(backend, metric, "its name does not say whether more is better")
    worse = _worse_by(metric, old, current)
    return Change(backend, metric, old, current, worse, None, worse > threshold), None


def _worse_by(metric: str, old: float, current: float) -> float:
    if higher_is_better(metric):
        return (old / current - 1) if current > 0 else math.inf
    if old > 0:
        return current / old - 1
    return math.inf if current > old else 0.0


def size_problems(baseline: Baseline, sizes: Mapping[str, Any] | None) -> list[Problem]:
    """A problem when the run's sizes are not the baseline's (`runs` aside)."""
    if sizes is None:
        return []
    if baseline.sizes is None:
        return [Problem("", "sizes", "the baseline records no sizes (re-save it)")]
    # Through JSON, so that a tuple of the run equals the list of the file.
    ours = json.loads(json.dumps(dict(sizes)))
    theirs = json.loads(json.dumps(dict(baseline.sizes)))
    differ = sorted(
        k
        for k in ours.keys() | theirs.keys()
        if k not in SIZES_NOT_COMPARED and ours.get(k) != theirs.get(k)
    )
    if not differ:
        return []
    shown = ", ".join(f"{k} {theirs.get(k)} -> {ours.get(k)}" for k in differ)
    return [Problem("", "sizes", f"measured at other sizes than the baseline: {shown}")]


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
