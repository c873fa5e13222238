"""What "the same submission" means: one definition for every channel.

An idempotency key stands for one submission (ADR 16, ADR 21, ADR 60). Python
(`Tether.submit`), the CLI and the HTTP API all build their rows with
`Tether.new_task`, which hashes the submission here, so a key sent once through one
channel and again through another is a replay when the submission is the same and a
conflict when it is not. A batch under one key gives its task i the key `K/i`
(`batch_item_key`), in Python (`Tether.submit_many`) as over HTTP (`POST /v1/tasks:batch`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

HASH_PREFIX = "s1:"
"""Marks hashes of this canonical form, so a later change of the form is recognisable."""


def batch_item_key(key: str | None, index: int) -> str | None:
    """The idempotency key of task `index` (0-based) of a batch submitted under `key`:
    `K/i`. A replay of the same batch finds every task again; one task of it sent alone
    under its derived key is that task too."""
    return None if key is None else f"{key}/{index}"


def canonical_submission(
    workflow: str,
    encoded_input: str,
    *,
    queue: str,
    priority: int,
    correlation_id: str | None,
    deadline: float | None,
    run_at: float | None,
    callback_url: str | None = None,
    spend_budget: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The fields an idempotency key covers, as plain JSON values.

    `encoded_input` is the stored JSON text (so a model, a dict and the same JSON over
    HTTP compare equal); `queue` is the resolved queue (an omitted queue and the
    workflow's own are the same); `deadline` and `run_at` are epoch seconds as given,
    not the workflow's default deadline (that depends on the time of submission).
    Tenant and creator are not part of it: the key is already scoped to the tenant, and
    who sent a retry does not change what runs. A `callback_url` is, when given (and
    absent otherwise, so hashes of submissions without one are unchanged); so is a
    `spend_budget` (the JSON of a `Budget`), when the submission gives one.
    """
    form: dict[str, Any] = {
        "workflow": workflow,
        "input": orjson.loads(encoded_input),
        "queue": queue,
        "priority": priority,
        "correlation_id": correlation_id,
        "deadline": deadline,
        "run_at": run_at,
    }
    if callback_url is not None:
        form["callback_url"] = callback_url
    if spend_budget is not None:
        form["spend_budget"] = spend_budget
    return form


def submission_hash(
    workflow: str,
    encoded_input: str,
    *,
    queue: str,
    priority: int = 0,
    correlation_id: str | None = None,
    deadline: float | None = None,
    run_at: float | None = None,
    callback_url: str | None = None,
    spend_budget: dict[str, Any] | None = None,
) -> str:
    """The hash stored with an idempotency key (`NewTask.input_hash`): SHA-256 of the
    canonical submission's sorted-key JSON."""
    form = canonical_submission(
        workflow,
        encoded_input,
        queue=queue,
        priority=priority,
        correlation_id=correlation_id,
        deadline=deadline,
        run_at=run_at,
        callback_url=callback_url,
        spend_budget=spend_budget,
    )
    digest = hashlib.sha256(orjson.dumps(form, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return HASH_PREFIX + digest
