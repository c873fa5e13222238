"""`tether.Client`: the async Python client of the HTTP API.

    async with Client("http://127.0.0.1:8000", token=TOKEN) as client:
        task = await client.submit("research", {"topic": "tides"})
        done = await client.wait(task.id)

`submit` always sends an idempotency key (a fresh one when none is given) and retries
connection errors, 429 (after `Retry-After`) and 5xx with backoff: a retry of a request
the server did commit returns the same task, so retrying can never create a duplicate.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from tether.client_webhooks import WebhooksClient, subscription_from_json
from tether.errors import TaskNotFound, TetherError
from tether.models import (
    Event,
    StepKind,
    StepRecord,
    StepStatus,
    Task,
    TaskError,
)
from tether.models.webhooks import WebhookSubscription

POLL_START = 1.0
POLL_MAX = 30.0


class ApiError(TetherError):
    """The API answered with an error (`status`, and the problem details)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        self.title = str(problem.get("title", ""))
        self.detail = problem.get("detail")
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        super().__init__(f"{status} {self.title}" + (f": {self.detail}" if self.detail else ""))


class NotFoundError(ApiError, TaskNotFound):
    """404: no such task for this tenant."""


def task_from_json(data: Mapping[str, Any]) -> Task:
    """A `Task` from the API's JSON (`Task.from_json`)."""
    return Task.from_json(data)


def event_from_json(data: Mapping[str, Any]) -> Event:
    """An `Event` from the API's JSON."""
    return Event(
        id=data["id"],
        task_id=data["task_id"],
        tenant=data.get("tenant", ""),
        at=data["at"],
        type=data["type"],
        prior_status=data.get("prior_status"),
        new_status=data.get("new_status"),
        attempt=data.get("attempt"),
        step=data.get("step"),
        error_class=data.get("error_class"),
        decision=data.get("decision"),
        data=data.get("data"),
    )


def step_from_json(data: Mapping[str, Any]) -> StepRecord:
    return StepRecord(
        task_id=data.get("task_id", ""),
        seq=data["seq"],
        name=data["name"],
        kind=StepKind(data["kind"]),
        status=StepStatus(data["status"]),
        attempts=data.get("attempts", 1),
        result=data.get("result"),
        error=TaskError.from_json(data.get("error")),
        started_at=data.get("started_at"),
        finished_at=data.get("finished_at"),
        wake_at=data.get("wake_at"),
        meta=data.get("meta") or {},
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


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
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.webhooks = WebhooksClient(self._request)
        """Webhook subscriptions, deliveries, retry and replay (`tether.client_webhooks`)."""

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
                wait = _retry_after(response) if response.status_code == 429 else None
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
        return ApiError(response.status_code, problem)

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
    ) -> Task:
        """Submit a task and return it (status `queued`, or the earlier task on a replay).

        Without `idempotency_key` a fresh key is generated, so the retries this method
        makes are safe; pass your own key to make your own retries safe too.
        """
        response = await self._submit(
            workflow, input, idempotency_key, queue, priority, correlation_id, deadline, None
        )
        return task_from_json(response.json())

    async def submit_with_callback(
        self,
        workflow: str,
        input: Any = None,
        *,
        callback_url: str,
        idempotency_key: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        correlation_id: str | None = None,
        deadline: datetime | float | None = None,
    ) -> tuple[Task, WebhookSubscription]:
        """`submit`, with a signed webhook of the task's end sent to `callback_url`;
        returns the task and its callback subscription, whose `secret` verifies it."""
        response = await self._submit(
            workflow,
            input,
            idempotency_key,
            queue,
            priority,
            correlation_id,
            deadline,
            callback_url,
        )
        data = response.json()
        task = task_from_json(data)
        cb = data["callback"]
        callback = subscription_from_json(
            {
                "id": cb["subscription_id"],
                "tenant": task.tenant,
                "url": cb["url"],
                "event_types": cb["event_types"],
                "secret": cb["secret"],
                "task_id": task.id,
                "status": "active",
                "created_at": task.created_at,
                "updated_at": task.created_at,
            }
        )
        return task, callback

    async def _submit(
        self,
        workflow: str,
        input: Any,
        idempotency_key: str | None,
        queue: str | None,
        priority: int,
        correlation_id: str | None,
        deadline: datetime | float | None,
        callback_url: str | None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"workflow": workflow, "input": input, "priority": priority}
        if queue is not None:
            body["queue"] = queue
        if correlation_id is not None:
            body["correlation_id"] = correlation_id
        if deadline is not None:
            when = (
                deadline
                if isinstance(deadline, datetime)
                else datetime.fromtimestamp(deadline, tz=UTC)
            )
            body["deadline"] = when.isoformat()
        if callback_url is not None:
            body["callback_url"] = callback_url
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

    async def list_tasks(
        self,
        *,
        status: list[str] | None = None,
        workflow: str | None = None,
        correlation_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Task], str | None]:
        """A page of tasks (newest first) and the cursor of the next page."""
        params: list[tuple[str, str | int]] = [("limit", limit)]
        params += [("status", s) for s in status or ()]
        for name, value in (
            ("workflow", workflow),
            ("correlation_id", correlation_id),
            ("cursor", cursor),
        ):
            if value is not None:
                params.append((name, value))
        response = await self._request("GET", "/v1/tasks", retry=True, params=params)
        data = response.json()
        return [task_from_json(t) for t in data["items"]], data.get("next_cursor")

    async def cancel(self, task_id: str) -> Task:
        """Cancel a task (409 `ApiError` when it has ended already)."""
        response = await self._request("POST", f"/v1/tasks/{task_id}/cancel", retry=False)
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

    # following --------------------------------------------------------------------------
    async def events(
        self, task_id: str, *, after: int = 0, follow: bool = True
    ) -> AsyncIterator[Event]:
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
