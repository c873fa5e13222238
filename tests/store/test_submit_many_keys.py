"""`submit_many` with an idempotency key: task i gets the derived key `K/i` (the rule of
the HTTP batch route, `tether.submission.batch_item_key`), all or nothing, and a replay
of the same batch returns the same tasks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tether import Context, IdempotencyConflict, Tether
from tether.submission import batch_item_key


def _app(make_app: Callable[[], Tether]) -> Tether:
    app = make_app()

    @app.workflow("pay")
    async def pay(ctx: Context, amount: int) -> int:
        return amount

    return app


async def test_each_task_gets_a_derived_key_and_a_replay_is_the_same_batch(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    inputs = [{"amount": n} for n in (5, 6, 7)]
    first = await app.submit_many("pay", inputs, idempotency_key="order-9")
    assert [h.created for h in first] == [True, True, True]
    assert len({h.id for h in first}) == 3
    keys = [(await app.get(h.id)).idempotency_key for h in first]
    assert keys == ["order-9/0", "order-9/1", "order-9/2"]

    again = await app.submit_many("pay", inputs, idempotency_key="order-9")
    assert [h.id for h in again] == [h.id for h in first]
    assert not any(h.created for h in again)
    # One task of the batch, alone under its derived key, is that task again.
    single = await app.submit("pay", {"amount": 6}, idempotency_key=batch_item_key("order-9", 1))
    assert single.id == first[1].id and not single.created
    assert len(await app.list_tasks()) == 3


async def test_a_changed_batch_under_the_same_key_stores_nothing(
    make_app: Callable[[], Tether],
) -> None:
    app = _app(make_app)
    await app.submit_many("pay", [{"amount": 1}], idempotency_key="k")
    # Task 0 changed its input (a conflict) and task 1 is new: the whole batch is refused.
    with pytest.raises(IdempotencyConflict):
        await app.submit_many("pay", [{"amount": 2}, {"amount": 3}], idempotency_key="k")
    assert len(await app.list_tasks()) == 1
    # "k/1" was not remembered by the refused batch: it is free for any input.
    fresh = await app.submit("pay", {"amount": 99}, idempotency_key="k/1")
    assert fresh.created


def test_the_derived_key_is_the_http_batch_rule() -> None:
    assert batch_item_key("K", 0) == "K/0"
    assert batch_item_key("K", 12) == "K/12"
    assert batch_item_key(None, 3) is None
