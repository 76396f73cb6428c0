"""Latency figures of the benches: n, p50, p99 and max in milliseconds, nearest rank."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar


def percentile(values: list[float], p: float) -> float:
    """Nearest rank on sorted values."""
    if not values:
        return math.nan
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


@dataclass
class Stats:
    n: int
    p50: float
    p99: float
    max: float
    label_width: ClassVar[int] = 44  # a bench with longer row labels subclasses with its own

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Stats:
        ms = sorted(s * 1000 for s in seconds)
        return cls(len(ms), percentile(ms, 50), percentile(ms, 99), ms[-1] if ms else math.nan)

    @classmethod
    def header(cls, title: str = "latency (ms)") -> str:
        """The column heads over `row`s, in their widths."""
        return f"  {title:<{cls.label_width}} {'n':>7} {'p50':>9} {'p99':>9} {'max':>9}"

    def row(self, label: str) -> str:
        figures = f"{self.n:>7,} {self.p50:>9.2f} {self.p99:>9.2f} {self.max:>9.2f}"
        return f"  {label:<{self.label_width}} {figures}"

    def as_dict(self) -> dict[str, float | int | None]:
        def r(v: float) -> float | None:
            return None if math.isnan(v) else round(v, 3)
        return {"n": self.n, "p50_ms": r(self.p50), "p99_ms": r(self.p99), "max_ms": r(self.max)}
