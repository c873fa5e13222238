"""The kinds of API error (`tether.api.problem_types`): their list in docs/api.md, and
the problem bodies built from them."""

from __future__ import annotations

import os
from pathlib import Path

from tether.api import problem_types
from tether.api.problem_types import PROBLEM_BASE, PROBLEM_TYPES
from tether.api.problems import ProblemError, problem_body

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
BEGIN, END = "<!-- problem-types:begin -->", "<!-- problem-types:end -->"


def render() -> str:
    """The table of problem types docs/api.md carries."""
    lines = [BEGIN, "| type | status | meaning |", "|---|---|---|"]
    lines += [f"| `{k.slug}` | {k.status} | {k.meaning} |" for k in PROBLEM_TYPES]
    return "\n".join([*lines, END])


def test_docs_list_every_problem_type() -> None:
    text = DOC.read_text()
    current = text[text.index(BEGIN) : text.index(END) + len(END)]
    if os.environ.get("UPDATE_DOCS") == "1":
        DOC.write_text(text.replace(current, render()))
        return
    assert current == render(), (
        "docs/api.md is out of date with tether.api.problem_types: "
        "rewrite it with UPDATE_DOCS=1 pytest tests/unit/test_problem_types.py"
    )


def test_every_kind_has_its_own_uri_and_every_status_a_default() -> None:
    uris = [k.uri for k in PROBLEM_TYPES]
    assert len(set(uris)) == len(uris), "a name names one kind"
    assert all(u.startswith(PROBLEM_BASE) and u[len(PROBLEM_BASE) :].islower() for u in uris)
    for status, kind in problem_types.BY_STATUS.items():
        assert kind.status == status and kind in PROBLEM_TYPES


def test_bodies_carry_the_kind_or_about_blank() -> None:
    body = problem_body(problem_types.INVALID_CURSOR, "bad", "/v1/tasks")
    assert body == {
        "type": "https://tether.dev/problems/invalid-cursor",
        "title": "Invalid cursor",
        "status": 422,
        "detail": "bad",
        "instance": "/v1/tasks",
    }
    # A bare status takes its status's kind; one without a kind is about:blank.
    assert problem_body(404)["type"] == problem_types.NOT_FOUND.uri
    assert problem_body(418) == {"type": "about:blank", "title": "I'm a Teapot", "status": 418}
    err = ProblemError(409, "ended")
    assert (err.status, problem_body(err.kind)["type"]) == (
        409,
        problem_types.INVALID_TRANSITION.uri,
    )
