"""Transaction logic shared by the SQL stores, written once for both dialects.

Every function here runs inside a transaction the driver opened, against `Conn`: a
tiny async connection interface with `%s` placeholders and rows addressable by column
name. The SQLite driver runs these coroutines synchronously in its database thread
(they never suspend there); the PostgreSQL driver awaits them on psycopg connections.
Lock order, where it matters: the task row first, then anything that hangs off it.
"""

from __future__ import annotations

from tether.store.sql import events, fairness
from tether.store.sql.api_keys import create_api_key, get_api_key, revoke_api_key
from tether.store.sql.approvals import decide, get_approval, list_approvals
from tether.store.sql.children import ended_children, family_ended
from tether.store.sql.claims import (
    NEXT_EXPIRIES,
    NO_LIMIT,
    WORKFLOW_KEY,
    claim,
    delayed_pick,
    heartbeat,
    queue_match,
    queued_pick,
    worker_lost_error,
    worker_lost_params,
    workflow_keys,
    workflow_match,
)
from tether.store.sql.control import cancel, fork, send_signal
from tether.store.sql.core import (
    APPROVAL_COLUMNS,
    POSTGRES,
    SIGNAL_COLUMNS,
    SQLITE,
    STEP_COLUMNS,
    TASK_COLUMNS,
    TERMINAL,
    Conn,
    Dialect,
    Row,
    approval_from_row,
    event_from_row,
    signal_from_row,
    step_from_row,
    task_for_update,
    task_from_row,
    wake,
)
from tether.store.sql.hooks import receive_hook
from tether.store.sql.housekeeping import purge
from tether.store.sql.intake import NEW_TASK_COLUMNS, new_task_record, new_task_row, submit
from tether.store.sql.notifications import (
    add_notifications,
    advance_notify_cursor,
    claim_notifications,
    list_notifications,
    notify_position,
    settle_notification,
)
from tether.store.sql.ops import (
    GATE_REASONS,
    STEP_UPSERT,
    EventBuffer,
    apply_op,
    apply_ops,
    consume_signal,
    finish_family,
    finish_params,
    finish_progress,
    in_task_order_by_kind,
    step_params,
    step_progress,
)
from tether.store.sql.queries import (
    count_by_status,
    get_steps,
    get_task,
    get_tasks,
    list_events,
    list_tasks,
    next_wake,
    oldest_queued,
)
from tether.store.sql.workers import live_workers, queued_by_version, worker_gone, worker_seen

__all__ = [
    "APPROVAL_COLUMNS",
    "GATE_REASONS",
    "NEW_TASK_COLUMNS",
    "NEXT_EXPIRIES",
    "NO_LIMIT",
    "POSTGRES",
    "SIGNAL_COLUMNS",
    "SQLITE",
    "STEP_COLUMNS",
    "STEP_UPSERT",
    "TASK_COLUMNS",
    "TERMINAL",
    "WORKFLOW_KEY",
    "Conn",
    "Dialect",
    "EventBuffer",
    "Row",
    "add_notifications",
    "advance_notify_cursor",
    "apply_op",
    "apply_ops",
    "approval_from_row",
    "cancel",
    "claim",
    "claim_notifications",
    "consume_signal",
    "count_by_status",
    "create_api_key",
    "decide",
    "delayed_pick",
    "ended_children",
    "event_from_row",
    "events",
    "fairness",
    "family_ended",
    "finish_family",
    "finish_params",
    "finish_progress",
    "fork",
    "get_api_key",
    "get_approval",
    "get_steps",
    "get_task",
    "get_tasks",
    "heartbeat",
    "in_task_order_by_kind",
    "list_approvals",
    "list_events",
    "list_notifications",
    "list_tasks",
    "live_workers",
    "new_task_record",
    "new_task_row",
    "next_wake",
    "notify_position",
    "oldest_queued",
    "purge",
    "queue_match",
    "queued_by_version",
    "queued_pick",
    "receive_hook",
    "revoke_api_key",
    "send_signal",
    "settle_notification",
    "signal_from_row",
    "step_from_row",
    "step_params",
    "step_progress",
    "submit",
    "task_for_update",
    "task_from_row",
    "wake",
    "worker_gone",
    "worker_lost_error",
    "worker_lost_params",
    "worker_seen",
    "workflow_keys",
    "workflow_match",
]
