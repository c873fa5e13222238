"""Event pipelines (ADR 85): `app.emit` / `ctx.emit` start each subscriber once per
event, with filters; retried, replayed and re-run emitters start nobody twice; the
three-stage example runs."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tether import Context, InputValidationError, TaskStatus, Tether, Transient
from tether.models import TaskFilter

ROOT = Path(__file__).resolve().parents[2]


def _subscribers(app: Tether, started: Counter[str]) -> None:
    @app.workflow("index", on="doc.published")
    async def index(ctx: Context, doc: str, lang: str = "en") -> str:
        started["index"] += 1
        return f"indexed {doc}"

    @app.workflow(
        "translate", on=["doc.published", "doc.updated"], when=lambda e: e["lang"] != "fr"
    )
    async def translate(ctx: Context, doc: str, lang: str) -> str:
        started["translate"] += 1
        return f"translated {doc}"


async def _ended(app: Tether, flt: TaskFilter, n: int) -> list[Any]:
    for _ in range(400):
        tasks = await app.list_tasks(flt)
        if len(tasks) >= n and all(t.status.terminal for t in tasks):
            return tasks
        await app.clock.sleep(0.025)
    raise AssertionError(f"fewer than {n} ended tasks for {flt}")


async def test_an_event_starts_each_matching_subscriber_once(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    started: Counter[str] = Counter()
    _subscribers(app, started)
    async with app.worker(poll_interval=0.05):
        handles = await app.emit(
            "doc.published", {"doc": "a", "lang": "en"}, key="evt-1", tenant="t1"
        )
        assert sorted(h.initial.workflow for h in handles) == ["index", "translate"]
        again = await app.emit(
            "doc.published", {"doc": "a", "lang": "en"}, key="evt-1", tenant="t1"
        )
        assert {h.id for h in again} == {h.id for h in handles} and not any(
            h.created for h in again
        )
        french = await app.emit("doc.published", {"doc": "b", "lang": "fr"}, tenant="t1")
        assert [h.initial.workflow for h in french] == ["index"], "when= filters"
        assert await app.emit("nobody.listens", {"x": 1}) == []
        for h in [*handles, *french]:
            assert (await h.wait(timeout=10)).status == TaskStatus.SUCCEEDED
    assert started == Counter({"index": 2, "translate": 1})
    task = await app.get(handles[0].id)
    assert task.tenant == "t1" and task.created_by == "event:doc.published"
    assert task.idempotency_key == f"event:evt-1:{task.workflow}"


async def test_an_input_that_fits_no_subscriber_stores_nothing(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    _subscribers(app, Counter())
    await app.open()
    with pytest.raises(InputValidationError):
        await app.emit("doc.published", {"doc": "a", "lang": None}, key="k")  # lang: a str
    assert await app.list_tasks(TaskFilter()) == []
    with pytest.raises(ValueError, match="give on= too"):
        app.workflow("x", when=lambda e: True)


async def test_a_retried_and_rerun_emitter_starts_each_subscriber_once(
    make_app: Callable[[], Tether],
) -> None:
    app = make_app()
    started: Counter[str] = Counter()
    _subscribers(app, started)
    tries = Counter[str]()

    def flaky() -> str:
        tries["flaky"] += 1
        if tries["flaky"] < 3:
            raise Transient("not yet")
        return "ok"

    @app.workflow("publisher")
    async def publisher(ctx: Context, doc: str) -> list[str]:
        ids = await ctx.emit("doc.published", {"doc": doc, "lang": "en"})
        await ctx.step("after", flaky)  # retried after the emit: the emit is not run again
        return ids

    async with app.worker(poll_interval=0.05):
        first = await app.submit("publisher", {"doc": "d"}, correlation_id="pipe-1")
        ids = await first.result(timeout=20)
        again = await app.rerun(first.id, from_seq=1)  # the emit runs again, with its key
        assert await again.result(timeout=20) == ids
        subs = await _ended(app, TaskFilter(correlation_id="pipe-1"), 4)
    assert tries["flaky"] == 4, "3 attempts, then 1 in the re-run"
    assert sorted(t.workflow for t in subs) == ["index", "publisher", "publisher", "translate"]
    assert started == Counter({"index": 1, "translate": 1}), "one start per subscriber"
    steps = await app.steps(first.id)
    assert (steps[0].name, steps[0].meta) == ("emit:doc.published", {"emit": "doc.published"})


async def test_the_three_stage_example_pipeline() -> None:
    spec = importlib.util.spec_from_file_location(
        "pipeline_example", ROOT / "examples" / "pipeline.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pipeline_example"] = module
    spec.loader.exec_module(module)
    try:
        stages = await module.run_pipeline("tides")
    finally:
        await module.app.close()
        del sys.modules["pipeline_example"]
    assert stages["research"].result == 3 and stages["analyze"].result == 2
    assert stages["report"].result.startswith("# tides\n- TIDES: NOTE 1")
    assert {t.correlation_id for t in stages.values()} == {stages["research"].id}
