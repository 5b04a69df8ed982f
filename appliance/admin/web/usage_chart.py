"""The usage page's chart, laid out on the server: tokens per day, prompt and completion
stacked. Only numbers and labels come out; the template draws them as inline SVG (no
script, nothing fetched)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from appliance.admin.services.usage import UsageSum

__all__ = ["Bar", "Chart", "lay_out"]

WIDTH = 720
HEIGHT = 220
_LEFT = 64  # room for the axis labels
_BOTTOM = 24
_TOP = 8


@dataclass(frozen=True)
class Bar:
    """One day's stacked bar: x and width, then each part's top and height (SVG units)."""

    day: str
    x: float
    width: float
    prompt_tokens: int
    completion_tokens: int
    prompt_y: float
    prompt_height: float
    completion_y: float
    completion_height: float
    label: bool


@dataclass(frozen=True)
class Chart:
    """The chart's size, bars and the value of its top gridline."""

    width: int
    height: int
    left: int
    baseline: float
    top: float
    maximum: int
    bars: list[Bar]

    @property
    def gridlines(self) -> list[tuple[float, int]]:
        """(y, value) of the gridlines: 0, half and the top."""
        span = self.baseline - self.top
        return [(self.baseline - span * f, round(self.maximum * f)) for f in (0.0, 0.5, 1.0)]


def lay_out(rows: Iterable[UsageSum]) -> Chart:
    """Bars for each day in ``rows`` (summed over identities and models), oldest first."""
    days: dict[str, tuple[int, int]] = {}
    for row in rows:
        prompt, completion = days.get(row.day, (0, 0))
        days[row.day] = (prompt + row.prompt_tokens, completion + row.completion_tokens)
    baseline = float(HEIGHT - _BOTTOM)
    span = baseline - _TOP
    maximum = _nice(max((p + c for p, c in days.values()), default=0))
    slot = (WIDTH - _LEFT) / max(len(days), 1)
    every = max(1, len(days) // 8)  # label at most about 8 days
    bars = []
    for index, (day, (prompt, completion)) in enumerate(sorted(days.items())):
        prompt_h = span * prompt / maximum
        completion_h = span * completion / maximum
        bars.append(
            Bar(
                day=day,
                x=_LEFT + index * slot + slot * 0.1,
                width=slot * 0.8,
                prompt_tokens=prompt,
                completion_tokens=completion,
                prompt_y=baseline - prompt_h,
                prompt_height=prompt_h,
                completion_y=baseline - prompt_h - completion_h,
                completion_height=completion_h,
                label=index % every == 0,
            )
        )
    return Chart(WIDTH, HEIGHT, _LEFT, baseline, float(_TOP), maximum, bars)


def _nice(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (at least 10)."""
    step = 10
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10
