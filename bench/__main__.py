"""`python -m bench [WORKLOAD ...] [--backend sqlite,pg] [--quick] [--runs N]
[--compare BASELINE.json] [--save-baseline [PATH]]`

Workloads: w1 w2 w3 w4 w5 (all of W5) or a W5 part (w5_claim, w5_procs, w5_rss), and
wh (webhooks: wh_rate, wh_latency, wh_w1; bench/webhooks.py).
Default: all workloads on both backends. A backend that cannot be opened (PostgreSQL
not reachable, or its store not installed) is reported as unavailable and skipped.
Environment: BENCH_RUNS, BENCH_PG_URL (admin URL; a fresh database is created and
dropped per run), BENCH_DATA_DIR (where SQLite files go), BENCH_RESULTS, BENCH_N_W1...
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

from bench import gate, scale, webhooks, workloads
from bench.common import HERE, RESULTS_DIR, Results, Sizes, fresh_database, log, write_combined

Fn = Callable[[str, Sizes, int, str], Awaitable[dict[str, float]]]


def _plain(fn: Callable[[str, Sizes], Awaitable[dict[str, float]]]) -> Fn:
    async def run(url: str, sizes: Sizes, run: int, backend: str) -> dict[str, float]:
        return await fn(url, sizes)

    return run


@dataclass
class Part:
    """One measured piece of a workload."""

    name: str
    workload: str
    fn: Fn
    shared_db: bool = False
    """One database for all runs (set up once: the 1M-task history)."""


def parts_for(sizes: Sizes) -> list[Part]:
    parts = [
        Part("w1", "w1", _plain(workloads.w1)),
        Part("w2", "w2", _plain(workloads.w2)),
        Part("w3", "w3", _plain(workloads.w3)),
        Part("w4", "w4", _plain(workloads.w4)),
        Part("w5_claim_empty", "w5", scale.claim_empty),
        Part("w5_claim_1m", "w5", scale.claim_history, shared_db=True),
    ]
    parts += [Part(f"w5_procs_{n}", "w5", scale.procs_workload(n)) for n in sizes.w5_procs]
    parts.append(Part("w5_rss", "w5", scale.waiting_rss))
    parts += [
        Part("wh_rate", "wh", _plain(webhooks.wh_rate)),
        Part("wh_latency", "wh", _plain(webhooks.wh_latency)),
        Part("wh_w1", "wh", _plain(webhooks.wh_w1)),
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


async def probe(backend: str, url: str) -> str | None:
    """None when Tether can open a store at `url`, else the reason it cannot."""
    from tether.store import open_store

    try:
        store = open_store(url)
        await store.open(check_schema=False)
        await store.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def run_backend(backend: str, parts: list[Part], sizes: Sizes) -> tuple[list[Results], str | None]:
    config = {
        "api": f"in-process app.worker(concurrency={sizes.concurrency}) unless noted",
        "completion": "in-memory counter in the step (W1); handle.result (W2-W4); "
        "COUNT polled every 10 ms (W1 with worker processes)",
        "sizes": sizes.as_dict(),
    }
    results: dict[str, Results] = {}
    for part in parts:
        if part.workload not in results:
            results[part.workload] = Results(backend, part.workload, config)
    try:
        with fresh_database(backend) as url:
            reason = asyncio.run(probe(backend, url))
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()
    if reason is not None:
        reason = reason.splitlines()[0][:300]
        log(f"tether_{backend}: unavailable: {reason}")
        for res in results.values():
            res.error("unavailable", reason)
        return list(results.values()), reason
    for part in parts:
        res = results[part.workload]
        shared = fresh_database(backend) if part.shared_db else None
        shared_url = shared.__enter__() if shared is not None else None
        try:
            for run in range(sizes.runs):
                log(f"tether_{backend} {part.name} run {run + 1}/{sizes.runs}")
                try:
                    if shared_url is not None:
                        metrics = asyncio.run(part.fn(shared_url, sizes, run, backend))
                    else:
                        with fresh_database(backend) as url:
                            metrics = asyncio.run(part.fn(url, sizes, run, backend))
                except Exception as exc:
                    traceback.print_exc()
                    res.error(f"{part.name}:run{run + 1}", f"{type(exc).__name__}: {exc}")
                    continue
                for metric, value in metrics.items():
                    res.add(metric, value)
                log("  " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        finally:
            if shared is not None:
                shared.__exit__(None, None, None)
    out = list(results.values())
    write_combined(backend, out, config)
    return out, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Tether benchmarks W1-W5 (see docs/performance.md)"
    )
    parser.add_argument(
        "workloads", nargs="*", help="w1 w2 w3 w4 w5 wh, or a part (w5_rss, wh_rate); default all"
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

    medians: dict[str, dict[str, float]] = {}
    unavailable: dict[str, str] = {}
    for backend in backends:
        results, reason = run_backend(backend, parts, sizes)
        if reason is not None:
            unavailable[backend] = reason
            continue
        merged: dict[str, float] = {}
        for r in results:
            merged.update(r.median)
        medians[backend] = merged

    from bench.report import print_tables

    print_tables(medians, unavailable, peers=not args.no_peers)
    log(f"results in {RESULTS_DIR}")

    status = 0
    if args.compare is not None:
        from bench.report import print_comparison

        changes = gate.compare(args.compare, medians)
        bad = gate.regressions(changes, args.threshold)
        print_comparison(changes, bad, args.threshold)
        if bad:
            status = 1
    if args.save_baseline is not None:
        gate.save_baseline(args.save_baseline, medians)
        log(f"baseline saved to {args.save_baseline}")
    return status


if __name__ == "__main__":
    sys.exit(main())
