"""The demand peak already set in a billing period, as the utility meters it: the highest
average of site import over a demand window (15 minutes, aligned to the epoch as
``core.tariff`` averages them). Pure: samples and times come in; the billing period of a time
is injected (``Tariff.billing_periods``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ampshare.core.tariff import Tariff

__all__ = ["PeakSoFar", "peak_so_far"]


def peak_so_far(tariff: Tariff | None) -> PeakSoFar:
    """A ``PeakSoFar`` on ``tariff``'s billing periods and demand window (without a tariff:
    one period, 15-minute windows)."""
    if tariff is None:
        return PeakSoFar(billing_period=lambda _t: 0)
    return PeakSoFar(
        billing_period=lambda t: int(tariff.billing_periods([t])[0]),
        window_s=tariff.peak_window_s,
    )


@dataclass(slots=True)
class PeakSoFar:
    """The highest ``window_s`` average of site import [kW] in the current billing period,
    from one sample per control step (each held until the next; windows aligned to the
    epoch, as ``Tariff`` averages them). ``billing_period`` maps a time to its period."""

    billing_period: Callable[[float], int]
    window_s: float = 900.0
    peak_kw: float = 0.0
    _period: int | None = None
    _window: int | None = None
    _kws: float = 0.0  # kW x s integrated in the current window
    _last: tuple[float, float] | None = None  # (t_s, kW) of the last sample

    def observe(self, now_s: float, import_kw: float) -> None:
        """A sample, held until the next one (the live loop: one per control step)."""
        if self._last is not None and now_s > self._last[0]:
            self.add(self._last[0], now_s, self._last[1])
        self._last = (now_s, import_kw)

    def add(self, t0: float, t1: float, kw: float) -> None:
        """``kw`` imported on average over [t0, t1) (the replay: energy between two calls)."""
        while t0 < t1:
            win = math.floor(t0 / self.window_s)
            if win != self._window:
                self._close(win, t0)
            end = min(t1, (win + 1) * self.window_s)
            self._kws += kw * (end - t0)
            t0 = end

    def seed(self, windows: Iterable[tuple[float, float]], now_s: float) -> None:
        """Start from stored history: ``(window start, average kW)`` of past demand windows.
        Only windows that ended by ``now_s`` in ``now_s``'s billing period count."""
        self._period = self.billing_period(now_s)
        for start_s, kw in windows:
            if start_s + self.window_s <= now_s and self.billing_period(start_s) == self._period:
                self.peak_kw = max(self.peak_kw, kw)

    def _close(self, win: int, t0: float) -> None:
        """Count the finished window (a partly seen one averages in zeros, as a meter would
        record none) and start window ``win``, in a new billing period if ``t0`` is in one."""
        if self._window is not None:
            self.peak_kw = max(self.peak_kw, self._kws / self.window_s)
        period = self.billing_period(t0)
        if period != self._period:
            self._period, self.peak_kw = period, 0.0
        self._window, self._kws = win, 0.0
