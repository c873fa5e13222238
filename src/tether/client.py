"""`tether.Client`: the async Python client of the HTTP API.

    async with Client("http://127.0.0.1:8000", token=TOKEN) as client:
        task = await client.submit("research", {"topic": "tides"})
        done = await client.wait(task.id)

`submit` always sends an idempotency key (a fresh one when none is given) and retries
connection errors, 429 and 5xx with backoff: a retry of a request the server did commit
returns the same task, so retrying can never create a duplicate. A 429 or 503 that says
`Retry-After` (seconds or an HTTP-date) is retried after that long instead, up to
`max_retry_after`; a longer wait is not slept through: the `ApiError` is raised at once,
its `retry_after` saying how long the server asked for.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import httpx

from tether.client_breakers import BreakersClient
from tether.client_dlq import DlqClient
from tether.client_rollouts import RolloutsClient
from tether.client_schedules import SchedulesClient
from tether.client_webhooks import WebhooksClient
from tether.errors import ApprovalClosed, InvalidTransition, TaskNotFound, TetherError
from tether.models import Approval, Budget, DaySpend, Event, SpendLine, StepRecord, Task
from tether.models.times import format_time
from tether.retry import retry_after_from_headers
from tether.wire import (
    approval_from_json,
    event_from_json,
    spend_line_from_json,
    step_from_json,
    task_from_json,
)

POLL_START = 1.0
APPROVALS_PAGE = 500
"""The API's largest page of approvals."""
POLL_MAX = 30.0
RETRY_AFTER_STATUSES = frozenset({429, 503})
"""Statuses whose `Retry-After` header the client honours (RFC 9110, RFC 6585)."""


