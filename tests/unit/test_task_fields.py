"""The task's fields are declared once, by `tether.models.Task`; the store's columns, the
API's view and the client's parser derive from it and cannot drift apart."""

from __future__ import annotations

from tether.api.schemas import TaskOut
from tether.client import task_from_json
from tether.models import TASK_FIELDS, Budget, Task, TaskError, TaskStatus, WaitReason
from tether.store.sql import TASK_COLUMNS


def _full_task() -> Task:
    """A task with every field set to something other than its default."""
    return Task(
        id="t1",
        tenant="acme",
        workflow="wf",
        workflow_version=3,
        queue="q",
        priority=7,
        status=TaskStatus.WAITING,
        input={"a": 1},
        created_at=1.0,
        updated_at=2.0,
        wait_reason=WaitReason.SIGNAL,
        result={"r": True},
        error=TaskError("ValueError", "bad", "fp", step="s", permanent=False),
        idempotency_key="k",
        correlation_id="c",
        created_by="alice",
        attempt=2,
        run_at=3.0,
        started_at=4.0,
        finished_at=5.0,
        deadline=6.0,
        forked_from="t0",
        fork_from_seq=4,
        fork_root="t-root",
        steps_done=9,
        current_step="step-9",
        cancel_requested=True,
        spend_budget=Budget(usd=0.5, tokens=9000, on_exhausted="fail"),
    )


def test_the_store_reads_every_field() -> None:
    assert [c.strip() for c in TASK_COLUMNS.split(",")] == list(TASK_FIELDS)


def test_the_api_view_has_every_field_and_round_trips() -> None:
    task = _full_task()
    shown = TaskOut.of(task)
    # `callback` is the submit response's only (a task submitted with `callback_url`);
    # `spend` is `GET /v1/tasks/{id}`'s only (read from the spend ledger, not the task).
    assert set(TaskOut.model_fields) - {"callback", "spend"} == set(task.to_json())
    assert task_from_json(shown.model_dump(mode="json")) == task


def test_from_json_fills_defaults() -> None:
    data = {
        "id": "t",
        "tenant": "x",
        "workflow": "w",
        "workflow_version": 1,
        "queue": "default",
        "priority": 0,
        "status": "queued",
        "created_at": 0.0,
        "updated_at": 0.0,
    }
    task = Task.from_json(data)
    assert task.steps_done == 0 and task.error is None and task.input is None
