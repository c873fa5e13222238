"""`Dispatcher`: fans events out into the outbox and delivers it, in workers and servers.

Two loops share one store. The fan-out wakes when this process commits events (or
hears that another did), at most every poll interval otherwise, and moves the
outbox's cursor over the events feed (`Store.fan_out`). The delivery loop claims due
deliveries with a lease, signs and POSTs each through the egress guard, and records
the outcomes in batches: 2xx delivered; 410 fails it and disables the subscription;
anything else (timeouts, refused connections, other statuses) is retried on the
schedule, exponential backoff with jitter over hours, until its attempts run out. A
dispatcher that dies mid-delivery loses nothing: its leases expire and another sends
the same delivery again, with the same `webhook-id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

import httpx

from tether import egress
from tether.clock import Clock, wait_event
from tether.config import Settings
from tether.errors import TetherError
from tether.ids import new_id
from tether.models.webhooks import WebhookSubscription
from tether.retry import RetryPolicy
from tether.store.availability import failure_level
from tether.store.base import Store
from tether.store.outbox import ClaimedDelivery, DeliveryOutcome
from tether.webhooks import fanout, signing

log = logging.getLogger("tether.webhooks")

DisabledHook = Callable[[WebhookSubscription], Awaitable[None]]
"""Called once a dispatcher disabled a subscription (410 Gone, or too many failures);
the subscription's `disabled_reason` says why. Notifications plug in here."""

FANOUT_PAGE = 1000
"""Events one fan-out transaction reads at most."""
FANOUT_GAP = 0.005
CONNECTIONS_PER_POOL = 8
CLAIM_GATHER = 0.005
"""Seconds a busy dispatcher waits for more sends to finish before claiming again."""
"""Seconds between two fan-out passes under load, so a pass gathers many events."""
USER_AGENT = "tether-webhooks/0.1"
DEFAULT_SCHEDULE = RetryPolicy(
    max_attempts=15, initial_interval=10.0, max_interval=3600.0, jitter=0.2
)
"""10 s, 20 s, 40 s, ... doubling up to an hour between attempts: about 6.5 hours in all."""


@dataclass(frozen=True)
class DispatchConfig:
    """How a dispatcher delivers (from `Settings`: the `webhook_*` settings)."""

    concurrency: int = 64
    schedule: RetryPolicy = DEFAULT_SCHEDULE
    """Attempts per delivery and the backoff between them."""
    disable_after: int = 5
    lease_ttl: float = 60.0
    poll_interval: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchConfig:
        """The configuration the settings name."""
        return cls(
            concurrency=settings.webhook_concurrency,
            schedule=RetryPolicy(
                max_attempts=settings.webhook_max_attempts,
                initial_interval=settings.webhook_retry_initial,
                max_interval=settings.webhook_retry_max_interval,
                jitter=0.2,
            ),
            disable_after=settings.webhook_disable_after,
            lease_ttl=settings.webhook_lease_ttl,
            poll_interval=settings.webhook_poll_interval,
        )


def _default_owner() -> str:
    return f"webhooks-{socket.gethostname()}-{os.getpid()}-{new_id()[-6:]}"


