"""The demo workflow: a small "research report" agent over local documents.

    load documents → extract facts from each (in parallel) → rank facts →
    draft a summary with a flaky "model" → review it → write the report file

There is no network and no real model: the "model" is a few lines of deterministic text
processing with realistic latency, and the first call of `draft_summary` fails with a
transient "overloaded" error so that the retry shows. Every step appends what it does to
an execution journal (`executions.jsonl` in the work directory, fsynced), which is how
`tether demo` proves that finished steps never run again after a worker is killed.

Run it yourself against any database: `tether worker --app tether.demo:app`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from tether import Context, RetryPolicy, Tether, Transient, current_step

app = Tether()
"""The demo's app. `tether demo` points it at its own SQLite file."""

JOURNAL = "executions.jsonl"
REPORT = "report.md"

STEP_LATENCY = {
    "load_documents": 0.3,
    "extract_facts": 0.5,
    "rank_facts": 2.0,  # long enough for the demo to kill the worker in the middle of it
    "draft_summary": 0.6,
    "review_summary": 0.4,
    "write_report": 0.2,
}
"""Seconds each step pretends to think (tests may scale this with TETHER_DEMO_SPEED)."""

DOCUMENTS = {
    "tides.md": (
        "# Tides\n"
        "Tides are caused mainly by the Moon's gravity, with the Sun adding about 46 percent "
        "of the effect. Most coasts see two high tides a day, about 12 hours 25 minutes "
        "apart. Spring tides happen near new and full moon."
    ),
    "tidal-power.md": (
        "# Tidal power\n"
        "The Sihwa Lake station in South Korea produces 254 MW, the largest tidal plant. "
        "La Rance in France has run since 1966. Tidal power is predictable years ahead, "
        "unlike wind."
    ),
    "ecology.md": (
        "# Intertidal ecology\n"
        "The intertidal zone is exposed at low tide and submerged at high tide. Species such "
        "as barnacles survive hours of air exposure. About 10 percent of coastal species "
        "live only there."
    ),
    "records.md": (
        "# Records\n"
        "The Bay of Fundy in Canada has the highest tides on Earth, up to 16 metres. "
        "Some seas, like the Mediterranean, have tides of only a few centimetres."
    ),
}


def _speed() -> float:
    return float(os.environ.get("TETHER_DEMO_SPEED", "1"))


async def _think(step: str) -> None:
    await asyncio.sleep(STEP_LATENCY[step] * _speed())


def journal(workdir: str, event: str, **fields: Any) -> None:
    """Append one fsynced line to the execution journal (survives SIGKILL)."""
    info = current_step()
    record = {
        "event": event,
        "at": time.time(),
        "pid": os.getpid(),
        "step": info.name if info else None,
        "seq": info.seq if info else None,
        "attempt": info.attempt if info else None,
        "key": info.idempotency_key if info else None,
        **fields,
    }
    fd = os.open(Path(workdir) / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare_workdir(workdir: Path) -> None:
    """Write the sample documents the workflow reads."""
    docs = workdir / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for name, text in DOCUMENTS.items():
        (docs / name).write_text(text + "\n")


# steps -----------------------------------------------------------------------------------


@app.step
async def load_documents(workdir: str) -> list[str]:
    """List the documents to research."""
    journal(workdir, "start")
    await _think("load_documents")
    names = sorted(p.name for p in (Path(workdir) / "docs").glob("*.md"))
    journal(workdir, "end")
    return names


@app.step(retry=RetryPolicy(max_attempts=3, initial_interval=0.2))
async def extract_facts(workdir: str, name: str) -> dict[str, Any]:
    """Read one document and keep the sentences that carry a number or a name."""
    journal(workdir, "start", doc=name)
    await _think("extract_facts")
    text = (Path(workdir) / "docs" / name).read_text()
    body = " ".join(line for line in text.splitlines() if not line.startswith("#"))
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", body) if s.strip()]
    facts = [s for s in sentences if re.search(r"\d|[A-Z][a-z]+ [A-Z]", s)]
    journal(workdir, "end", doc=name)
    return {"doc": name, "facts": facts}


@app.step()
async def rank_facts(workdir: str, extracts: list[dict[str, Any]]) -> list[str]:
    """Order facts by how informative they look (numbers first, then length)."""
    journal(workdir, "start")
    await _think("rank_facts")
    facts = [f for e in extracts for f in e["facts"]]
    ranked = sorted(facts, key=lambda f: (-len(re.findall(r"\d+", f)), -len(f)))
    journal(workdir, "end")
    return ranked


@app.step(retry=RetryPolicy(max_attempts=4, initial_interval=0.5, jitter=0.1))
async def draft_summary(workdir: str, topic: str, facts: list[str]) -> str:
    """The "model call": fails once with a transient overload, like real APIs do."""
    journal(workdir, "start")
    await _think("draft_summary")
    info = current_step()
    if info is not None and info.attempt == 1:
        journal(workdir, "error", error="Transient: model overloaded (HTTP 529)")
        raise Transient("model API overloaded (HTTP 529), please retry")
    top = facts[:5]
    summary = f"{topic.capitalize()}: " + " ".join(top)
    journal(workdir, "end")
    return summary


@app.step()
async def review_summary(workdir: str, summary: str, facts: list[str]) -> dict[str, Any]:
    """Check the draft only states facts found in the sources."""
    journal(workdir, "start")
    await _think("review_summary")
    cited = sum(1 for f in facts if f in summary)
    journal(workdir, "end")
    return {"ok": cited > 0, "facts_cited": cited, "facts_available": len(facts)}


@app.step()
async def write_report(
    workdir: str, topic: str, summary: str, facts: list[str], review: dict[str, Any]
) -> dict[str, Any]:
    """Write the report; the step's idempotency key names the draft file, so a re-run
    would overwrite the same file rather than add a second one."""
    journal(workdir, "start")
    await _think("write_report")
    info = current_step()
    key = info.idempotency_key if info else "local"
    lines = [f"# Research report: {topic}", "", summary, "", "## Facts", ""]
    lines += [f"- {f}" for f in facts]
    lines += ["", f"_Reviewed: {review['facts_cited']} facts cited. Idempotency key: {key}_"]
    out = Path(workdir) / REPORT
    tmp = out.with_suffix(f".{key.replace(':', '-')}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out)
    journal(workdir, "end")
    return {"path": str(out), "bytes": out.stat().st_size}


# the workflow ----------------------------------------------------------------------------


@app.workflow("research_report", version=1)
async def research_report(ctx: Context, topic: str, workdir: str) -> dict[str, Any]:
    """Research `topic` from the documents in `workdir/docs` and write `workdir/report.md`."""
    names = await load_documents(workdir)
    extracts = await asyncio.gather(*(extract_facts(workdir, n) for n in names))
    facts = await rank_facts(workdir, list(extracts))
    summary = await draft_summary(workdir, topic, facts)
    review = await review_summary(workdir, summary, facts)
    report = await write_report(workdir, topic, summary, facts, review)
    return {"report": report["path"], "facts": len(facts), "review": review}
