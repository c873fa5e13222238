"""schemathesis hooks (schemathesis.toml loads them): the facts about a live server that
its OpenAPI document cannot state, given to the cases before they are sent.

A schema-valid request may still be refused for what only the server knows: which
workflows are registered, which cursors it handed out, which URLs its egress guard
lets through. Left alone, nearly every generated submit would answer 422 unknown
workflow and never reach the database. So, before each call:

- a submitted task names the test app's `anything` workflow (its input is any JSON:
  the generated input itself is stored);
- a callback or subscription URL is `TETHER_ST_URL`, an address the server's
  `egress_allow` permits (nothing is delivered: the server runs no dispatcher);
- a list's `cursor` is dropped (only the server's own cursors are valid);
- an `Idempotency-Key` is made from the request it comes with (path and body), so a
  key is never sent with two different requests (the server rightly refuses that: 422);
  a schedule's trigger gets a fresh one (its request is the schedule's input, which a
  stateful run may redefine under the same name);
- a generated RFC 3339 time lies in 1970 to 2999, the years the server takes.

schemathesis checks again afterwards whether each case is still valid or invalid, and
holds it to the matching check (`positive_data_acceptance` or
`negative_data_rejection`), so an edit never hides a refusal the schema predicts.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import schemathesis
from hypothesis import strategies as st

URL = os.environ.get("TETHER_ST_URL", "http://127.0.0.1:9/tether-st")
WORKFLOW = "anything"


schemathesis.openapi.format(
    "date-time",
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2999, 12, 30)).map(
        lambda when: when.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    ),
)


def _task(body: Any) -> None:
    if not isinstance(body, dict):
        return
    if isinstance(body.get("workflow"), str):
        body["workflow"] = WORKFLOW
    if isinstance(body.get("callback_url"), str):
        body["callback_url"] = URL


def _schedule(body: Any) -> None:
    """A schedule names a registered workflow, a cron expression and an IANA time zone:
    rules croniter and the tz database hold, not the schema."""
    _task(body)
    if isinstance(body, dict):
        if isinstance(body.get("cron"), str):
            body["cron"] = "0 7 * * *"
        if isinstance(body.get("timezone"), str):
            body["timezone"] = "UTC"


def _subscription(body: Any) -> None:
    if not isinstance(body, dict):
        return
    if isinstance(body.get("url"), str):
        body["url"] = URL


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    operation = f"{case.operation.method.upper()} {case.operation.path}"
    if operation == "POST /v1/tasks":
        _task(case.body)
    elif operation == "POST /v1/schedules":
        _schedule(case.body)
    elif operation == "POST /v1/tasks:batch" and isinstance(case.body, dict):
        tasks = case.body.get("tasks")
        for task in tasks if isinstance(tasks, list) else ():
            _task(task)
    elif operation in ("POST /v1/webhooks", "PATCH /v1/webhooks/{subscription_id}"):
        _subscription(case.body)
    if isinstance(case.query, dict):
        case.query.pop("cursor", None)
    if case.headers:
        for name in list(case.headers):
            if name.lower() == "idempotency-key" and isinstance(case.headers[name], str):
                if operation == "POST /v1/schedules/{name}/trigger":
                    # Its request is the schedule's current input, which a stateful run
                    # may redefine under the same name: a fresh key each time.
                    case.headers[name] = f"st-{uuid.uuid4()}"
                    continue
                # The key names the request: its path too (a dead-letter action's group
                # is in its path).
                request = [case.operation.method, case.operation.path, case.path_parameters]
                body = json.dumps([*request, case.body], sort_keys=True, default=repr)
                case.headers[name] = "st-" + hashlib.sha256(body.encode()).hexdigest()
