"""What model calls cost: a price table per model, in US dollars per million tokens.

The built-in table (`DEFAULT_PRICES`) holds the providers' published list prices of
their common models at the time of writing; prices change, so an application
overrides or adds entries: the `model_prices` setting (a TOML table, JSON in the
environment), then `app.model_prices.set(...)` in code, then `prices=` on one call.

A model is looked up by its exact name, then by that name without a date or `-latest`
suffix (`gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`, `claude-sonnet-4-20250514`
as `claude-sonnet-4`). A model the table does not know is not guessed at: its calls
record their tokens and a cost of None.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tether.errors import ConfigError


@dataclass(frozen=True)
class ModelPrice:
    """A model's prices, in US dollars per million tokens."""

    input: float
    """An input (prompt) token not served from a cache."""
    output: float
    """An output (completion) token, reasoning tokens included."""
    cached_input: float | None = None
    """An input token read from the provider's prompt cache (None: as `input`)."""
    cache_write: float | None = None
    """An input token written to the prompt cache (Anthropic; None: as `input`)."""

    def __post_init__(self) -> None:
        for name in ("input", "output", "cached_input", "cache_write"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"ModelPrice.{name} must be a number of dollars >= 0")

    def cost(
        self, input_tokens: int, output_tokens: int, cached_input: int = 0, cache_write: int = 0
    ) -> float:
        """The dollars a call with these token counts costs. `input_tokens` counts every
        input token, the cached and cache-writing ones included."""
        plain = max(0, input_tokens - cached_input - cache_write)
        cached = self.input if self.cached_input is None else self.cached_input
        written = self.input if self.cache_write is None else self.cache_write
        total = (
            plain * self.input
            + cached_input * cached
            + cache_write * written
            + output_tokens * self.output
        )
        return round(total / 1_000_000, 10)


_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


class PriceTable(Mapping[str, ModelPrice]):
    """Model prices by model name; a mapping with `lookup` for dated model names."""

    def __init__(self, prices: Mapping[str, ModelPrice] | None = None) -> None:
        self._prices: dict[str, ModelPrice] = dict(prices or {})

    def __getitem__(self, model: str) -> ModelPrice:
        return self._prices[model]

    def __iter__(self) -> Iterator[str]:
        return iter(self._prices)

    def __len__(self) -> int:
        return len(self._prices)

    def set(
        self,
        model: str,
        *,
        input: float,
        output: float,
        cached_input: float | None = None,
        cache_write: float | None = None,
    ) -> None:
        """Price `model` (dollars per million tokens), replacing any price it had."""
        self._prices[model] = ModelPrice(input, output, cached_input, cache_write)

    def lookup(self, model: str | None) -> ModelPrice | None:
        """The price of `model`: by its name, else its name without a date or `-latest`
        suffix; None when the table does not know it."""
        if not model:
            return None
        found = self._prices.get(model)
        if found is None:
            found = self._prices.get(_SUFFIX.sub("", model))
        return found

    def merged(self, overrides: Mapping[str, ModelPrice] | None) -> PriceTable:
        """A new table: this one with `overrides` on top."""
        return PriceTable({**self._prices, **(overrides or {})})

    @classmethod
    def from_config(cls, table: Mapping[str, Any] | None) -> PriceTable:
        """`DEFAULT_PRICES` with the `model_prices` setting on top:

        [tether.model_prices]
        "gpt-4o-mini" = { input = 0.15, output = 0.60, cached_input = 0.075 }
        "llama-3.1-8b" = { input = 0.02, output = 0.05 }
        """
        prices = DEFAULT_PRICES.merged(None)
        for model, entry in (table or {}).items():
            if not isinstance(entry, Mapping):
                raise ConfigError(f"model_prices.{model}: expected a table of prices")
            unknown = set(entry) - {"input", "output", "cached_input", "cache_write"}
            if unknown or not {"input", "output"} <= set(entry):
                raise ConfigError(
                    f"model_prices.{model}: needs input and output (and optionally "
                    f"cached_input, cache_write), dollars per million tokens"
                )
            try:
                prices.set(model, **{k: float(v) for k, v in entry.items()})
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"model_prices.{model}: {exc}") from exc
        return prices


def _p(inp: float, out: float, cached: float | None = None, write: float | None = None) -> Any:
    return ModelPrice(inp, out, cached, write)


DEFAULT_PRICES = PriceTable(
    {
        # OpenAI, standard tier (cached input at the published discount).
        "gpt-4o": _p(2.50, 10.00, 1.25),
        "gpt-4o-mini": _p(0.15, 0.60, 0.075),
        "gpt-4.1": _p(2.00, 8.00, 0.50),
        "gpt-4.1-mini": _p(0.40, 1.60, 0.10),
        "gpt-4.1-nano": _p(0.10, 0.40, 0.025),
        "gpt-5": _p(1.25, 10.00, 0.125),
        "gpt-5-mini": _p(0.25, 2.00, 0.025),
        "gpt-5-nano": _p(0.05, 0.40, 0.005),
        "o3": _p(2.00, 8.00, 0.50),
        "o3-mini": _p(1.10, 4.40, 0.55),
        "o4-mini": _p(1.10, 4.40, 0.275),
        # Anthropic (cache reads at 0.1x input, five-minute cache writes at 1.25x).
        "claude-3-haiku": _p(0.25, 1.25, 0.03, 0.30),
        "claude-3-5-haiku": _p(0.80, 4.00, 0.08, 1.00),
        "claude-haiku-4-5": _p(1.00, 5.00, 0.10, 1.25),
        "claude-3-5-sonnet": _p(3.00, 15.00, 0.30, 3.75),
        "claude-3-7-sonnet": _p(3.00, 15.00, 0.30, 3.75),
        "claude-sonnet-4": _p(3.00, 15.00, 0.30, 3.75),
        "claude-sonnet-4-5": _p(3.00, 15.00, 0.30, 3.75),
        "claude-opus-4": _p(15.00, 75.00, 1.50, 18.75),
        "claude-opus-4-1": _p(15.00, 75.00, 1.50, 18.75),
        "claude-opus-4-5": _p(5.00, 25.00, 0.50, 6.25),
    }
)
"""List prices of common models (dollars per million tokens), as published in 2025.
Check them against your provider's page and override what differs."""
