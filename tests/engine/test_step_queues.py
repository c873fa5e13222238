"""Steps that name their queue (ADR 93), on both backends: two apps on one database,
a worker of the `default` queue and one of the `gpu` queue; the step that names `gpu`
runs on the gpu worker, the steps around it on the default one, and the task ends
back on its own queue, with a `task.released` (`routed`) event per hand-off."""

from __future__ import annotations

from helpers import event_where, events_through
from tether import Context, TaskStatus, Tether


def build(url: str, label: str, ran: list[tuple[str, str]]) -> Tether:
    app = Tether(url)

    @app.step(queue="gpu")
    async def infer(prompt: str) -> str:
        ran.append((label, "infer"))
        return prompt.upper()

    @app.workflow("render")
    async def render(ctx: Context, prompt: str) -> str:
        ready = await ctx.step("prepare", lambda: ran.append((label, "prepare")) or prompt)
        text = await infer(ready)
        await ctx.step("publish", lambda: ran.append((label, "publish")))
        return text

    return app


async def test_a_step_runs_on_its_queue_and_the_task_comes_back(store_url: str) -> None:
    ran: list[tuple[str, str]] = []
    cpu, gpu = build(store_url, "cpu", ran), build(store_url, "gpu", ran)
    try:
        await cpu.open()
        await gpu.open()
        async with cpu.worker(queues=["default"]), gpu.worker(queues=["gpu"]):
            handle = await cpu.submit("render", {"prompt": "cat"})
            assert await handle.result(timeout=20) == "CAT"
            task = await cpu.get(handle.id)
            events = await events_through(cpu, handle.id, "task.succeeded")
    finally:
        await cpu.close()
        await gpu.close()
    assert ran == [("cpu", "prepare"), ("gpu", "infer"), ("cpu", "publish")]
    assert task.status == TaskStatus.SUCCEEDED
    assert (task.queue, task.home_queue) == ("default", "default")
    routed = [e for e in events if e.type == "task.released"]
    assert [(e.decision, e.data) for e in routed] == [
        ("routed", {"queue": "gpu"}),
        ("routed", {"queue": "default"}),
    ]


async def test_a_worker_of_both_queues_runs_it_all_without_hand_offs(store_url: str) -> None:
    ran: list[tuple[str, str]] = []
    app = build(store_url, "both", ran)
    try:
        async with app.worker(queues=["default", "gpu"]):
            handle = await app.submit("render", {"prompt": "dog"})
            assert await handle.result(timeout=20) == "DOG"
            events = await events_through(app, handle.id, "task.succeeded")
        assert (await app.get(handle.id)).home_queue is None
    finally:
        await app.close()
    assert [s for _, s in ran] == ["prepare", "infer", "publish"]
    assert not [e for e in events if e.type == "task.released"]


async def test_ctx_step_names_a_queue_too(store_url: str) -> None:
    ran: list[str] = []
    app = Tether(store_url)

    @app.workflow("adhoc")
    async def adhoc(ctx: Context) -> str:
        return await ctx.step("on_gpu", lambda: ran.append("gpu") or "done", queue="gpu")

    try:
        async with app.worker(queues=["default"]):
            handle = await app.submit("adhoc")
            routed = await event_where(app, handle.id, lambda e: e.decision == "routed")
            assert routed.data == {"queue": "gpu"}
            assert (await app.get(handle.id)).queue == "gpu"
            assert ran == []  # no gpu worker yet: it waits, queued on gpu
            async with app.worker(queues=["gpu"]):
                assert await handle.result(timeout=20) == "done"
    finally:
        await app.close()