class ApiError(TetherError):
    """The API answered with an error: `status`, the problem details (`problem`), and
    its `type` URI, which names the kind of error (the list is in docs/api.md)."""

    def __init__(
        self, status: int, problem: Mapping[str, Any], retry_after: float | None = None
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        """Seconds the server asked to wait (`Retry-After` of a 429 or 503), if it said."""
        self.problem = dict(problem)
        self.type = str(problem.get("type", "about:blank"))
        self.title = str(problem.get("title", ""))
        self.detail = problem.get("detail")
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        super().__init__(f"{status} {self.title}" + (f": {self.detail}" if self.detail else ""))


class NotFoundError(ApiError, TaskNotFound):
    """404: no such task (or approval) for this tenant."""


class ConflictError(ApiError, InvalidTransition):
    """409: the task's (or approval's) state does not allow it, e.g. cancelling an ended
    task or re-running one that has not ended."""


def _retry_after(response: httpx.Response) -> float | None:
    if response.status_code not in RETRY_AFTER_STATUSES:
        return None
    return retry_after_from_headers(response.headers)


class Client:
    """Async client of a Tether server. Give `token` (a JWT) or `api_key`."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        max_retry_after: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "tether-client/0.1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if api_key:
            headers["X-API-Key"] = api_key
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.webhooks = WebhooksClient(self._request, self._post_task)
        """Webhook subscriptions, deliveries, retry and replay (`tether.client_webhooks`)."""
        self.schedules = SchedulesClient(self._request)
        """Cron schedules: create, list, pause, resume, delete, trigger
        (`tether.client_schedules`)."""
        self.rollouts = RolloutsClient(self._request)
        """Workflow rollouts: canary, promote, rollback, clear, figures per version
        (`tether.client_rollouts`)."""
        self.dlq = DlqClient(self._request)
        """The dead-letter queue: groups, tasks, retry, escalate, dismiss, audit trail
        (`tether.client_dlq`)."""
        self.breakers = BreakersClient(self._request)
        """Circuit breakers: list, get, open and close the tenant's own by hand
        (`tether.client_breakers`)."""
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    # plumbing ---------------------------------------------------------------------------
    def _delay(self, attempt: int) -> float:
        base = min(self.max_backoff, self.backoff * 2.0**attempt)
        return base / 2 + random.uniform(0, base / 2)  # jitter spreads synchronized retries

    async def _request(
        self, method: str, path: str, *, retry: bool, **kwargs: Any
    ) -> httpx.Response:
        """Send a request; with `retry`, retry connection errors, 429 and 5xx."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError:
                if not retry or attempt >= self.max_retries:
                    raise
                await asyncio.sleep(self._delay(attempt))
                attempt += 1
                continue
            transient = response.status_code == 429 or response.status_code >= 500
            if transient and retry and attempt < self.max_retries:
                wait = _retry_after(response)
                if wait is None or wait <= self.max_retry_after:
                    await asyncio.sleep(wait if wait is not None else self._delay(attempt))
                    attempt += 1
                    continue
            if response.status_code >= 400:
                raise self._error(response)
            return response

    @staticmethod
    def _error(response: httpx.Response) -> ApiError:
        try:
            problem = response.json()
            if not isinstance(problem, dict):
                raise ValueError
        except ValueError:
            problem = {"title": response.reason_phrase, "status": response.status_code}
        if response.status_code == 404:
            return NotFoundError(404, problem)
        if response.status_code == 409:
            return ConflictError(409, problem)
        return ApiError(response.status_code, problem, _retry_after(response))

    # tasks --------------------------------------------------------------------------------
    async def submit(
        self,
        workflow: str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        correlation_id: str | None = None,
        deadline: datetime | float | None = None,
        spend_budget: Budget | None = None,
    ) -> Task:
        """Submit a task and return it (status `queued`, or the earlier task on a replay).

        Without `idempotency_key` a fresh key is generated, so the retries this method
        makes are safe; pass your own key to make your own retries safe too.
        `spend_budget` limits the task's spend (default: its workflow's).
        """
        task, _ = await self.submit_or_replay(
            workflow,
            input,
            idempotency_key=idempotency_key,
            queue=queue,
            priority=priority,
            correlation_id=correlation_id,
            deadline=deadline,
            spend_budget=spend_budget,
        )
        return task

    async def submit_or_replay(
        self,
        workflow: str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        correlation_id: str | None = None,
        deadline: datetime | float | None = None,
        spend_budget: Budget | None = None,
    ) -> tuple[Task, bool]:
        """`submit`, and whether it created the task: False when the idempotency key
        matched an earlier task (the server's `Idempotent-Replayed` answer)."""
        response = await self._post_task(
            workflow,
            input,
            idempotency_key,
            queue,
            priority,
            correlation_id,
            deadline,
            spend_budget=spend_budget,
        )
        created = response.headers.get("idempotent-replayed") != "true"
        return task_from_json(response.json()), created

    async def _post_task(
        self,
        workflow: str,
        input: Any,
        idempotency_key: str | None,
        queue: str | None,
        priority: int,
        correlation_id: str | None,
        deadline: datetime | float | None,
        callback_url: str | None = None,
        *,
        spend_budget: Budget | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"workflow": workflow, "input": input, "priority": priority}
        if queue is not None:
            body["queue"] = queue
        if correlation_id is not None:
            body["correlation_id"] = correlation_id
        if deadline is not None:
            seconds = deadline.timestamp() if isinstance(deadline, datetime) else deadline
            body["deadline"] = format_time(seconds)
        if callback_url is not None:
            body["callback_url"] = callback_url
        if spend_budget is not None:
            body["spend_budget"] = spend_budget.to_json()
        key = idempotency_key or f"client-{uuid.uuid4()}"
        return await self._request(
            "POST", "/v1/tasks", retry=True, json=body, headers={"Idempotency-Key": key}
        )

    async def submit_batch(
        self, tasks: list[dict[str, Any]], *, idempotency_key: str | None = None
    ) -> list[Task]:
        """Submit up to 1,000 tasks (dicts with `workflow`, `input`, ...) all together."""
        key = idempotency_key or f"client-{uuid.uuid4()}"
        response = await self._request(
            "POST",
            "/v1/tasks:batch",
            retry=True,
            json={"tasks": tasks},
            headers={"Idempotency-Key": key},
        )
        return [task_from_json(t) for t in response.json()["items"]]

    async def get(self, task_id: str) -> Task:
        """The task now; `NotFoundError` (a `TaskNotFound`) when missing."""
        response = await self._request("GET", f"/v1/tasks/{task_id}", retry=True)
        return task_from_json(response.json())

    async def task_spend(self, task_id: str) -> SpendLine:
        """What the task spent and holds reserved, and its limit (`spend` of `GET
        /v1/tasks/{id}`); `NotFoundError` when missing."""
        response = await self._request("GET", f"/v1/tasks/{task_id}", retry=True)
        data = response.json()
        return spend_line_from_json(data["spend"], data["tenant"], task_id)

    async def spend(self, *, day: str | None = None) -> DaySpend:
        """What the caller's tenant spent on UTC `day` (`YYYY-MM-DD`, default today), in
        all and by workflow (`GET /v1/spend`)."""
        params = {} if day is None else {"day": day}
        response = await self._request("GET", "/v1/spend", retry=True, params=params)
        return DaySpend.from_json(response.json())

    async def list_tasks(
        self,
        *,
        status: list[str] | None = None,
        workflow: str | None = None,
        correlation_id: str | None = None,
        short_id: str | None = None,
        parent_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Task], str | None]:
        """A page of tasks (newest first) and the cursor of the next page; `short_id`
        keeps the tasks whose id begins or ends with it, `parent_id` the children of
        that task."""
        params: list[tuple[str, str | int]] = [("limit", limit)]
        params += [("status", s) for s in status or ()]
        for name, value in (
            ("workflow", workflow),
            ("correlation_id", correlation_id),
            ("short_id", short_id),
            ("parent_id", parent_id),
            ("cursor", cursor),
        ):
            if value is not None:
                params.append((name, value))
        response = await self._request("GET", "/v1/tasks", retry=True, params=params)
        data = response.json()
        return [task_from_json(t) for t in data["items"]], data.get("next_cursor")

    async def children(
        self, task_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Task], str | None]:
        """A page of the child tasks `task_id` started (newest first) and the cursor of
        the next page; `NotFoundError` when the task is missing."""
        params: list[tuple[str, str | int]] = [("limit", limit)]
        if cursor is not None:
            params.append(("cursor", cursor))
        response = await self._request(
            "GET", f"/v1/tasks/{task_id}/children", retry=True, params=params
        )
        data = response.json()
        return [task_from_json(t) for t in data["items"]], data.get("next_cursor")

    async def cancel(self, task_id: str, *, compensate: bool = False) -> Task:
        """Cancel a task (409 `ApiError` when it has ended already); with `compensate`,
        a run first undoes its completed steps (docs/sagas.md)."""
        body = {"compensate": True} if compensate else None
        response = await self._request(
            "POST", f"/v1/tasks/{task_id}/cancel", retry=False, json=body
        )
        return task_from_json(response.json())

    async def signal(self, task_id: str, name: str, payload: Any = None) -> int:
        """Send a signal; return its id."""
        response = await self._request(
            "POST", f"/v1/tasks/{task_id}/signals/{name}", retry=False, json=payload
        )
        return int(response.json()["id"])

    async def steps(self, task_id: str) -> list[StepRecord]:
        """The task's step log."""
        response = await self._request("GET", f"/v1/tasks/{task_id}/steps", retry=True)
        return [step_from_json({"task_id": task_id, **s}) for s in response.json()["items"]]

    async def rerun(self, task_id: str, *, from_step: int | None = None) -> Task:
        """Re-run an ended task as a new linked task that reuses its finished steps (all,
        or those before `from_step`); returns the new task. `ConflictError` (409) while
        the task has not ended. Not retried: each call that arrives creates a task."""
        body = None if from_step is None else {"from_step": from_step}
        response = await self._request("POST", f"/v1/tasks/{task_id}/rerun", retry=False, json=body)
        return task_from_json(response.json())

    async def compensate(self, task_id: str) -> Task:
        """Undo a failed or cancelled task's completed steps: returns the new linked task
        (phase `compensation`) that runs their compensations, latest first.
        `ConflictError` (409) for a task that has not ended or that succeeded. Not
        retried: each call that arrives creates a task."""
        response = await self._request("POST", f"/v1/tasks/{task_id}/compensate", retry=False)
        return task_from_json(response.json())

    # approvals --------------------------------------------------------------------------
    async def approvals(
        self,
        *,
        status: str | None = None,
        risk: str | None = None,
        task_id: str | None = None,
        short_id: str | None = None,
        limit: int = 100,
    ) -> list[Approval]:
        """Up to `limit` approval requests of the caller's tenant, newest first: of one
        `status` (pending, approved, rejected), `risk`, task, or short id, when given.
        Follows the API's pages (500 at most each) until `limit` or the last one."""
        filters: list[tuple[str, str | int]] = []
        for name, value in (
            ("status", status),
            ("risk", risk),
            ("task_id", task_id),
            ("short_id", short_id),
        ):
            if value is not None:
                filters.append((name, value))
        found: list[Approval] = []
        cursor: str | None = None
        while len(found) < limit:
            params = [*filters, ("limit", min(limit - len(found), APPROVALS_PAGE))]
            if cursor is not None:
                params.append(("cursor", cursor))
            response = await self._request("GET", "/v1/approvals", retry=True, params=params)
            page = response.json()
            found += [approval_from_json(a) for a in page["items"]]
            cursor = page.get("next_cursor")
            if cursor is None:
                break
        return found

    async def approval(self, approval_id: str) -> Approval:
        """One approval request; `NotFoundError` when missing."""
        response = await self._request("GET", f"/v1/approvals/{approval_id}", retry=True)
        return approval_from_json(response.json())

    async def decide(
        self,
        approval_id: str,
        *,
        approve: bool,
        reason: str,
        changes: dict[str, Any] | None = None,
    ) -> Approval:
        """Approve (with `changes`, if any) or reject, as the credential's subject; returns
        the approval as it now stands. Raises `ApprovalClosed` (with the outcome that
        stands) when it was already closed or timed out, `ConflictError` when this
        subject already decided, and `ApiError` 403 for the task's own submitter."""
        body: dict[str, Any] = {"approve": approve, "reason": reason}
        if changes is not None:
            body["changes"] = changes
        try:
            response = await self._request(
                "POST", f"/v1/approvals/{approval_id}/decision", retry=False, json=body
            )
        except ConflictError as exc:
            standing = exc.problem.get("approval")
            if isinstance(standing, dict) and standing.get("status") != "pending":
                raise ApprovalClosed(str(exc.detail), approval_from_json(standing)) from exc
            raise
        return approval_from_json(response.json())

    # following --------------------------------------------------------------------------
    async def events(
        self, task_id: str, *, after: int = 0, follow: bool = True
    ) -> AsyncGenerator[Event, None]:
        """The task's events after `after`. With `follow`, a live stream (server-sent
        events) that reconnects with `Last-Event-ID` after a drop and ends when the task
        has ended; without, the events stored now."""
        last = after
        if not follow:
            while True:
                response = await self._request(
                    "GET", f"/v1/tasks/{task_id}/events", retry=True, params={"after": last}
                )
                items = response.json()["items"]
                for item in items:
                    event = event_from_json(item)
                    last = event.id
                    yield event
                if not items:
                    return
        failures = 0
        while True:
            try:
                async for event in self._stream(task_id, last):
                    last = event.id
                    failures = 0
                    yield event
                return  # the server ended the stream: the task has ended
            except httpx.TransportError:
                if failures >= self.max_retries:
                    raise
                await asyncio.sleep(self._delay(failures))
                failures += 1

    async def _stream(self, task_id: str, after: int) -> AsyncIterator[Event]:
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(after)}
        async with self._http.stream(
            "GET",
            f"/v1/tasks/{task_id}/events",
            headers=headers,
            timeout=httpx.Timeout(self._http.timeout.connect, read=None),
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                raise self._error(response)
            data: list[str] = []
            async for line in response.aiter_lines():
                if line == "":
                    if data:
                        yield event_from_json(json.loads("\n".join(data)))
                    data = []
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))

    async def wait(
        self, task_id: str, timeout: float | None = None, *, follow_events: bool = True
    ) -> Task:
        """Wait until the task ends and return it. Follows its event stream (falling back
        to polling when streaming fails), or polls every 1 s doubling up to 30 s."""
        async with asyncio.timeout(timeout):
            task = await self.get(task_id)
            if task.status.terminal:
                return task
            if follow_events:
                try:
                    async for _ in self.events(task_id, after=0):
                        pass
                    task = await self.get(task_id)
                    if task.status.terminal:
                        return task
                except (httpx.TransportError, ApiError) as exc:
                    if isinstance(exc, NotFoundError):
                        raise
            delay = POLL_START
            while True:
                task = await self.get(task_id)
                if task.status.terminal:
                    return task
                await asyncio.sleep(delay)
                delay = min(delay * 2, POLL_MAX)
