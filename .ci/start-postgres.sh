#!/usr/bin/env bash
# Start the machine's PostgreSQL cluster if it is not running, then wait until it answers.
set -uo pipefail
if command -v pg_isready >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 -q; then
    exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    for version in $(ls /etc/postgresql); do
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
fi
for _ in $(seq 1 60); do
    if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
        exit 0
    fi
    sleep 0.5
done
echo "PostgreSQL is not reachable at 127.0.0.1:5432 (its tests will say so)" >&2
exit 0
