"""Reading `Retry-After`: delta-seconds, the three HTTP-date forms, the SDKs'
`retry-after-ms`, the cap, and what is ignored; and where `tether.errors.retry_after`
finds it (duck typing on `.response.headers`)."""

from __future__ import annotations

import httpx
import pytest
import requests

from tether import Transient
from tether.errors import retry_after
from tether.retry import RETRY_AFTER_MAX, parse_retry_after, retry_after_from_headers

NOW = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example date


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("Sun, 06 Nov 1994 08:51:37 GMT", 120.0),  # IMF-fixdate
        ("Sunday, 06-Nov-94 08:51:37 GMT", 120.0),  # obsolete RFC 850 form
        ("Sun Nov  6 08:51:37 1994", 120.0),  # obsolete asctime form
        ("Sun, 06 Nov 1994 08:00:00 GMT", 0.0),  # a past date: now
        ("-5", None),
        ("inf", None),
        ("nan", None),
        ("soon", None),
        ("", None),
    ],
)
def test_parse_retry_after(value: str, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_headers_prefer_milliseconds_and_cap_absurd_values() -> None:
    assert retry_after_from_headers(httpx.Headers({"Retry-After": "3"})) == 3.0
    both = httpx.Headers({"retry-after-ms": "2500", "retry-after": "3"})
    assert retry_after_from_headers(both) == 2.5
    bad_ms = httpx.Headers({"retry-after-ms": "soon", "retry-after": "3"})
    assert retry_after_from_headers(bad_ms) == 3.0
    assert retry_after_from_headers(httpx.Headers({"Retry-After": "1e12"})) == RETRY_AFTER_MAX
    assert retry_after_from_headers(httpx.Headers({})) is None
    assert retry_after_from_headers(None) is None


def test_retry_after_of_an_exception() -> None:
    request = httpx.Request("GET", "http://example.test/")
    response = httpx.Response(429, headers={"Retry-After": "30"}, request=request)
    error = httpx.HTTPStatusError("429", request=request, response=response)
    assert retry_after(error) == 30.0

    raw = requests.Response()
    raw.status_code = 503
    raw.headers["retry-after"] = "12"  # requests' headers are case-insensitive
    assert retry_after(requests.HTTPError(response=raw)) == 12.0
    assert retry_after(requests.HTTPError()) is None  # no response at all

    assert retry_after(Transient("later", retry_after=4)) == 4.0
    assert retry_after(Transient("later", retry_after=-1)) == 0.0
    assert retry_after(Transient("later", retry_after=10**9)) == RETRY_AFTER_MAX
    assert retry_after(Transient("later")) is None
    assert retry_after(ValueError("no response")) is None