class Dispatcher:
    """Fan-out and delivery for one process; `async with` or `start()`/`stop()`."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: DispatchConfig | None = None,
        *,
        policy: egress.EgressPolicy | None = None,
        owner: str | None = None,
        on_disabled: Sequence[DisabledHook] = (),
        open: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self._open = open
        """Makes `store` usable before the loops start (the app's `open`)."""
        self.clock = clock
        self.config = config or DispatchConfig()
        self.policy = policy or egress.EgressPolicy()
        self.owner = owner or _default_owner()
        self.on_disabled = list(on_disabled)
        self.delivered = 0
        """Deliveries this dispatcher recorded as delivered (tests and the bench read it)."""
        self._pools: list[httpx.AsyncClient] = []
        self._next_pool: Iterator[httpx.AsyncClient] = iter(())
        self._loops: list[asyncio.Task[None]] = []
        self._sends: set[asyncio.Task[None]] = set()
        self._outcomes: list[DeliveryOutcome] = []
        self._outcome_ready = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._closing = False
        self._first_pass = asyncio.Event()
        self._subscribed = True
        """Whether the last fan-out found an active subscription (else it runs on the
        poll only, so a database without webhooks pays a small read per interval)."""

    # life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the fan-out, delivery and recording loops."""
        if self._loops:
            return
        if self._open is not None:
            await self._open()
        self._stopping.clear()
        self._closing = False
        self._first_pass.clear()
        self._loops = [
            asyncio.create_task(self._fanout_loop(), name="tether-webhooks-fanout"),
            asyncio.create_task(self._deliver_loop(), name="tether-webhooks-deliver"),
            asyncio.create_task(self._record_loop(), name="tether-webhooks-record"),
        ]

    def _pool(self) -> httpx.AsyncClient:
        """The next connection pool, in turn; made at the first send (a worker that never
        delivers pays nothing for them, not even the TLS context)."""
        if not self._pools:
            # httpcore's pool slows down sharply past a few connections (measured: 32 in
            # one pool ~190 req/s, 4 pools of 8 ~1,000 req/s): several small pools.
            per = min(CONNECTIONS_PER_POOL, self.config.concurrency)
            self._pools = [
                egress.client(
                    self.policy,
                    headers={"user-agent": USER_AGENT, "content-type": "application/json"},
                    limits=httpx.Limits(max_connections=per, max_keepalive_connections=per),
                )
                for _ in range(-(-self.config.concurrency // per))
            ]
            self._next_pool = itertools.cycle(self._pools)
        return next(self._next_pool)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; let sends in flight finish for `grace` seconds (the rest are
        cancelled: their leases expire and they are sent again), record outcomes."""
        if not self._loops:
            return
        self._stopping.set()
        self._slot_freed.set()
        fan, deliver, record = self._loops
        for loop in (fan, deliver):
            loop.cancel()
        await asyncio.gather(fan, deliver, return_exceptions=True)
        if self._sends:
            await asyncio.wait(list(self._sends), timeout=grace)
        for send in list(self._sends):
            send.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)
        self._sends.clear()
        self._closing = True  # every outcome there will be is in `_outcomes` now
        self._outcome_ready.set()
        await asyncio.gather(record, return_exceptions=True)
        self._loops = []
        for pool in self._pools:
            await pool.aclose()
        self._pools = []

    async def __aenter__(self) -> Dispatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # fan-out --------------------------------------------------------------------------
    async def fan_out_once(self) -> int:
        """One fan-out pass now; returns the events it read."""
        result = await self.store.fan_out(fanout.plan, FANOUT_PAGE, self.clock.now())
        self._subscribed = result.events > 0 or result.subscribed
        return result.events

    async def _fanout_loop(self) -> None:
        hub = self.store.hub
        woken = True
        while True:
            hub.events_written.clear()
            hub.subscriptions_changed.clear()
            read = 0
            try:
                read = page = await self.fan_out_once()
                while page >= FANOUT_PAGE:  # a backlog: page through it at once
                    page = await self.fan_out_once()
            except Exception as exc:  # the database is away: polling retries
                log.log(failure_level(exc), "webhook fan-out failed: %s", exc)
            self._first_pass.set()
            if woken and read == 0 and self._subscribed:
                # Woken by a commit but nothing to read: on PostgreSQL the event may be
                # held back a moment behind an older open transaction (ADR 13). Look
                # again soon instead of at the next poll.
                await self._recheck_held_back()
            wake = hub.events_written if self._subscribed else hub.subscriptions_changed
            woken = await wait_event(wake, self.config.poll_interval)
            await asyncio.sleep(FANOUT_GAP)

    async def _recheck_held_back(self) -> None:
        delay = 0.005
        while delay < self.config.poll_interval:
            if await wait_event(self.store.hub.events_written, delay):
                return  # more news: the main loop reads it all
            try:
                if await self.fan_out_once():
                    return
            except Exception:
                return
            delay *= 2

    # delivery -------------------------------------------------------------------------
    async def _deliver_loop(self) -> None:
        hub = self.store.hub
        # One database transaction at a time while starting: the first claim follows
        # the first fan-out (a process's pool need not grow for its dispatcher).
        await self._first_pass.wait()
        while True:
            free = self.config.concurrency - len(self._sends)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            if self._sends and free < self.config.concurrency // 2:
                # Busy: let a few more sends finish and claim for them together, rather
                # than one claim transaction per finished send.
                await asyncio.sleep(CLAIM_GATHER)
                free = self.config.concurrency - len(self._sends)
            if not self._subscribed and not hub.deliveries_due.is_set():
                # No active subscription, so nothing can be due: no claim each interval.
                await wait_event(hub.deliveries_due, self.config.poll_interval)
                continue
            hub.deliveries_due.clear()
            claimed: list[ClaimedDelivery] = []
            try:
                now = self.clock.now()
                claimed = await self.store.claim_deliveries(
                    self.owner, free, now, now + self.config.lease_ttl
                )
            except Exception as exc:
                log.log(failure_level(exc), "claiming webhook deliveries failed: %s", exc)
            for item in claimed:
                send = asyncio.create_task(self._send(item), name="tether-webhook-send")
                self._sends.add(send)
                send.add_done_callback(self._sent)
            if len(claimed) == free:
                continue
            await wait_event(hub.deliveries_due, self.config.poll_interval)

    def _sent(self, send: asyncio.Task[None]) -> None:
        self._sends.discard(send)
        self._slot_freed.set()

    async def _send(self, item: ClaimedDelivery) -> None:
        d = item.delivery
        http = self._pool()
        headers = signing.headers(d.webhook_id, d.body, item.secrets, self.clock.now())
        code: int | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            # A hard bound well inside the lease: a send never outlives its claim.
            async with asyncio.timeout(self.config.lease_ttl / 2):
                async with http.stream(
                    "POST", _url(item.url), content=d.body.encode(), headers=headers
                ) as response:
                    code = response.status_code
                    retry_after = _retry_after(response)
                    with contextlib.suppress(egress.ResponseTooLarge):
                        await response.aread()
        except egress.EgressRefused as exc:
            error = f"refused: {exc.reason}"
        except (TimeoutError, httpx.TimeoutException):
            error = "timed out"
        except (httpx.HTTPError, OSError, TetherError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        delivered = code is not None and 200 <= code < 300
        if code is not None and not delivered:
            error = f"HTTP {code}"
        self._outcomes.append(
            DeliveryOutcome(
                delivery_id=d.id,
                subscription_id=d.subscription_id,
                task_id=d.task_id,
                event_id=d.event_id,
                attempts=d.attempts,
                delivered=delivered,
                status_code=code,
                error=error,
                retry_at=None if delivered else self._retry_at(d.attempts, retry_after),
                gone=code == 410,
            )
        )
        self._outcome_ready.set()

    def _retry_at(self, attempts: int, retry_after: float | None) -> float | None:
        schedule = self.config.schedule
        if attempts >= schedule.max_attempts:
            return None
        wait = schedule.backoff(attempts)
        if retry_after is not None:
            wait = max(wait, min(retry_after, schedule.max_interval))
        return self.clock.now() + wait

    # outcomes -------------------------------------------------------------------------
    async def _record_loop(self) -> None:
        delay = 0.05
        while True:
            if not self._outcomes:
                if self._closing:
                    return
                self._outcome_ready.clear()
                await self._outcome_ready.wait()
                continue
            batch, self._outcomes = self._outcomes, []
            try:
                disabled = await self.store.record_deliveries(
                    self.owner, batch, self.clock.now(), self.config.disable_after
                )
            except Exception as exc:  # keep them: a lost outcome means a resend only
                log.log(failure_level(exc), "recording webhook outcomes failed: %s", exc)
                self._outcomes = batch + self._outcomes
                if self._stopping.is_set():
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.05
            self.delivered += sum(1 for o in batch if o.delivered)
            # A task's next event may have waited for one of these: look now.
            self.store.hub.notify_deliveries()
            for sub in disabled:
                log.warning("webhook subscription %s disabled: %s", sub.id, sub.disabled_reason)
                for hook in self.on_disabled:
                    try:
                        await hook(sub)
                    except Exception:
                        log.exception("a webhook disabled hook failed")


@functools.lru_cache(maxsize=4096)
def _url(text: str) -> httpx.URL:
    return httpx.URL(text)  # parsed once per subscription URL, not once per send


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
