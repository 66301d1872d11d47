"""Time series on epoch seconds: building load, PV, prices — sampled onto the simulator's grid.

A ``TimeSeries`` holds interval-start stamps and one value per interval (or three, per line).
Data files state the *mean* over each interval (Cambridge hourly kWh = mean kW, BDEW 15-min
mean kW), so the value holds from its stamp until the next one: sampling is a zero-order hold,
which is what a meter averaging over that interval would have shown. Before the first stamp
the first value holds; after the last, the last — the loaders warn about coverage instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ampshare.errors import InputError

__all__ = ["TimeSeries"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeSeries:
    """Interval-start stamps ``t_s`` (sorted, seconds since epoch) and ``values``.

    ``values`` has shape (n,) for a scalar quantity or (n, 3) for per-line values (L1..L3).
    ``unit`` names what the values are (``kW``, ``A``, ``price/kWh``); ``source`` is where they
    came from, for error messages and reports.
    """

    t_s: FloatArray
    values: FloatArray
    unit: str
    source: str = ""

    def __post_init__(self) -> None:
        if self.t_s.ndim != 1 or len(self.t_s) == 0:
            raise InputError(f"{self.source or 'time series'}: no samples")
        if self.values.shape[0] != self.t_s.shape[0]:
            raise InputError(f"{self.source}: {len(self.t_s)} stamps but {len(self.values)} values")
        if np.any(np.diff(self.t_s) <= 0):
            raise InputError(f"{self.source}: time stamps must be strictly increasing")

    @property
    def per_line(self) -> bool:
        return self.values.ndim == 2

    @property
    def start_s(self) -> float:
        return float(self.t_s[0])

    @property
    def end_s(self) -> float:
        """End of the last interval (its stamp plus the typical interval)."""
        step = float(np.median(np.diff(self.t_s))) if len(self.t_s) > 1 else 0.0
        return float(self.t_s[-1]) + step

    def at(self, t_s: FloatArray) -> FloatArray:
        """Values in force at each time of ``t_s`` (zero-order hold)."""
        idx = np.searchsorted(self.t_s, t_s, side="right") - 1
        idx = np.clip(idx, 0, len(self.t_s) - 1)
        return self.values[idx]

    def max_between(self, start_s: float, end_s: float) -> FloatArray:
        """Largest value in force anywhere in [start_s, end_s) (per line if per-line)."""
        i0 = max(int(np.searchsorted(self.t_s, start_s, side="right")) - 1, 0)
        i1 = max(int(np.searchsorted(self.t_s, end_s, side="left")), i0 + 1)
        return np.asarray(self.values[i0:i1].max(axis=0), dtype=np.float64)

    def scaled(self, factor: float, unit: str | None = None) -> TimeSeries:
        return TimeSeries(
            t_s=self.t_s, values=self.values * factor, unit=unit or self.unit, source=self.source
        )

    def shifted(self, dt_s: float) -> TimeSeries:
        """The same series moved in time by ``dt_s`` (to replay one year's profile in another)."""
        return TimeSeries(
            t_s=self.t_s + dt_s, values=self.values, unit=self.unit, source=self.source
        )
