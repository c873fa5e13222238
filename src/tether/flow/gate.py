"""`RateLimitGate`: the step gate that holds steps over their integration's rate
limits (ADR 90).

Before each attempt of a step that names an integration, it takes one request, and a
deposit of model tokens, from every bucket the integration's limits give the step's
tenant, all or none. Refused, the step is held (`waiting`, reason `rate_limit`, no
slot) until the bucket allows; the held steps of one bucket in this process are lined
up one behind another, so they do not all wake at the same instant to race for one
request.

Tokens are known only once a model call has answered: the deposit is what calls of
the integration have used on average so far in this process (or `tokens_per_call`;
nothing at first), and after the attempt the bucket is charged the difference
between what the call reported (`model_call` in the step's notes: input and output
tokens) and the deposit, into debt if need be. A bucket in debt admits nothing until
the debt is paid off at its rate, so over time the tokens admitted keep to the rate.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from tether.agents.usage import META_KEY
from tether.engine.gates import Hold, StepCall
from tether.flow.buckets import Buckets, FlowHost
from tether.flow.limits import RateLimits
from tether.models import AttemptError, WaitReason
from tether.models.buckets import BucketKey, BucketKind
from tether.store.buckets import Take

log = logging.getLogger("tether.flow")

INLINE_WAIT = 0.1
"""A step whose turn has come but whose bucket allows only this many seconds later
(another step, here or in another process, took the request it was lined up for a
moment late) waits in place, keeping its slot, instead of going to the back of the
line: a suspension and a replay for a few milliseconds would lose the bucket's rate."""
INLINE_TRIES = 3
"""Times a step asks in all before it is held after all."""
STORE_RETRY = 1.0
"""Seconds a step is held when its buckets could not be read (the database failed)."""
LEARNING = 0.2
"""Weight of the latest call in the running estimate of a call's tokens."""
MAX_PENDING = 100_000
"""Attempts remembered at most, in each of: those whose token report is awaited (an
attempt another gate held after this one granted never reports), and those told when
to come back (a task may resume in another process): the oldest are forgotten."""


class RateLimitGate:
    """A `StepGate` taking from the store-kept buckets of the step's integration."""

    def __init__(self, limits: RateLimits, host: FlowHost) -> None:
        self.limits = limits
        self.host = host
        self.buckets = Buckets(host)
        self._estimates: dict[str, float] = {}
        """Tokens a call of each integration used, on average, in this process."""
        self._deposits: OrderedDict[tuple[str, int, int], list[Take]] = OrderedDict()
        self._turns: OrderedDict[tuple[str, int, int], float] = OrderedDict()
        """When each attempt this gate held was told to come back."""
        self._line_end: dict[BucketKey, float] = {}

    def estimate(self, integration: str, configured: float | None) -> float:
        """The tokens a call of `integration` is assumed to use before it reports."""
        return configured if configured is not None else self._estimates.get(integration, 0.0)

    async def before(self, call: StepCall) -> Hold | None:
        if call.integration is None or not self.limits:
            return None
        tenant = call.task.tenant
        takes: list[Take] = []
        for limit in self.limits.applying(call.integration, tenant):
            requests = limit.take(BucketKind.REQUESTS, tenant, 1)
            estimate = self.estimate(call.integration, limit.tokens_per_call)
            tokens = limit.take(BucketKind.TOKENS, tenant, estimate)
            takes += [t for t in (requests, tokens) if t is not None]
        if not takes:
            return None
        attempt = (call.task.id, call.seq, call.attempt)
        my_turn = self._turns.pop(attempt, None) is not None
        refused, retry_at = takes[0], 0.0
        for tries in range(1, INLINE_TRIES + 1):
            now = self.host.clock.now()
            try:
                outcome = await self.buckets.take(takes, now)
            except Exception as exc:  # a gate must not raise: hold, and ask again soon
                log.warning("rate limits of %r unreadable (%s); holding", call.integration, exc)
                return Hold(WaitReason.RATE_LIMIT, now + STORE_RETRY)
            if outcome.granted:
                deposits = [t for t in takes if t.key.kind == BucketKind.TOKENS]
                if deposits:
                    _remember(self._deposits, attempt, deposits)
                return None
            assert outcome.retry_at is not None and outcome.refused_by is not None
            refused = next(t for t in takes if t.key == outcome.refused_by)
            retry_at = outcome.retry_at
            # In place only for a moment, and only if no step of this process is
            # lined up for the bucket before (unless this one's turn has come).
            lined_up = self._line_end.get(refused.key, 0.0) > retry_at
            if tries == INLINE_TRIES or retry_at - now > INLINE_WAIT or (lined_up and not my_turn):
                break
            await self.host.clock.sleep(retry_at - now)
        until = self._line_up(refused, retry_at, now)
        _remember(self._turns, attempt, until)
        return Hold(WaitReason.RATE_LIMIT, until)

    def _line_up(self, take: Take, allowed_at: float, now: float) -> float:
        """When a step refused by `take`'s bucket asks again: when the bucket allows,
        or after the steps of this process already waiting for it, one take apart."""
        end = self._line_end.get(take.key, 0.0)
        until = max(allowed_at, end)
        self._line_end[take.key] = until + max(take.need, 1.0) / take.rate
        for key in [k for k, at in self._line_end.items() if at < now]:
            del self._line_end[key]
        return until

    async def after(
        self, call: StepCall, error: AttemptError | None, notes: dict[str, Any]
    ) -> None:
        deposits = self._deposits.pop((call.task.id, call.seq, call.attempt), None)
        if not deposits:
            return
        used = reported_tokens(notes)
        if used and call.integration is not None:  # a call that failed unanswered: 0
            known = self._estimates.get(call.integration)
            self._estimates[call.integration] = (
                float(used) if known is None else known + LEARNING * (used - known)
            )
        now = self.host.clock.now()
        for deposit in deposits:
            # What the call reported, less the deposit: a debit (into debt if need be),
            # or a credit when it used less (or reported nothing: not a model call, or
            # one that never reached the provider).
            try:
                await self.buckets.adjust(deposit, (used or 0) - deposit.cost, now)
            except Exception as exc:
                log.warning("could not charge %s its tokens: %s", deposit.key.name, exc)


def _remember(
    book: OrderedDict[tuple[str, int, int], Any], key: tuple[str, int, int], value: Any
) -> None:
    """Keep `value` for an attempt, forgetting the oldest beyond `MAX_PENDING`."""
    book[key] = value
    while len(book) > MAX_PENDING:
        book.popitem(last=False)


def reported_tokens(notes: Mapping[str, Any]) -> int | None:
    """The tokens (input and output) a model call's attempt reported, or None."""
    usage = notes.get(META_KEY)
    if not isinstance(usage, Mapping):
        return None
    total = 0
    for field in ("input_tokens", "output_tokens"):
        value = usage.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            total += value
    return total
