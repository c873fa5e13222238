"""`python -m bench [WORKLOAD ...] [--backend sqlite,pg] [--quick] [--runs N]
[--compare BASELINE.json] [--save-baseline [PATH]]`

Workloads: w1 w2 w3 w4 w5 (all of W5) or a W5 part (w5_claim, w5_procs, w5_parked),
and wh (webhooks: wh_rate, wh_latency, wh_w1; bench/webhooks.py).
Default: all workloads on both backends. The exit status is 1 when the run did not
measure everything it was asked to (a backend that cannot be opened, a run that
raised, a metric without a value) and, with `--compare`, when a metric regressed or
cannot be judged (bench/gate.py); run `--backend sqlite` where there is no PostgreSQL.
Environment: TETHER_BENCH_PG_URL (the PostgreSQL server's admin URL; a fresh database
is created and dropped per run), BENCH_RUNS, BENCH_DATA_DIR (where SQLite files go),
BENCH_RESULTS, BENCH_N_W1 ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench import gate, parked, scale, webhooks, workloads
from bench.common import (
    HERE,
    RESULTS_DIR,
    Results,
    Sizes,
    fresh_database,
    log,
    unavailable,
    write_combined,
)

Fn = Callable[[str, Sizes, int, str], Awaitable[dict[str, float]]]


def _plain(fn: Callable[[str, Sizes], Awaitable[dict[str, float]]]) -> Fn:
    async def run(url: str, sizes: Sizes, run: int, backend: str) -> dict[str, float]:
        return await fn(url, sizes)

    return run


@dataclass
class Part:
    """One measured piece of a workload, and the metrics it promises to produce (the
    gate fails a run in which a declared metric has no value, bench/gate.py)."""

    name: str
    workload: str
    fn: Fn
    metrics: tuple[str, ...]
    sqlite_metrics: tuple[str, ...] = ()
    """Declared on SQLite only."""
    shared_db: bool = False
    """One database for all runs (set up once: the 1M-task history)."""
    once: bool = False
    """One run, whatever `--runs` says: the figure is a slope of bytes, not a time."""

    def declared(self, backend: str) -> tuple[str, ...]:
        return self.metrics + (self.sqlite_metrics if backend == "sqlite" else ())


def parts_for(sizes: Sizes) -> list[Part]:
    parts = [
        Part(
            "w1",
            "w1",
            _plain(workloads.w1),
            ("w1_enqueue_s", "w1_drain_s", "w1_tasks_per_s", "w1_settle_ms"),
        ),
        Part("w2", "w2", _plain(workloads.w2), ("w2_ms_per_step", "w2_async_ms_per_step")),
        Part("w3", "w3", _plain(workloads.w3), ("w3_total_s",)),
        Part("w4", "w4", _plain(workloads.w4), ("w4_p50_ms", "w4_p99_ms")),
        Part("w5_claim_empty", "w5", scale.claim_empty, ("w5_claim_empty_per_s",)),
        Part(
            "w5_claim_1m",
            "w5",
            scale.claim_history,
            ("w5_claim_1m_per_s", "w5_history_build_s"),
            shared_db=True,
        ),
    ]
    parts += [
        Part(
            f"w5_procs_{n}",
            "w5",
            scale.procs_workload(n),
            (f"w1_drain_s_procs_{n}", f"w1_tasks_per_s_procs_{n}"),
        )
        for n in sizes.w5_procs
    ]
    parts.append(
        Part(
            "w5_parked",
            "w5",
            parked.parked,
            (
                "w5_idle_rss_mb",
                "w5_parked_heap_bytes_per_task",
                "w5_parked_rss_bytes_per_task",
                "w5_parked_held_tasks",
            ),
            sqlite_metrics=("w5_parked_sqlite_bytes_per_task",),
            once=True,
        )
    )
    parts += [
        Part("wh_rate", "wh", _plain(webhooks.wh_rate), ("wh_deliveries_per_s", "wh_rate_s")),
        Part(
            "wh_latency", "wh", _plain(webhooks.wh_latency), ("wh_delay_p50_ms", "wh_delay_p99_ms")
        ),
        Part(
            "wh_w1",
            "wh",
            _plain(webhooks.wh_w1),
            tuple(f"wh_w1_{m}_tasks_per_s" for m in ("base", "same", "split"))
            + tuple(f"wh_w1_{m}_all_delivered_s" for m in ("same", "split"))
            + tuple(f"wh_w1_{m}_cost_pct" for m in ("same", "split")),
        ),
    ]
    return parts


def select(parts: list[Part], names: list[str]) -> list[Part]:
    if not names:
        return parts
    chosen = [p for p in parts if any(p.name == n or p.name.startswith(n) for n in names)]
    unknown = [n for n in names if not any(p.name.startswith(n) for p in parts)]
    if unknown:
        known = sorted({p.workload for p in parts} | {p.name for p in parts})
        sys.exit(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def run_backend(backend: str, parts: list[Part], sizes: Sizes) -> gate.Measured:
    """Every run of every part on `backend`, each on a fresh database; what was measured,
    what raised, or why the backend could not be opened."""
    config = {
        "api": f"in-process app.worker(concurrency={sizes.concurrency}) unless noted",
        "completion": "W1: the step's in-memory counter, then the store's count of "
        "succeeded tasks polled every 1 ms until it is N (10 ms with worker processes); "
        "handle.result (W2-W4)",
        "sizes": sizes.as_dict(),
    }
    declared = frozenset(m for part in parts for m in part.declared(backend))
    results: dict[str, Results] = {}
    for part in parts:
        if part.workload not in results:
            results[part.workload] = Results(backend, part.workload, config)
    reason = asyncio.run(unavailable(backend))
    if reason is not None:
        log(f"tether_{backend}: unavailable: {reason}")
        for res in results.values():
            res.error("unavailable", reason)
        return gate.Measured(declared, unavailable=reason)
    errors: dict[str, str] = {}
    for part in parts:
        res = results[part.workload]
        runs = 1 if part.once else sizes.runs
        shared = fresh_database(backend) if part.shared_db else None
        shared_url = shared.__enter__() if shared is not None else None
        try:
            for run in range(runs):
                log(f"tether_{backend} {part.name} run {run + 1}/{runs}")
                try:
                    if shared_url is not None:
                        metrics = asyncio.run(part.fn(shared_url, sizes, run, backend))
                    else:
                        with fresh_database(backend) as url:
                            metrics = asyncio.run(part.fn(url, sizes, run, backend))
                except Exception as exc:
                    traceback.print_exc()
                    key = f"{part.name}:run{run + 1}"
                    errors[key] = f"{type(exc).__name__}: {exc}"
                    res.error(key, errors[key])
                    continue
                for metric, value in metrics.items():
                    res.add(metric, value)
                log("  " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        finally:
            if shared is not None:
                shared.__exit__(None, None, None)
    out = list(results.values())
    write_combined(backend, out, config)
    medians = {k: v for r in out for k, v in r.median.items()}
    return gate.Measured(declared, medians, errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Tether benchmarks W1-W5 (see docs/performance.md)"
    )
    parser.add_argument(
        "workloads",
        nargs="*",
        help="w1 w2 w3 w4 w5 wh, or a part (w5_parked, wh_rate); default all",
    )
    parser.add_argument("--backend", default="sqlite,pg", help="comma-separated: sqlite,pg")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (smoke)")
    parser.add_argument("--runs", type=int, default=None, help="runs per workload (BENCH_RUNS)")
    parser.add_argument("--compare", type=Path, metavar="BASELINE", help="regression gate")
    parser.add_argument("--threshold", type=float, default=0.15, help="gate tolerance (0.15)")
    parser.add_argument(
        "--save-baseline",
        nargs="?",
        const=HERE / "baseline.json",
        type=Path,
        metavar="PATH",
        help="save these medians as the baseline (default bench/baseline.json)",
    )
    parser.add_argument("--no-peers", action="store_true", help="leave peer rows out of the table")
    args = parser.parse_args(argv)

    sizes = Sizes.make(args.quick, args.runs)
    parts = select(parts_for(sizes), [w.lower() for w in args.workloads])
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    for b in backends:
        if b not in ("sqlite", "pg"):
            sys.exit(f"unknown backend {b!r} (sqlite, pg)")
    log(f"sizes: {json.dumps(sizes.as_dict())}")

    from bench.report import print_tables, print_verdict

    baseline = None
    if args.compare is not None:
        # Before anything runs: a gate that cannot judge should not take 20 minutes to say so.
        try:
            baseline = gate.Baseline.load(args.compare)
        except ValueError as exc:
            log(f"gate: {exc}")
            return 1
        early = gate.size_problems(baseline, sizes.as_dict())
        if early:
            print_verdict(gate.Verdict(early, [], args.threshold), compared=False)
            return 1

    measured = {backend: run_backend(backend, parts, sizes) for backend in backends}
    medians = {b: dict(m.medians) for b, m in measured.items() if m.unavailable is None}
    unavailable = {b: m.unavailable for b, m in measured.items() if m.unavailable is not None}
    print_tables(medians, unavailable, peers=not args.no_peers)
    log(f"results in {RESULTS_DIR}")

    verdict = gate.judge(measured, baseline, args.threshold, sizes.as_dict())
    print_verdict(verdict, compared=baseline is not None)
    if args.save_baseline is not None:
        if gate.judge(measured).ok:
            gate.save_baseline(args.save_baseline, medians, sizes.as_dict())
            log(f"baseline saved to {args.save_baseline}")
        else:
            log(f"baseline NOT saved to {args.save_baseline}: the run did not measure everything")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
