"""What each charger can be told this cycle: its effective minimum and maximum on its own grid
(0.1 A, whole amperes, whole watts, or a finite set of pilot values) and why the maximum is
what it is. Built with array operations: this runs for every charger on every cycle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ampshare.core._compiled import CompiledSite, freeze, last_read
from ampshare.core._rows import argmin_of, row_max, row_min
from ampshare.core._sessions import SessionFacts
from ampshare.core.allocation import AllocationInput, ReasonKind

__all__ = ["Grid", "make_grid"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

EPS = 1e-9
MAX_KINDS = (
    ReasonKind.CHARGER_MAX,
    ReasonKind.VEHICLE_MAX,
    ReasonKind.CONTROLLER_CAP,
    ReasonKind.CHARGER_MAX,  # the charger's power limit
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Grid:
    """Per charger (n,): ``lo``/``hi`` effective min and max [A per phase] for the phase
    choice ``one_phase``; ``candidate`` wants current and may get it; ``forced`` cannot be
    paused; ``cap_paused`` paused by a controller cap below its minimum; ``max_kind`` index
    into ``MAX_KINDS``; ``switchable`` may be moved to one phase."""

    cs: CompiledSite
    lo: F64
    hi: F64
    hi_by_phase: tuple[F64, F64]  # (three-phase, one-phase)
    kind_by_phase: tuple[I64, I64]
    volt: F64
    res: F64
    is_w: B
    candidate: B
    forced: B
    cap_paused: B
    has_session: B
    fixed: B
    one_phase: B
    switchable: B

    def volt_for(self, one_phase: B) -> F64:
        return np.asarray(np.where(one_phase, self.cs.volt1, self.cs.volt3), dtype=np.float64)

    def hi_for(self, one_phase: B) -> F64:
        return np.asarray(np.where(one_phase, *self.hi_by_phase[::-1]), dtype=np.float64)

    def kind_for(self, one_phase: B) -> I64:
        return np.asarray(np.where(one_phase, *self.kind_by_phase[::-1]), dtype=np.int64)

    def step_for(self, one_phase: B) -> F64:
        """Each charger's grid step in A per phase (a watt charger's 1 W in A)."""
        _, ((_, step3), (_, step1)) = _site_parts(self.cs)
        return np.asarray(np.where(one_phase, step1, step3), dtype=np.float64)

    def down(self, x: F64, one_phase: B, step: F64 | None = None) -> F64:
        """Largest value each charger accepts that is <= x (0 stays 0); ``step``:
        ``step_for(one_phase)`` if the caller has it."""
        step = self.step_for(one_phase) if step is None else step
        out = np.floor(x / step + EPS) * step
        out = np.where(x > 0, np.maximum(out, 0.0), 0.0)
        st = self.cs.static
        if len(st.pilot_at):
            out[st.pilot_at] = _pilot_down(st.pilot_sets, x[st.pilot_at])
        return np.asarray(out, dtype=np.float64)

    def next_up(self, x: F64, one_phase: B, step: F64 | None = None) -> F64:
        """The next value above ``x`` each charger accepts (inf: none)."""
        step = self.step_for(one_phase) if step is None else step
        out = (np.floor(x / step + EPS) + 1.0) * step
        st = self.cs.static
        if len(st.pilot_at):
            sets = st.pilot_sets
            above = sets > x[st.pilot_at][:, None] + EPS  # NaN padding: never
            out[st.pilot_at] = row_min(np.where(above, sets, np.inf))
        return np.asarray(out, dtype=np.float64)

    def step_down(self, i: int, x: float, one_phase: bool) -> float:
        """The next value below ``x`` charger ``i`` accepts; below its minimum that is 0."""
        allowed = self.cs.site.chargers[i].allowed_currents_a
        if allowed:
            lower = [a for a in allowed if a < x - EPS]
            val = max(lower) if lower else 0.0
        else:
            volt = self.cs.volt1[i] if one_phase else self.cs.volt3[i]
            step = 1.0 / max(volt, EPS) if self.is_w[i] else float(self.res[i])
            val = float(np.floor(x / step + EPS) * step) - step
        return val if val >= self.lo[i] - EPS else 0.0



def _up(x: F64, step: F64) -> F64:
    return np.asarray(np.ceil(x / step - EPS) * step, dtype=np.float64)


def _dn(x: F64, step: F64) -> F64:
    return np.asarray(np.floor(x / step + EPS) * step, dtype=np.float64)


def make_grid(cs: CompiledSite, inp: AllocationInput, facts: SessionFacts) -> Grid:
    n = len(cs.charger_ids)
    has = facts.has
    fixed = np.zeros(n, dtype=np.bool_)
    for fl in inp.fixed_loads:
        if fl.charger_id in cs.charger_index:
            fixed[cs.charger_index[fl.charger_id]] = True
    st = cs.static
    res, is_w, cmax = st.res_a, st.is_w, st.max_a
    lo, by_volt = _site_parts(cs)
    vmax = facts.vehicle_max_a
    cap = np.full(n, np.inf)
    for cid, val in inp.caps_a.items():
        if cid in cs.charger_index:
            cap[cs.charger_index[cid]] = val
    is3 = st.three_phase
    one = is3 & facts.one_phase_car
    switch = is3 & ~one & st.can_switch
    his, kinds = [], []
    car = np.maximum(vmax, lo)
    for power_a, step_a in by_volt:
        bounds = [cmax, car, cap, power_a]
        kind = argmin_of(bounds, n)  # in MAX_KINDS order
        least = np.minimum(np.minimum(cmax, car), np.minimum(cap, power_a))
        his.append(_snap(cs, _dn(least, step_a)))
        kinds.append(kind)
    forced = has & ~fixed & ~st.zero_pauses
    hi_now = np.where(one, his[1], his[0])
    cap_paused = has & ~fixed & ~forced & (cap < lo - EPS)
    candidate = has & ~fixed & ~cap_paused & np.isfinite(lo) & (hi_now >= lo - EPS)
    forced &= np.isfinite(lo)
    his = [np.where(forced, np.maximum(h, lo), h) for h in his]
    return Grid(
        cs=cs,
        lo=lo,
        hi=np.where(one, his[1], his[0]),
        hi_by_phase=(his[0], his[1]),
        kind_by_phase=(kinds[0], kinds[1]),
        volt=np.where(one, cs.volt1, cs.volt3),
        res=res,
        is_w=is_w,
        candidate=candidate | forced,
        forced=forced,
        cap_paused=cap_paused,
        has_session=has,
        fixed=fixed,
        one_phase=one,
        switchable=switch,
    )


_Parts = tuple[F64, tuple[tuple[F64, F64], tuple[F64, F64]]]


def _site_parts(cs: CompiledSite) -> _Parts:
    """What of the grid depends on the site alone (kept per site): each charger's minimum on
    its grid, and for three and one phase its power limit in A and its grid step."""
    return last_read(cs, "grid", cs.static, lambda: _make_site_parts(cs))


def _make_site_parts(cs: CompiledSite) -> _Parts:
    st = cs.static
    lo = _up(st.min_a, np.where(st.is_w, 1e-3, st.res_a))
    if len(st.pilot_at):
        sets = st.pilot_sets
        above = sets >= st.min_a[st.pilot_at][:, None] - EPS  # NaN padding: never
        lo[st.pilot_at] = row_min(np.where(above, sets, np.inf))
    parts = []
    for volt in (cs.volt3, cs.volt1):
        power_a = st.max_power_w / np.maximum(volt, EPS)
        step_a = np.where(st.is_w, 1.0 / np.maximum(volt, EPS), st.res_a)
        freeze(power_a, step_a)
        parts.append((power_a, step_a))
    freeze(lo)
    return lo, (parts[0], parts[1])


def _snap(cs: CompiledSite, hi: F64) -> F64:
    """Snap maxima of chargers with a finite pilot set down onto that set."""
    st = cs.static
    if not len(st.pilot_at):
        return hi
    out = hi.copy()
    out[st.pilot_at] = _pilot_down(st.pilot_sets, hi[st.pilot_at])
    return out


def _pilot_down(sets: F64, x: F64) -> F64:
    """Per pilot-set charger, the largest current of its set at or below ``x`` (0: none)."""
    ok = sets <= x[:, None] + EPS  # NaN padding: never
    best = row_max(np.where(ok, sets, -np.inf))
    return np.asarray(np.where(best == -np.inf, 0.0, best), dtype=np.float64)
