"""A three-stage event pipeline: research -> analyze -> report (docs/pipelines.md).

Each stage is its own workflow, started by the event the one before emits; nothing
calls the next stage directly. Every task of one run shares the research task's
correlation id, so `list_tasks(TaskFilter(correlation_id=...))` shows the pipeline.

    python examples/pipeline.py            # on an in-memory SQLite database
"""

from __future__ import annotations

import asyncio
from typing import Any

from tether import Context, Tether
from tether.models import TaskFilter, TaskStatus

app = Tether("sqlite://:memory:")


def gather(topic: str) -> list[str]:
    """Stands in for search and reading (a model call, a crawler...)."""
    return [f"{topic}: note {i}" for i in range(1, 4)]


def findings_of(notes: list[str]) -> list[str]:
    return [n.upper() for n in notes if not n.endswith("2")]


@app.workflow("research")
async def research(ctx: Context, topic: str) -> int:
    notes = await ctx.step("gather", gather, topic)
    await ctx.emit("research.complete", {"topic": topic, "notes": notes})
    return len(notes)


@app.workflow("analyze", on="research.complete")
async def analyze(ctx: Context, topic: str, notes: list[str]) -> int:
    findings = await ctx.step("analyze", findings_of, notes)
    await ctx.emit("analysis.complete", {"topic": topic, "findings": findings})
    return len(findings)


@app.workflow("report", on="analysis.complete", when=lambda event: bool(event["findings"]))
async def report(ctx: Context, topic: str, findings: list[str]) -> str:
    """Only analyses that found something are reported."""
    return await ctx.step("write", lambda: f"# {topic}\n" + "\n".join(f"- {f}" for f in findings))


async def run_pipeline(topic: str) -> dict[str, Any]:
    """Run one pipeline to its end; each stage's task by workflow."""
    async with app.worker(poll_interval=0.05):
        first = await app.submit("research", {"topic": topic})
        await first.wait(timeout=30)
        stages: dict[str, Any] = {}
        async with asyncio.timeout(30):
            while len(stages) < 3:
                tasks = await app.list_tasks(TaskFilter(correlation_id=first.id))
                stages = {t.workflow: t for t in tasks if t.status == TaskStatus.SUCCEEDED}
                await asyncio.sleep(0.05)
        return stages


async def main() -> None:
    stages = await run_pipeline("tides")
    for name in ("research", "analyze", "report"):
        print(f"{name:>8}: {stages[name].id} -> {stages[name].result!r}")
    print(stages["report"].result)
    await app.close()


if __name__ == "__main__":
    asyncio.run(main())
