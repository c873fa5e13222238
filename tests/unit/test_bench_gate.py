"""The benchmark gate (bench/gate.py) fails a run that did not measure what it was asked
to, and judges every declared metric against the baseline or its ceiling."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from bench import gate
from bench.__main__ import main, parts_for
from bench.common import Sizes
from bench.gate import Baseline, Measured

SIZES = Sizes().as_dict()


def measured(**medians: float) -> Measured:
    """A run that measured exactly what it declared."""
    return Measured(frozenset(medians), medians)


def baseline(
    backend: str = "sqlite", sizes: dict[str, object] | None = None, **medians: float
) -> Baseline:
    return Baseline({backend: medians}, SIZES if sizes is None else sizes)


def problems(verdict: gate.Verdict) -> list[tuple[str, str]]:
    return [(p.backend, p.subject) for p in verdict.problems]


# What the run measured -----------------------------------------------------------------


def test_a_run_that_measured_everything_it_declared_passes() -> None:
    verdict = gate.judge({"sqlite": measured(w1_tasks_per_s=5000.0, w4_p50_ms=1.0)})
    assert verdict.ok
    assert verdict.changes == []


def test_an_unavailable_backend_fails_the_run() -> None:
    run = {"pg": Measured(frozenset({"w1_tasks_per_s"}), unavailable="connection refused")}
    verdict = gate.judge(run)
    assert not verdict.ok
    assert problems(verdict) == [("pg", "backend")]
    assert "connection refused" in verdict.problems[0].reason


def test_an_unavailable_backend_fails_the_gate_too() -> None:
    run = {
        "sqlite": measured(w1_tasks_per_s=5000.0),
        "pg": Measured(frozenset({"w1_tasks_per_s"}), unavailable="no server"),
    }
    both = Baseline({"sqlite": {"w1_tasks_per_s": 5000.0}, "pg": {"w1_tasks_per_s": 4000.0}}, SIZES)
    verdict = gate.judge(run, both, sizes=SIZES)
    assert problems(verdict) == [("pg", "backend")]
    assert [c.backend for c in verdict.changes] == ["sqlite"]


def test_a_run_that_raised_fails_even_when_other_runs_gave_a_median() -> None:
    run = Measured(
        frozenset({"w1_tasks_per_s"}),
        {"w1_tasks_per_s": 5000.0},
        {"w1:run2": "TimeoutError: fewer than 5000 tasks"},
    )
    verdict = gate.judge({"sqlite": run})
    assert problems(verdict) == [("sqlite", "w1:run2")]
    assert "TimeoutError" in verdict.problems[0].reason


def test_a_declared_metric_without_a_value_fails() -> None:
    run = Measured(frozenset({"w1_tasks_per_s", "w1_drain_s"}), {"w1_tasks_per_s": 5000.0})
    verdict = gate.judge({"sqlite": run})
    assert problems(verdict) == [("sqlite", "w1_drain_s")]
    assert verdict.problems[0].reason == "declared but not measured"


def test_a_metric_no_part_declared_fails() -> None:
    run = Measured(frozenset({"w1_tasks_per_s"}), {"w1_tasks_per_s": 5000.0, "w1_new_s": 1.0})
    verdict = gate.judge({"sqlite": run})
    assert problems(verdict) == [("sqlite", "w1_new_s")]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_value_that_is_not_a_finite_number_fails(value: float) -> None:
    verdict = gate.judge({"sqlite": measured(w4_p99_ms=value)})
    assert problems(verdict) == [("sqlite", "w4_p99_ms")]


def test_a_nan_is_not_judged_against_the_baseline_either() -> None:
    verdict = gate.judge(
        {"sqlite": measured(w4_p99_ms=math.nan)}, baseline(w4_p99_ms=2.0), sizes=SIZES
    )
    assert problems(verdict) == [("sqlite", "w4_p99_ms")]
    assert verdict.changes == []


# Against the baseline ------------------------------------------------------------------


def test_within_the_threshold_is_no_regression() -> None:
    verdict = gate.judge(
        {"sqlite": measured(w2_ms_per_step=0.55)}, baseline(w2_ms_per_step=0.5), 0.15, SIZES
    )
    assert verdict.ok
    (change,) = verdict.changes
    assert change.worse_by == pytest.approx(0.10)
    assert not change.regressed


def test_slower_beyond_the_threshold_regresses() -> None:
    verdict = gate.judge(
        {"sqlite": measured(w3_total_s=1.0)}, baseline(w3_total_s=0.8), 0.15, SIZES
    )
    assert not verdict.ok
    assert [c.metric for c in verdict.regressions] == ["w3_total_s"]


def test_less_throughput_beyond_the_threshold_regresses() -> None:
    verdict = gate.judge(
        {"sqlite": measured(w1_tasks_per_s=4000.0)}, baseline(w1_tasks_per_s=5000.0), 0.15, SIZES
    )
    (change,) = verdict.regressions
    assert change.worse_by == pytest.approx(0.25)


def test_more_throughput_is_better_not_worse() -> None:
    verdict = gate.judge(
        {"sqlite": measured(w1_tasks_per_s_procs_2=9000.0)},
        baseline(w1_tasks_per_s_procs_2=5000.0),
        0.15,
        SIZES,
    )
    assert verdict.ok
    assert verdict.changes[0].worse_by < 0


def test_zero_throughput_is_infinitely_worse() -> None:
    verdict = gate.judge(
        {"sqlite": measured(w5_claim_empty_per_s=0.0)},
        baseline(w5_claim_empty_per_s=40000.0),
        0.15,
        SIZES,
    )
    assert verdict.regressions[0].worse_by == math.inf


def test_a_judged_metric_missing_from_the_baseline_fails() -> None:
    verdict = gate.judge(
        {"sqlite": measured(w1_tasks_per_s=5000.0, w1_drain_s=0.5)},
        baseline(w1_tasks_per_s=5000.0),
        sizes=SIZES,
    )
    assert problems(verdict) == [("sqlite", "w1_drain_s")]
    assert "no baseline value" in verdict.problems[0].reason


def test_a_baseline_without_the_backend_fails_every_judged_metric() -> None:
    verdict = gate.judge(
        {"pg": measured(w1_tasks_per_s=5000.0, w4_p50_ms=1.0)},
        baseline("sqlite", w1_tasks_per_s=5000.0, w4_p50_ms=1.0),
        sizes=SIZES,
    )
    assert problems(verdict) == [("pg", "w1_tasks_per_s"), ("pg", "w4_p50_ms")]


def test_a_nan_in_the_baseline_fails() -> None:
    verdict = gate.judge(
        {"sqlite": measured(w4_p50_ms=1.0)}, baseline(w4_p50_ms=math.nan), sizes=SIZES
    )
    assert problems(verdict) == [("sqlite", "w4_p50_ms")]


def test_baseline_metrics_of_parts_not_run_are_ignored() -> None:
    verdict = gate.judge(
        {"sqlite": measured(w4_p50_ms=1.0)},
        baseline(w4_p50_ms=1.0, w1_tasks_per_s=5000.0, w5_claim_1m_per_s=30000.0),
        sizes=SIZES,
    )
    assert verdict.ok
    assert [c.metric for c in verdict.changes] == ["w4_p50_ms"]


def test_not_judged_metrics_need_no_baseline_and_never_regress() -> None:
    verdict = gate.judge(
        {"sqlite": measured(w1_settle_ms=900.0, w5_history_build_s=1e6)},
        baseline(),
        sizes=SIZES,
    )
    assert verdict.ok
    assert verdict.changes == []


def test_a_metric_whose_name_says_neither_way_cannot_be_judged() -> None:
    verdict = gate.judge({"sqlite": measured(w9_score=1.0)}, baseline(w9_score=1.0), sizes=SIZES)
    assert problems(verdict) == [("sqlite", "w9_score")]
    assert "more is better" in verdict.problems[0].reason


@pytest.mark.parametrize(
    ("metric", "higher"),
    [
        ("w1_tasks_per_s", True),
        ("w1_tasks_per_s_procs_4", True),
        ("wh_deliveries_per_s", True),
        ("w2_ms_per_step", False),
        ("w1_drain_s_procs_2", False),
        ("w5_idle_rss_mb", False),
        ("w5_parked_heap_bytes_per_task", False),
        ("w5_parked_held_tasks", False),
        ("wh_w1_same_cost_pct", False),
        ("w9_score", None),
    ],
)
def test_which_way_is_better_is_read_from_the_name(metric: str, higher: bool | None) -> None:
    assert gate.higher_is_better(metric) is higher


# Ceilings --------------------------------------------------------------------------------


def test_heap_per_parked_task_is_judged_against_its_ceiling_not_the_baseline() -> None:
    # 1 -> 30 B is +2,900% against the baseline, but under the ceiling: not a regression.
    ceiling = gate.CEILINGS["w5_parked_heap_bytes_per_task"]
    verdict = gate.judge(
        {"sqlite": measured(w5_parked_heap_bytes_per_task=30.0)},
        baseline(w5_parked_heap_bytes_per_task=1.0),
        sizes=SIZES,
    )
    assert ceiling > 30.0
    assert verdict.ok
    assert verdict.changes[0].ceiling == ceiling


def test_heap_per_parked_task_over_the_ceiling_regresses_even_at_the_baseline() -> None:
    over = gate.CEILINGS["w5_parked_heap_bytes_per_task"] + 1
    verdict = gate.judge(
        {"pg": measured(w5_parked_heap_bytes_per_task=over)},
        baseline("pg", w5_parked_heap_bytes_per_task=over),
        sizes=SIZES,
    )
    assert [c.metric for c in verdict.regressions] == ["w5_parked_heap_bytes_per_task"]


def test_a_parked_task_still_held_by_the_worker_regresses() -> None:
    verdict = gate.judge(
        {"sqlite": measured(w5_parked_held_tasks=1.0)},
        baseline(w5_parked_held_tasks=0.0),
        sizes=SIZES,
    )
    assert [c.metric for c in verdict.regressions] == ["w5_parked_held_tasks"]


def test_a_ceiling_needs_no_baseline_value() -> None:
    verdict = gate.judge({"sqlite": measured(w5_parked_held_tasks=0.0)}, baseline(), sizes=SIZES)
    assert verdict.ok
    assert verdict.changes[0].baseline is None


# Sizes and the baseline file -----------------------------------------------------------


def test_a_baseline_measured_at_other_sizes_fails() -> None:
    quick = Sizes.make(quick=True, runs=None).as_dict()
    verdict = gate.judge({"sqlite": measured(w4_p50_ms=1.0)}, baseline(w4_p50_ms=1.0), sizes=quick)
    assert ("", "sizes") in problems(verdict)
    assert "w1 5000 -> 500" in verdict.problems[0].reason


def test_another_number_of_runs_is_the_same_sizes() -> None:
    five = Sizes.make(quick=False, runs=5).as_dict()
    assert gate.size_problems(baseline(), five) == []


def test_a_baseline_without_sizes_fails() -> None:
    assert gate.size_problems(Baseline({"sqlite": {}}, None), SIZES)[0].subject == "sizes"


def test_a_saved_baseline_reads_back_with_its_sizes(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    gate.save_baseline(path, {"sqlite": {"w4_p50_ms": 1.0}}, Sizes().as_dict())
    loaded = Baseline.load(path)
    assert loaded.medians == {"sqlite": {"w4_p50_ms": 1.0}}
    # Through JSON the tuple of W5 process counts became a list: still the same sizes.
    assert gate.size_problems(loaded, Sizes().as_dict()) == []


@pytest.mark.parametrize("text", ["not json", "[]", '{"saved_at": "x"}'])
def test_a_file_that_is_not_a_baseline_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(text)
    with pytest.raises(ValueError):
        Baseline.load(path)


def test_a_missing_baseline_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Baseline.load(tmp_path / "nowhere.json")


def test_compare_refuses_a_baseline_of_other_sizes_before_running_anything(
    tmp_path: Path,
) -> None:
    # --quick against a full-size baseline: exit 1 at once (no workload runs: this
    # test would take seconds if one did, and there is no PostgreSQL to open here).
    path = tmp_path / "baseline.json"
    gate.save_baseline(path, {"sqlite": {}}, Sizes().as_dict())
    assert main(["w1", "--quick", "--backend", "sqlite", "--compare", str(path)]) == 1


def test_compare_refuses_an_unreadable_baseline_before_running_anything(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text("{}")
    assert main(["w1", "--backend", "sqlite", "--compare", str(tmp_path / "b.json")]) == 1


# The declarations ----------------------------------------------------------------------


def declared() -> set[str]:
    return {m for part in parts_for(Sizes()) for b in ("sqlite", "pg") for m in part.declared(b)}


def test_not_judged_and_ceilings_name_declared_metrics() -> None:
    assert declared() >= gate.NOT_JUDGED
    assert set(gate.CEILINGS) <= declared()
    assert not gate.NOT_JUDGED & set(gate.CEILINGS)


def test_every_declared_metric_says_which_way_is_better() -> None:
    assert [m for m in sorted(declared()) if gate.higher_is_better(m) is None] == []


def test_the_baseline_in_the_repository_can_judge_every_declared_metric() -> None:
    """bench/baseline.json holds every judged metric of a full run, at default sizes."""
    saved = Baseline.load(Path(__file__).resolve().parents[2] / "bench" / "baseline.json")
    assert gate.size_problems(saved, Sizes().as_dict()) == []
    parts = parts_for(Sizes())
    for backend in ("sqlite", "pg"):
        wanted = {m for p in parts for m in p.declared(backend)} - gate.NOT_JUDGED
        wanted -= set(gate.CEILINGS)
        assert sorted(wanted - set(saved.medians.get(backend, {}))) == [], backend


def test_quick_sizes_are_ordered_for_the_parked_slope() -> None:
    for sizes in (Sizes(), Sizes.make(quick=True, runs=None)):
        assert 0 < sizes.w5_parked_low < sizes.w5_parked_high
