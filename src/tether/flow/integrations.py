"""`IntegrationGate`: the step gate of a step's integration (ADR 91): its circuit
breaker first (answered from memory while closed), then its step limit (a slot taken in
the database). A step its breaker holds takes no slot; a step the limit holds gives
back the probe its breaker let it take. After the attempt the slot is freed first, then
the breaker told."""

from __future__ import annotations

from typing import Any

from tether.engine.gates import Hold, StepCall
from tether.flow.breakers import BreakerGate
from tether.flow.step_limits import StepLimitGate
from tether.models import AttemptError


class IntegrationGate:
    """Asks `breakers`, then `limits`, about each attempt of a step that names an
    integration."""

    def __init__(self, breakers: BreakerGate, limits: StepLimitGate) -> None:
        self.breakers = breakers
        self.limits = limits

    async def before(self, call: StepCall) -> Hold | None:
        """The breaker's hold, else the limit's, else None (the step runs)."""
        if call.integration is None:
            return None
        hold = await self.breakers.before(call)
        if hold is not None:
            return hold
        hold = await self.limits.before(call)
        if hold is not None:
            await self.breakers.withdraw(call)
        return hold

    async def after(
        self, call: StepCall, error: AttemptError | None, notes: dict[str, Any]
    ) -> None:
        """Free the step's slot, then count its outcome on the breaker."""
        if call.integration is None:
            return
        await self.limits.after(call, error, notes)
        await self.breakers.after(call, error, notes)
