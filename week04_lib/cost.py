"""What a call costs: tokens times the model's price per million tokens.

Taught in notebook 04, section 4.1. Prices live in ``week04_lib/data/pricing.csv`` (one
row per model, with its source and as-of date: prices change, check the source). The
table is package data, read with ``importlib.resources``, so an installed wheel finds it
as a checkout does; ``Pricing.load(path)`` reads another table. A dated model
name such as ``gpt-4o-mini-2024-07-18`` is priced by its longest listed prefix. An
unknown model costs ``None`` and one warning per model, never a crash.
"""

from __future__ import annotations

import csv
import io
import os
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["PRICING_CSV", "Price", "Pricing", "cost_usd"]

# the packaged table: a pathlib.Path for a checkout or a normal install, but only a
# Traversable (read_text, open, name) is promised, e.g. for a package imported from a zip
PRICING_CSV: Traversable = resources.files("week04_lib").joinpath("data").joinpath("pricing.csv")


@dataclass(frozen=True)
class Price:
    model: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    source: str
    as_of: str

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok) / 1e6


class Pricing:
    def __init__(self, prices: Mapping[str, Price]) -> None:
        self.prices = dict(prices)
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | Traversable = PRICING_CSV) -> Pricing:
        """The packaged table, or the CSV file at ``path`` (same columns)."""
        source = Path(path) if isinstance(path, (str, os.PathLike)) else path
        text = source.read_text(encoding="utf-8")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        prices = {}
        for row in rows:
            try:
                price = Price(
                    row["model"].strip(),
                    float(row["input_usd_per_mtok"]),
                    float(row["output_usd_per_mtok"]),
                    row["source"],
                    row["as_of"],
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}: bad pricing row {row!r}: {exc}") from None
            prices[price.model] = price
        return cls(prices)

    def price(self, model: str) -> Price | None:
        """The listed model, else the longest listed prefix of a dated name."""
        if model in self.prices:
            return self.prices[model]
        prefixes = [m for m in self.prices if model.startswith(m + "-")]
        return self.prices[max(prefixes, key=len)] if prefixes else None

    def cost_usd(self, model: str, usage: Any) -> float | None:
        """Cost of one call; ``usage`` has prompt_tokens and completion_tokens (an object
        or a dict). None, with one warning per model, when the model has no price; None
        too when the server sent no usable token counts (``usage.known`` is False)."""
        if getattr(usage, "known", True) is False:
            return None
        price = self.price(model)
        if price is None:
            with self._lock:
                first = model not in self._warned
                self._warned.add(model)
            if first:
                warnings.warn(
                    f"no price for model {model!r}; add it to {PRICING_CSV.name} to track its cost", stacklevel=2
                )
            return None
        get = usage.get if isinstance(usage, Mapping) else lambda name, default: getattr(usage, name, default)
        return price.cost(int(get("prompt_tokens", 0) or 0), int(get("completion_tokens", 0) or 0))


_default: Pricing | None = None


def cost_usd(model: str, usage: Any) -> float | None:
    """``Pricing.cost_usd`` with the packaged table (loaded once)."""
    global _default
    if _default is None:
        _default = Pricing.load()
    return _default.cost_usd(model, usage)
