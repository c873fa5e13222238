"""Several processes opening one new SQLite file at the same moment (a worker and a CLI
submit starting together) must all succeed: schema creation and the switch to WAL race."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

OPEN = """
import asyncio, sys
from tether import Tether
async def main():
    app = Tether(sys.argv[1])
    await app.open()
    await app.close()
asyncio.run(main())
"""


@pytest.mark.parametrize("round_", range(3))
def test_processes_opening_a_new_file_together_all_succeed(tmp_path: Path, round_: int) -> None:
    url = f"sqlite:///{tmp_path / f'fresh{round_}.db'}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(6)
    ]
    failures = []
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            failures.append(err.decode().strip().splitlines()[-1])
    assert failures == []
