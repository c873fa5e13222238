"""Short ids on the command line, against the database (both backends): tables at 80
columns show ids the commands accept; ambiguous ids are refused with the candidates;
and `approve` finds an approval by its task."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apps.procs import cli_env, run_cli
from helpers import wait_status
from tether import ApprovalFilter, Context, TaskStatus, Tether


def one_line_error(out: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    for needle in needles:
        assert needle in line, line


def narrow(out: subprocess.CompletedProcess[str]) -> str:
    """The output of a command run at 80 columns, checked to fit."""
    assert out.returncode == 0, out.stderr
    for line in out.stdout.splitlines():
        assert len(line) <= 80, f"{len(line)} columns: {line!r}"
    return out.stdout


async def test_short_ids_and_approvals_by_task(
    make_app: Callable[[], Tether], store_url: str, tmp_path: Path
) -> None:
    app = make_app()

    @app.workflow("review_a_very_long_workflow_name")
    async def review(ctx: Context, n: int) -> Any:
        await ctx.step("draft", lambda: f"draft {n}")
        if n == 0:  # two approvals at once: its task id names neither
            first, second = await asyncio.gather(
                ctx.approval(summary="legal review of a rather long summary line", risk="high"),
                ctx.approval(summary="finance review", risk="high", name="finance"),
            )
            return [first.status, second.status]
        return (await ctx.approval(summary=f"publish draft {n}", risk="high")).status

    env = cli_env(TETHER_DATABASE_URL=store_url, USER="dave", COLUMNS="80")

    async def tether(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_cli, *args, env=env, cwd=tmp_path)

    async with app.worker(poll_interval=0.05):
        handles = await app.submit_many(
            "review_a_very_long_workflow_name", [{"n": n} for n in range(3)], created_by="sam"
        )
        for h in handles:
            await wait_status(app, h.id, TaskStatus.WAITING)
        two, one, other = (h.id for h in handles)
        # UUIDv7: ids made together share their time prefix (not always the same length)
        common = next(i for i, c in enumerate(zip(two, one, other, strict=True)) if len(set(c)) > 1)
        shared = two[:common]
        assert len(shared) >= 8, "made together: ids share their beginning"

        listed = narrow(await tether("list"))
        assert all(t[-12:] in listed for t in (two, one, other)), listed
        inbox = narrow(await tether("approvals"))
        pending = await app.approvals(ApprovalFilter(status="pending"))
        assert len(pending) == 4 and all(a.id[-12:] in inbox for a in pending), inbox
        status = narrow(await tether("status", two[-12:]))
        assert two in status and "legal review" in status and "finance" in status

        one_line_error(await tether("status", shared), 2, "matches 3 tasks", two, one)
        one_line_error(await tether("status", "abc"), 2, "too short")
        one_line_error(await tether("status", "ffffffffffff"), 1, "task not found")
        one_line_error(
            await tether("approve", two, "-r", "ok"), 2, "has 2 pending approvals", "legal"
        )
        legal = next(a for a in pending if a.task_id == two and a.seq == 2)
        out = await tether("approve", legal.id[-12:].upper(), "-r", "fine")  # case ignored
        assert out.returncode == 0 and "dave approved" in out.stdout, out.stderr
        out = await tether("approve", two[-12:], "-r", "fine too", "--json")
        assert out.returncode == 0, out.stderr  # now its one pending approval: finance
        assert json.loads(out.stdout)["summary"] == "finance review"
        assert await handles[0].result(timeout=10) == ["approved", "approved"]
        one_line_error(await tether("approve", two, "-r", "again"), 1, "no pending approval")
        closed = await tether("reject", legal.id[-12:], "-r", "late")  # closed: its outcome
        one_line_error(closed, 1, "already approved", "outcome that stands")

        out = await tether("reject", one[-12:], "-r", "no")
        assert out.returncode == 0, out.stderr
        assert await handles[1].result(timeout=10) == "rejected"

        # locally, a re-run needs the app (it validates the input again, as a submission)
        one_line_error(await tether("rerun", one[-12:]), 2, "no app given", "--app")
