#!/usr/bin/env bash
# Make sure the PostgreSQL server the test suite uses answers: start the machine's
# cluster if it is not running, then wait until it accepts connections. Exits non-zero,
# saying why, when it cannot: in CI the PostgreSQL half of the suite must run, never be
# skipped because the server was not there.
#
#   TETHER_TEST_POSTGRES  the server (the suite's own setting; default below)
#   TETHER_CI_PG_WAIT     seconds to wait for it (default 30)
#   TETHER_CI_PG_START    "no": only wait, start nothing (default: start local clusters)
set -uo pipefail

url="${TETHER_TEST_POSTGRES:-postgresql://postgres@127.0.0.1:5432/postgres}"
wait_seconds="${TETHER_CI_PG_WAIT:-30}"
where="${url#*://}"
where="${where#*@}"
where="${where%%/*}"

fail() {
    echo "start-postgres: $1" >&2
    echo "start-postgres: PostgreSQL at $where is needed: CI runs its tests, never skips them" >&2
    exit 1
}

if ! command -v pg_isready >/dev/null 2>&1; then
    fail "pg_isready not found (install the PostgreSQL client tools)"
fi
if pg_isready -d "$url" -q; then
    exit 0
fi
if [ "${TETHER_CI_PG_START:-yes}" != "no" ] && command -v pg_ctlcluster >/dev/null 2>&1 \
    && [ -d /etc/postgresql ]; then
    for version in $(ls /etc/postgresql); do
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
fi
for _ in $(seq 1 $((wait_seconds * 2))); do
    if pg_isready -d "$url" -q; then
        exit 0
    fi
    sleep 0.5
done
fail "no answer after ${wait_seconds}s ($(pg_isready -d "$url" 2>&1 | tail -n 1))"
