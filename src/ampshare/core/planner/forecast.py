"""Forecast a load profile from its own history: the same time on recent weeks (or days), a
safety quantile across them; and PV output from a year's profile. Pure numpy over arrays; the
caller brings the history and the profile."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ampshare.errors import InputError

__all__ = ["PvProfile", "forecast_profile"]

FloatArray = npt.NDArray[np.float64]
WEEK_S = 7 * 86400.0
_MAX_GAPS = 30  # history read at most 31 times per slot and lookback
YEAR_S = 365 * 86400.0


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class PvProfile:
    """PV output per kWp over a year in steps of ``step_s`` from ``start_s`` (e.g. a clear-sky
    profile, ``shared/data/solar_pv``), for an array of ``kwp``. Any time maps to the same
    time of year in the profile, so that a 2019 profile forecasts 2026 (a leap day shifts it
    by a day, which a clear sky does not notice)."""

    start_s: float
    step_s: float
    kw_per_kwp: FloatArray
    kwp: float

    def power_w(self, t_s: npt.ArrayLike) -> FloatArray:
        """Output in W at each time (the step covering its time of year)."""
        t = np.asarray(t_s, dtype=np.float64)
        n = len(self.kw_per_kwp)
        idx = np.floor(np.mod(t - self.start_s, YEAR_S) / self.step_s).astype(np.int64) % n
        return np.asarray(self.kw_per_kwp[idx] * self.kwp * 1000.0, dtype=np.float64)


def _at(hist_t: FloatArray, hist_v: FloatArray, t: FloatArray, max_gap_s: float) -> FloatArray:
    """History value at each ``t`` (the sample covering it), NaN where history has no sample
    within ``max_gap_s``; works column-wise for (n, m) values."""
    idx = np.searchsorted(hist_t, t, side="right") - 1
    ok = (idx >= 0) & (t - hist_t[np.clip(idx, 0, None)] <= max_gap_s)
    out = hist_v[np.clip(idx, 0, None)].astype(np.float64, copy=True)
    out[~ok] = np.nan
    return out


def forecast_profile(
    history_t_s: npt.ArrayLike,
    history_values: npt.ArrayLike,
    *,
    start_s: float,
    slot_s: float,
    n_slots: int,
    period_s: float = WEEK_S,
    lookbacks: int = 4,
    quantile: float = 0.9,
    fallback: float | FloatArray | None = None,
) -> FloatArray:
    """Forecast per slot (shape (n_slots,) or (n_slots, m) like ``history_values``).

    For each slot, the history at the same offset ``1..lookbacks`` periods back (a week: same
    weekday and time) is sampled from the slot's start to its end, at least once per history
    sample it overlaps; the ``quantile`` of these is the forecast (0.9: pessimistic, as
    headroom must be). Slots with no history get
    ``fallback`` (default: the history's maximum — unknown means pessimistic).
    """
    t = np.asarray(history_t_s, dtype=np.float64)
    v = np.asarray(history_values, dtype=np.float64)
    if t.ndim != 1 or v.shape[:1] != t.shape or t.size == 0:
        raise InputError("forecast: history times and values must be non-empty and aligned")
    if np.any(np.diff(t) < 0):
        raise InputError("forecast: history times must be sorted")
    if not 0.0 <= quantile <= 1.0:
        raise InputError(f"forecast: quantile must be within [0, 1] (got {quantile})")
    step = float(np.median(np.diff(t))) if t.size > 1 else slot_s
    offsets = _sample_offsets(slot_s, step)
    sub = len(offsets)
    slots = start_s + slot_s * np.arange(n_slots)
    back = period_s * np.arange(1, lookbacks + 1)
    query = slots[:, None, None] - back[None, :, None] + offsets[None, None, :]
    got = _at(t, v, query.ravel(), max_gap_s=1.5 * step)
    got = got.reshape((n_slots, lookbacks * sub, *v.shape[1:]))
    empty = np.all(np.isnan(got), axis=1)
    out = _nan_quantile(got, quantile)
    fill = np.nanmax(v, axis=0) if fallback is None else np.asarray(fallback, dtype=np.float64)
    return np.where(empty, fill, out).astype(np.float64)


def _sample_offsets(slot_s: float, step_s: float) -> FloatArray:
    """Where in a slot the history is read: its first and last instant and evenly between,
    at most a history step apart, so every history sample whose interval overlaps the slot is
    read at least once (up to 31 points). The plan's slots start when it is made, not on the
    history's grid: a slot 20:52-21:07 over a 15-minute history that steps down at 21:00 is
    forecast at the higher value, which the slot's first eight minutes will carry."""
    gaps = max(1, min(_MAX_GAPS, int(np.ceil(slot_s / step_s))))
    last = slot_s * (1.0 - 1e-9)  # the slot's last instant, not the next slot's first
    return np.asarray(np.linspace(0.0, last, gaps + 1), dtype=np.float64)


def _nan_quantile(got: FloatArray, q: float) -> FloatArray:
    """Quantile over axis 1 ignoring NaNs, rounding up to an observed value (pessimistic);
    all-NaN slices give NaN (the caller replaces them)."""
    srt = np.sort(got, axis=1)  # NaNs sort last
    count = np.sum(~np.isnan(got), axis=1)
    k = np.clip(np.ceil(q * (count - 1)).astype(np.int64), 0, None)
    picked = np.take_along_axis(srt, np.expand_dims(k, 1), axis=1)
    return np.squeeze(picked, axis=1)
