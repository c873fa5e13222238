"""A running worker raises the cyclic GC's first threshold (ADR 49) and puts it back."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether import Tether
from tether.config import load_settings


@pytest.fixture(autouse=True)
def _default_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


async def test_workers_raise_the_gc_threshold_while_they_run(tmp_path: Path) -> None:
    app = Tether(f"sqlite:///{tmp_path}/t.db")
    try:
        async with app.worker():
            assert gc.get_threshold() == (10_000, 10, 10)
            async with app.worker():
                assert gc.get_threshold() == (10_000, 10, 10)
            # The other worker still runs.
            assert gc.get_threshold() == (10_000, 10, 10)
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        await app.close()


async def test_a_higher_threshold_or_zero_leaves_the_gc_alone(tmp_path: Path) -> None:
    app = Tether(settings=load_settings({"database_url": f"sqlite:///{tmp_path}/t.db"}))
    try:
        gc.set_threshold(50_000, 10, 10)  # the application's own choice
        async with app.worker():
            assert gc.get_threshold() == (50_000, 10, 10)
        assert gc.get_threshold() == (50_000, 10, 10)
        gc.set_threshold(700, 10, 10)
        off = Tether(
            settings=load_settings(
                {"database_url": f"sqlite:///{tmp_path}/t.db", "gc_threshold": 0}
            )
        )
        try:
            async with off.worker():
                assert gc.get_threshold() == (700, 10, 10)
        finally:
            await off.close()
    finally:
        await app.close()


async def test_the_older_generations_thresholds_are_never_undone(tmp_path: Path) -> None:
    app = Tether(f"sqlite:///{tmp_path}/t.db")
    try:
        async with app.worker():
            gc.set_threshold(10_000, 20, 30)  # the application tunes the older ones
        assert gc.get_threshold() == (700, 20, 30)
    finally:
        await app.close()
