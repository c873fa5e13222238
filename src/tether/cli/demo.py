"""`tether demo`: watch a worker die mid-task and another finish it without redoing work.

The story, all on one SQLite file in the demo directory:
1. submit the `research_report` workflow (see `tether.demo`);
2. start worker-1 in a subprocess and follow the task's events;
3. SIGKILL worker-1 while a step is in flight (after the parallel extraction);
4. start worker-2: once worker-1's lease expires it claims the task and replays the step
   log, so finished steps return their recorded results and only the rest runs;
5. read the execution journal the steps wrote and prove it: every step that had finished
   before the kill ran exactly once. Exit 0 only if the proof holds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from tether.cli.common import EXIT_ERROR, CLIError, console, handle_errors, run
from tether.cli.root import cli
from tether.cli.watch import describe
from tether.follow import follow_task
from tether.models import Event, StepKind, StepStatus, TaskStatus
from tether.store import open_store

MARKER = ".tether-demo"
LEASE_TTL = 2.0
KILL_STEP = "rank_facts"


@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Story:
    """What happened, for the final proof."""

    workdir: Path
    started: float = field(default_factory=time.monotonic)
    workers: dict[int, str] = field(default_factory=dict)
    """pid -> worker name."""
    done_before_kill: dict[int, str] = field(default_factory=dict)
    """seq -> step name of the steps committed as succeeded before the kill."""
    killed_at: float | None = None

    def say(self, text: str) -> None:
        console.print(f"[dim]{time.monotonic() - self.started:6.2f}s[/]  {text}", highlight=False)


def _prepare(workdir: Path) -> None:
    if workdir.exists():
        if not (workdir / MARKER).exists() and any(workdir.iterdir()):
            raise CLIError(
                f"{workdir} exists and is not a demo directory; choose another with --dir"
            )
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).write_text("created by `tether demo`; safe to delete\n")
    from tether.demo import prepare_workdir

    prepare_workdir(workdir)


def _start_worker(name: str, db_url: str, workdir: Path) -> WorkerProc:
    log_path = workdir / f"{name}.log"
    log = log_path.open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONUNBUFFERED"] = "1"
    if "TETHER_DEMO_SPEED" in os.environ:
        env["TETHER_DEMO_SPEED"] = os.environ["TETHER_DEMO_SPEED"]
    cmd = [
        sys.executable,
        "-m",
        "tether.cli",
        "worker",
        "--app",
        "tether.demo:app",
        "--database-url",
        db_url,
        "--worker-id",
        name,
        "--lease-ttl",
        str(LEASE_TTL),
        "--concurrency",
        "8",
        "--grace",
        "5",
        "--log-level",
        "WARNING",
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    return WorkerProc(name, proc, log_path, log)


def _stop_worker(w: WorkerProc, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
    if w.proc.poll() is None:
        w.proc.send_signal(sig)
    try:
        code = w.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        w.proc.kill()
        code = w.proc.wait()
    w.log.close()
    return code


async def _story(workdir: Path, story: Story) -> bool:
    from tether.demo import app

    db_url = f"sqlite:///{workdir / 'tether.db'}"
    app.store = open_store(db_url)
    app.settings = app.settings.model_copy(update={"database_url": db_url})
    workers: list[WorkerProc] = []
    try:
        await app.open()
        handle = await app.submit(
            "research_report",
            {"topic": "tides", "workdir": str(workdir)},
            idempotency_key="demo-research-tides",
            created_by="tether demo",
        )
        task_id = handle.id
        story.say(f"submitted task [bold]{task_id}[/] (workflow research_report)")

        w1 = _start_worker("worker-1", db_url, workdir)
        workers.append(w1)
        story.workers[w1.pid] = w1.name
        story.say(f"started [bold]worker-1[/] (pid {w1.pid}, lease {LEASE_TTL:g}s)")

        extracted = 0
        n_docs = len(list((workdir / "docs").glob("*.md")))
        tenant = handle.tenant

        def show(event: Event) -> None:
            line = describe(event)
            if line is not None and event.type != "task.created":
                story.say(line)

        # Phase 1: run until the parallel extraction is done and the next step is running.
        # Worker-1 is another process on SQLite, so news comes from the (fast) poll, and
        # the journal file the steps write is checked on each round.
        rounds = follow_task(app.store, app.clock, task_id, tenant, after=0, poll=0.05, timeout=40)
        after = 0
        try:
            async with aclosing(rounds):
                async for update in rounds:
                    after = update.cursor or after
                    for event in update.events:
                        show(event)
                        if event.type == "step.succeeded" and event.step == "extract_facts":
                            extracted += 1
                    if extracted >= n_docs and _in_flight(workdir, KILL_STEP):
                        break
                    if update.ended:
                        story.say("[red]the task ended before the worker could be killed[/]")
                        return False
                    if w1.proc.poll() is not None:
                        raise CLIError(f"worker-1 exited early; see {w1.log_path}")
        except TimeoutError:
            raise CLIError(f"worker-1 made no progress in 40s; see {w1.log_path}") from None

        w1.proc.send_signal(signal.SIGKILL)
        w1.proc.wait()
        w1.log.close()
        story.killed_at = time.time()
        story.say(
            f"[bold red]💥 SIGKILL worker-1[/] while [bold]{KILL_STEP}[/] is running "
            "(no shutdown, no chance to save anything)"
        )
        steps = await app.store.get_steps(task_id)
        story.done_before_kill = {
            s.seq: s.name
            for s in steps
            if s.kind == StepKind.STEP and s.status == StepStatus.SUCCEEDED
        }
        task = await app.get(task_id)
        story.say(
            f"the database says: task {styled(task.status)}, "
            f"{len(story.done_before_kill)} steps checkpointed, lease held by a dead worker"
        )

        # Phase 2: a new worker takes over once the dead worker's lease expires.
        w2 = _start_worker("worker-2", db_url, workdir)
        workers.append(w2)
        story.workers[w2.pid] = w2.name
        story.say(
            f"started [bold]worker-2[/] (pid {w2.pid}); it takes over when worker-1's lease "
            f"expires (≤ {LEASE_TTL:g}s)"
        )
        rounds = follow_task(
            app.store, app.clock, task_id, tenant, after=after, poll=0.05, timeout=60
        )
        try:
            async with aclosing(rounds):
                async for update in rounds:
                    for event in update.events:
                        show(event)
                    task = update.task  # the last update has the ended task
                    if not update.ended and w2.proc.poll() is not None:
                        raise CLIError(f"worker-2 exited early; see {w2.log_path}")
        except TimeoutError:
            raise CLIError(f"the task did not finish in 60s; see {w2.log_path}") from None

        code = _stop_worker(w2)
        story.say(f"SIGTERM worker-2: graceful stop, exit code {code}")
        return await _prove(app.store.url_for_display, story, task_id, task.status, code)
    finally:
        for w in workers:
            if w.proc.poll() is None:
                _stop_worker(w, signal.SIGKILL)
        await app.close()


def styled(status: str) -> str:
    from tether.cli.common import styled_status

    return styled_status(str(status))


def _journal(workdir: Path) -> list[dict[str, Any]]:
    path = workdir / "executions.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _in_flight(workdir: Path, step: str) -> bool:
    entries = [e for e in _journal(workdir) if e["step"] == step]
    return any(e["event"] == "start" for e in entries) and not any(
        e["event"] == "end" for e in entries
    )


async def _prove(
    db: str, story: Story, task_id: str, status: TaskStatus, worker2_exit: int
) -> bool:
    journal = _journal(story.workdir)
    runs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for entry in journal:
        if entry["event"] == "start":
            runs[entry["seq"]].append(entry)
    ends = {(e["seq"], e["pid"], e["attempt"]) for e in journal if e["event"] == "end"}
    errors = {(e["seq"], e["pid"], e["attempt"]) for e in journal if e["event"] == "error"}

    table = Table(title="Executions per step (from the steps' own journal)", show_edge=False)
    for col in ("#", "step", "runs", "ran on", "before the kill", "what happened"):
        table.add_column(col)
    redone: list[str] = []
    keys_ok = True
    keys_seen: dict[str, int] = {}
    for seq in sorted(runs):
        entries = runs[seq]
        name = entries[0]["step"] + (f" ({entries[0]['doc']})" if entries[0].get("doc") else "")
        who = ", ".join(dict.fromkeys(story.workers.get(e["pid"], str(e["pid"])) for e in entries))
        done_before = seq in story.done_before_kill
        keys = {e["key"] for e in entries}
        if len(keys) != 1 or any(keys_seen.get(k, seq) != seq for k in keys):
            keys_ok = False
        for k in keys:
            keys_seen[k] = seq
        notes = []
        for e in entries:
            outcome = (e["seq"], e["pid"], e["attempt"])
            worker = story.workers.get(e["pid"], str(e["pid"]))
            if outcome in ends:
                notes.append(f"attempt {e['attempt']} ok")
            elif outcome in errors:
                notes.append(f"attempt {e['attempt']} transient error → retried")
            else:
                notes.append(f"interrupted ({worker} killed)")
        if done_before and len(entries) != 1:
            redone.append(name)
        table.add_row(
            str(seq),
            escape(name),
            str(len(entries)),
            escape(who),
            "[green]finished[/]" if done_before else "-",
            "; ".join(notes),
        )
    console.print()
    console.print(table)

    report = story.workdir / "report.md"
    by_worker2 = [
        seq
        for seq, es in runs.items()
        if any(story.workers.get(e["pid"]) == "worker-2" for e in es)
    ]
    checks = [
        (status == TaskStatus.SUCCEEDED, f"the task succeeded (status {status})"),
        (
            bool(story.done_before_kill) and bool(by_worker2),
            f"worker-1 finished {len(story.done_before_kill)} steps before it was killed; "
            f"worker-2 ran the remaining {len(by_worker2)}",
        ),
        (
            not redone,
            "no step that finished before the kill ran again"
            + (f" (redone: {', '.join(redone)})" if redone else ""),
        ),
        (keys_ok, "each step kept one idempotency key across runs, distinct from the others"),
        (report.exists(), f"the report was written: {report}"),
        (worker2_exit == 0, "worker-2 stopped gracefully on SIGTERM (exit 0)"),
    ]
    console.print()
    for ok, text in checks:
        console.print(f"  {'[green]✔[/]' if ok else '[red]✘[/]'} {escape(text)}")
    proved = all(ok for ok, _ in checks)
    console.print()
    if proved:
        console.print(
            Panel(
                "Killed mid-run, resumed elsewhere, and nothing that had finished was done "
                "twice.\nOnly the step that was in flight ran again: steps run at least "
                "once, and each gets a stable ctx.idempotency_key for external APIs.",
                title="[green]durability proved[/]",
                expand=False,
            )
        )
    else:
        console.print(Panel("The proof did not hold: see above.", title="[red]failed[/]"))
    console.print(
        f"[dim]Look around: tether status {task_id} --database-url {db}\n"
        f"             cat {report}  ·  worker logs in {story.workdir}[/]"
    )
    return proved


@cli.command()
@handle_errors
def demo(
    directory: Annotated[
        Path,
        typer.Option("--dir", help="Work directory (recreated; holds the database)."),
    ] = Path("tether-demo"),
) -> None:
    """Kill a worker in the middle of an agent workflow and watch the task resume."""
    workdir = directory.resolve()
    _prepare(workdir)
    console.print(
        Panel(
            "A [bold]research report[/] agent: load 4 documents → extract facts from each "
            "in parallel → rank facts → draft a summary with a flaky model → review → "
            "write the report.\nWe start a worker, [bold red]SIGKILL[/] it in the middle, "
            "start another, and check nothing that had finished runs again.",
            title="tether demo",
            expand=False,
        )
    )
    if not run(_story(workdir, Story(workdir))):
        raise typer.Exit(EXIT_ERROR)
