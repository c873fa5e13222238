"""The event catalogue: its rendering in docs/events.md, and the check that holds every
test's events to it (tests/events_check.py) catching what it must."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from events_check import catalogue_problems
from tether.models.events import EVENT_CATALOGUE, OPTIONAL_COLUMNS, EventType
from tether.store.sql.events import EVENT_COLUMNS

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"
BEGIN, END = "<!-- catalogue:begin -->", "<!-- catalogue:end -->"


def render() -> str:
    """The catalogue as the Markdown table docs/events.md carries."""
    lines = [
        BEGIN,
        "| type | written when | columns it fills | `decision` | `data` fields |",
        "|---|---|---|---|---|",
    ]
    for kind in EVENT_CATALOGUE.values():
        data = ", ".join(f"`{f}`" for f in kind.data) or "none"
        if kind.open_data:
            data += ", and the step's `meta`"
        columns = ", ".join(f"`{c}`" for c in kind.columns)
        lines.append(f"| `{kind.type}` | {kind.when} | {columns} | {kind.decision} | {data} |")
    return "\n".join([*lines, END])


def test_docs_show_the_catalogue_as_declared() -> None:
    text = DOC.read_text()
    current = text[text.index(BEGIN) : text.index(END) + len(END)]
    if os.environ.get("UPDATE_DOCS") == "1":
        DOC.write_text(text.replace(current, render()))
        return
    assert current == render(), (
        "docs/events.md is out of date with tether.models.events: "
        "rewrite it with UPDATE_DOCS=1 pytest tests/unit/test_event_catalogue.py"
    )


def test_every_type_is_catalogued_with_known_columns() -> None:
    assert set(EVENT_CATALOGUE) == set(EventType)
    stored = {c.strip() for c in EVENT_COLUMNS.split(",")}
    for kind in EVENT_CATALOGUE.values():
        assert set(kind.columns) <= set(OPTIONAL_COLUMNS) <= stored, kind.type
        assert kind.when and kind.decision, kind.type


def test_the_check_catches_what_the_catalogue_does_not_say(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    conn = sqlite3.connect(db)
    conn.execute(f"CREATE TABLE events (id INTEGER PRIMARY KEY, {EVENT_COLUMNS})")
    rows = [
        ("t", "a", 1.0, "task.created", None, "queued", 0, None, None, None, "submitted", None),
        ("t", "a", 1.0, "task.exploded", None, None, None, None, None, None, None, None),
        ("t", "a", 1.0, "task.forked", None, None, 1, None, "oops", None, "rerun", None),
        (
            "t",
            "a",
            1.0,
            "signal.received",
            "queued",
            "queued",
            1,
            None,
            None,
            None,
            None,
            '{"x": 1}',
        ),
        (
            "t",
            "a",
            1.0,
            "step.succeeded",
            None,
            None,
            1,
            "w",
            "s",
            None,
            None,
            '{"seq": 1, "tokens": 3}',
        ),
    ]
    conn.executemany(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({', '.join('?' * 12)})", rows)
    conn.commit()
    conn.close()
    assert catalogue_problems(f"sqlite:///{db}") == [
        "event 2 (task.exploded): type not in the catalogue",
        "event 3 (task.forked): fills step, which its kind does not",
        "event 4 (signal.received): payload fields ['x'] not in the catalogue",
    ]
