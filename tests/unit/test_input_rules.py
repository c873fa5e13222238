"""The rules of what Tether stores (`tether.storable`), the request checks built on them
(`tether.api.inputs`) and the OpenAPI document that states them (`tether.api.contract`)."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tether import NotStorable, serde, storable
from tether.api import inputs
from tether.auth import AuthError, TokenVerifier
from tether.storable import INT_MAX, INT_MIN, MAX_DEPTH

SECRET = "unit-secret-0123456789abcdef0123456789"


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


class Item(BaseModel):
    name: str


@pytest.mark.parametrize(
    ("value", "loc", "kind"),
    [
        ("a\x00b", (), "string_nul"),
        ({"k": ["ok", "a\x00"]}, ("k", 1), "string_nul"),
        ({"a\x00": 1}, ("a\\u0000",), "string_nul"),  # a key: quoted printable in `loc`
        ("\ud800", (), "string_surrogate"),
        ({"x": {"\udfff": 1}}, ("x", "\\udfff"), "string_surrogate"),
        (math.nan, (), "number_not_finite"),
        ([1.0, math.inf], (1,), "number_not_finite"),
        ({"n": -math.inf}, ("n",), "number_not_finite"),
        (INT_MAX + 1, (), "int_range"),
        ({"n": [INT_MIN - 1]}, ("n", 0), "int_range"),
        (nested(MAX_DEPTH + 1), (0,) * MAX_DEPTH, "too_deep"),
        ({"item": Item(name="a\x00")}, ("item", "name"), "string_nul"),
        (("t", "\x00"), (1,), "string_nul"),
    ],
)
def test_each_rule_names_the_place(value: Any, loc: tuple[Any, ...], kind: str) -> None:
    found = storable.find(value)
    assert found is not None and (found.loc, found.kind) == (loc, kind)
    with pytest.raises(NotStorable) as caught:
        storable.check(value, "payload")
    assert (caught.value.field, caught.value.loc, caught.value.kind) == ("payload", loc, kind)
    assert str(caught.value).startswith("payload")
    with pytest.raises(NotStorable):
        storable.encode(value, "payload")


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        INT_MIN,
        INT_MAX,
        1e308,
        -0.0,
        "é ☃ 😀 \x01 \\u0000",  # a pair of surrogates is one character; a backslash is text
        {"": [None, {"a": "b"}]},
        nested(MAX_DEPTH),
        Item(name="tides"),
    ],
)
def test_storable_values_pass_and_encode_as_before(value: Any) -> None:
    assert storable.find(value) is None
    assert storable.encode(value, "input") == serde.dumps(value)


def test_text_fields_and_column_ranges() -> None:
    storable.check_text(None, "reason")
    storable.check_text("fine", "reason")
    with pytest.raises(NotStorable, match="reason: contains a NUL"):
        storable.check_text("a\x00", "reason")
    storable.check_int(2**31 - 1, "priority", storable.INT32_MIN, storable.INT32_MAX)
    with pytest.raises(NotStorable, match="priority"):
        storable.check_int(2**31, "priority", storable.INT32_MIN, storable.INT32_MAX)
    assert storable.printable("a\x00\ud800b") == "a\\u0000\\ud800b"


# The body scan -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        (b'{"input": {"label": "a\\u0000"}}', ["body", "input", "label"], "string_nul"),
        (b'{"in\\u0000": 1}', ["body", "in\\u0000"], "string_nul"),
        (b'{"s": "\\uD800"}', ["body", "s"], "string_surrogate"),
        (b'{"s": "\xed\xa0\x80"}', ["body", "s"], "string_surrogate"),  # encoded, not escaped
        (b'{"x": NaN}', ["body", "x"], "number_not_finite"),
        (b"[1, Infinity]", ["body", 1], "number_not_finite"),
        (b'{"x": -Infinity}', ["body", "x"], "number_not_finite"),
        (b'{"x": 1e400}', ["body", "x"], "number_not_finite"),  # overflows to infinity
        (b'{"x": 18446744073709551616}', ["body", "x"], "int_range"),
        (b'{"x": -9223372036854775809}', ["body", "x"], "int_range"),
        ('{"s": "\\u0000"}'.encode("utf-16"), ["body", "s"], "string_nul"),  # UTF-16 JSON
    ],
)
def test_body_errors_name_the_field(body: bytes, loc: list[Any], kind: str) -> None:
    (error,) = inputs.body_errors(body)
    assert (error["loc"], error["type"]) == (loc, kind)


@pytest.mark.parametrize(
    "body",
    [
        b'{"workflow": "noop", "input": {"n": 1, "topic": "tides"}}',
        b'{"s": "\\\\u0000", "t": "NaN", "u": "\\ud83d\\ude00"}',  # text, not values
        b'{"x": 18446744073709551615, "y": -9223372036854775808, "z": 1e308}',
        b"not json at all \\u0000",  # malformed: the route answers 400
        b"[" * 5000 + b"]" * 5000,  # too deep to parse: likewise
    ],
)
def test_bodies_without_a_broken_rule_pass(body: bytes) -> None:
    assert inputs.body_errors(body) == []


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(exclude_categories=[])),  # lone surrogates too
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(exclude_categories=[])), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(value=JSON, ascii_only=st.booleans())
def test_the_cheap_scan_never_misses_a_broken_rule(value: Any, ascii_only: bool) -> None:
    # Any JSON text (as clients write it, escaped or not) whose parsed value breaks a
    # rule is refused, and one whose value does not is let through.
    try:
        body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    except ValueError:
        return
    expected = storable.find(json.loads(body))
    errors = inputs.body_errors(body)
    assert bool(errors) == (expected is not None), body
    if expected is not None:
        assert errors[0]["loc"] == ["body", *expected.loc]


# Path, query and headers ---------------------------------------------------------------


def scope(path: str = "/v1/tasks", query: bytes = b"", headers: Any = ()) -> dict[str, Any]:
    return {"type": "http", "path": path, "query_string": query, "headers": list(headers)}


def test_request_errors_name_the_parameter() -> None:
    assert inputs.request_errors(scope(query=b"workflow=a&limit=5", headers=[(b"a", b"b")])) == []
    (error,) = inputs.request_errors(scope("/v1/tasks/a\x00"))
    assert error["loc"] == ["path"]  # no app to name the parameter (the server test does)
    (error,) = inputs.request_errors(scope(query=b"limit=5&correlation_id=a%00b"))
    assert (error["loc"], error["type"]) == (["query", "correlation_id"], "string_nul")
    (error,) = inputs.request_errors(scope(query=b"x%00y=1"))
    assert error["loc"] == ["query", "x\\u0000y"]
    (error,) = inputs.request_errors(scope(headers=[(b"x-tag", b"a\x00")]))
    assert error["loc"] == ["header", "x-tag"]


# Tokens --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"sub": "a\x00", "tenant": "t"}, "sub claim contains a NUL"),
        ({"sub": "a", "tenant": "t\x00"}, "tenant claim contains a NUL"),
        ({"sub": "a\ud800", "tenant": "t"}, "sub claim contains a lone surrogate"),
    ],
)
async def test_a_token_whose_claims_cannot_be_stored_is_refused(
    claims: dict[str, str], message: str
) -> None:
    token = jwt.encode(
        {**claims, "roles": ["admin"], "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"
    )
    verifier = TokenVerifier(SECRET)
    for _ in range(2):  # refused again: a refusal is not remembered as a verified token
        with pytest.raises(AuthError, match=message):
            await verifier.verify(token)
