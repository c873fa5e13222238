"""Tether benchmarks: the peer workloads W1-W5 on SQLite and PostgreSQL.

`python -m bench` (or `make bench`) runs everything and writes one JSON file per
workload and backend to `bench/results/`, with the same keys as
`../shared/peerbench/results/*.json`. See docs/performance.md for the figures and
`python -m bench --help` for the options.
"""
