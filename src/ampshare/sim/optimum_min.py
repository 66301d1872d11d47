"""A tighter offline bound: the optimum when every car is off or at least at its minimum.

The continuous optimum (``ampshare.sim.optimum``) lets the schedule trickle 2 A into a car;
real chargers cannot go below 6 A (8 A at Caltech's ClipperCreek pod, in 8 A steps). This
bound adds that rule as a mixed-integer problem: the planning LP of each busy stretch
(``core.planner.planning_lp``, circumscribed polygon, true departures and demands, energy as
the only objective) with a binary per car and step, solved by HiGHS (``scipy.optimize.milp``)
with a time limit and a relative gap. HiGHS's *dual bound* is the bound; the best schedule it
found is reported beside it, so the remaining MIP gap is visible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix

from ampshare.core.planner import Linearisation, LpMatrices, PlanInput, planning_lp
from ampshare.core.site import Site
from ampshare.core.snapshot import Session
from ampshare.errors import InputError
from ampshare.sim.data import SessionRecord
from ampshare.sim.optimum import _stretch_input, _stretches, assign_chargers
from ampshare.sim.series import TimeSeries

__all__ = ["MinCurrentBound", "offline_optimum_min"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class MinCurrentBound:
    """``offline_optimum_min``'s answer. ``bound_wh`` is what no schedule of its class can
    beat (HiGHS's dual bound, summed over stretches); ``incumbent_wh`` the best schedule found
    (equal to the bound, within the MIP gap, when every stretch solved). A stretch that ran out
    of time counts with its dual bound, so the bound holds anyway, only looser."""

    incumbent_wh: float
    bound_wh: float
    lp_bound_wh: float  # the same stretches without the minimum (the continuous optimum)
    requested_wh: float
    sessions: int
    stretches: int
    timed_out: int  # stretches that hit ``time_limit_s`` before the gap tolerance

    @property
    def mip_gap(self) -> float:
        """(bound - incumbent) / bound over the whole window."""
        return (self.bound_wh - self.incumbent_wh) / self.bound_wh if self.bound_wh > 0 else 0.0

    def metrics(self) -> dict[str, float | int | None]:
        return {
            "energy_requested_kwh": round(self.requested_wh / 1000, 3),
            "energy_delivered_kwh": round(self.incumbent_wh / 1000, 3),
            "energy_bound_kwh": round(self.bound_wh / 1000, 3),
            "energy_lp_bound_kwh": round(self.lp_bound_wh / 1000, 3),
            "mip_gap": round(self.mip_gap, 6),
            "sessions": self.sessions,
            "stretches": self.stretches,
            "timed_out": self.timed_out,
        }


def offline_optimum_min(
    site: Site,
    sessions: Sequence[SessionRecord],
    building_load: TimeSeries | None = None,
    step_s: float = 300.0,
    *,
    time_limit_s: float = 60.0,
    mip_rel_gap: float = 1e-3,
    start_loss: float = 0.1,
    pilot_steps: bool = False,
    vehicle_max_current_a: float | None = None,
    max_facet_deg: float = 10.0,
) -> MinCurrentBound:
    """Most energy deliverable to ``sessions`` when every car is either off or at least at its
    charger's minimum current (6 A; 8 A at the ClipperCreek pod), on the ``step_s`` grid.

    Same relaxations as ``offline_optimum`` otherwise (true departures and demands, the
    circumscribed polygon, continuous current above the minimum, no taper). Per car and step,
    the mean current is 0 or at least ``(1 - start_loss)`` x the minimum: a car switched on
    inside a step (sequencing, its reaction time) draws for less than the whole step. Besides,
    every car may take one step's worth of energy at its minimum outside that rule (the step
    in which it fills up and stops mid-step). The replay's other transient — a paused car
    draws for its reaction time (5 s) into the next step — is not covered; with no
    start/stops (the 150 kVA rows) it does not occur. ``pilot_steps``: a charger with
    ``allowed_currents_a`` (the CC pod's 8/16/24/32 A) holds one of them, its mean within
    ``start_loss`` of it (transients again), instead of any current from its minimum up.
    """
    if step_s <= 0 or not 0 <= start_loss < 1:
        raise InputError(
            f"offline optimum: need step > 0 and 0 <= start_loss < 1 (got {step_s}, {start_loss})"
        )
    charger_of = assign_chargers(site, sessions)
    keep = [i for i, c in enumerate(charger_of) if c is not None]
    groups = _stretches(sessions, keep)
    inc = bound = lp_bound = 0.0
    timed_out = 0
    for group in groups:
        recs = [(sessions[i], charger_of[i] or "") for i in group]
        inp = _stretch_input(
            site,
            recs,
            building_load,
            step_s,
            vehicle_max_a=vehicle_max_current_a,
            lin=Linearisation.CIRCUMSCRIBED,
            max_facet_deg=max_facet_deg,
        )
        got = _min_stretch(inp, start_loss, time_limit_s, mip_rel_gap, pilot_steps)
        inc, bound, lp_bound = inc + got[0], bound + got[1], lp_bound + got[2]
        timed_out += got[3]
    return MinCurrentBound(
        incumbent_wh=inc,
        bound_wh=bound,
        lp_bound_wh=lp_bound,
        requested_wh=float(sum(r.energy_wh for r in sessions)),
        sessions=len(sessions),
        stretches=len(groups),
        timed_out=timed_out,
    )


def _min_stretch(
    inp: PlanInput, start_loss: float, time_limit_s: float, gap: float, steps: bool
) -> tuple[float, float, float, int]:
    """(incumbent, bound, continuous bound) [Wh] and 1 if the time ran out, one stretch."""
    lp = planning_lp(inp)
    n0 = len(lp.c)
    c = np.zeros(n0)
    for cols, kwh in zip(lp.session_cols, lp.kwh_per_a, strict=True):
        c[cols] = -kwh  # energy only: cost and peak do not matter for the bound
    eq = [] if lp.a_eq is None else [LinearConstraint(lp.a_eq, lp.b_eq, lp.b_eq)]
    ub = [] if lp.a_ub is None else [LinearConstraint(lp.a_ub, -np.inf, lp.b_ub)]
    relaxed = milp(c, constraints=ub + eq, bounds=Bounds(lp.lower, lp.upper))
    lp_wh = -1000.0 * float(relaxed.fun) if relaxed.status == 0 else math.inf
    extra, lo, hi, integer = _min_rows(inp, lp, start_loss, steps)
    n = n0 + len(lo)
    pad = [LinearConstraint(_widen(k.A, n), k.lb, k.ub) for k in ub + eq]
    res = milp(
        np.r_[c, np.zeros(len(lo))],
        constraints=[*pad, extra],
        integrality=np.r_[np.zeros(n0), integer],
        bounds=Bounds(np.r_[lp.lower, lo], np.r_[lp.upper, hi]),
        options={"time_limit": time_limit_s, "mip_rel_gap": gap, "disp": False},
    )
    dual = getattr(res, "mip_dual_bound", None)
    bound_wh = -1000.0 * float(dual) if dual is not None and np.isfinite(dual) else lp_wh
    inc_wh = -1000.0 * float(res.fun) if res.x is not None else 0.0
    return inc_wh, min(bound_wh, lp_wh), lp_wh, int(res.status != 0)


def _widen(a: object, n: int) -> csr_matrix:
    m = csr_matrix(a)
    return csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], n))


@dataclass(slots=True)
class _Extra:
    """Rows and columns added to the planning LP, as COO triplets."""

    n0: int
    r: list[IntArray] = field(default_factory=list)
    c: list[IntArray] = field(default_factory=list)
    v: list[FloatArray] = field(default_factory=list)
    rhs: list[FloatArray] = field(default_factory=list)
    integer: list[FloatArray] = field(default_factory=list)
    n_rows: int = 0
    n_cols: int = 0

    def cols(self, k: int, integer: bool) -> IntArray:
        idx = self.n0 + self.n_cols + np.arange(k, dtype=np.int64)
        self.n_cols += k
        self.integer.append(np.full(k, 1.0 if integer else 0.0))
        return idx

    def rows(self, k: int, rhs: float) -> IntArray:
        idx = self.n_rows + np.arange(k, dtype=np.int64)
        self.n_rows += k
        self.rhs.append(np.full(k, rhs))
        return idx

    def put(self, rows: IntArray, cols: IntArray, vals: FloatArray | float) -> None:
        self.r.append(rows)
        self.c.append(cols)
        self.v.append(np.broadcast_to(np.asarray(vals, dtype=np.float64), rows.shape).copy())


def _levels(
    inp: PlanInput, s: Session, top_a: float, start_loss: float, steps: bool
) -> list[tuple[float, float]]:
    """(lowest, highest) mean current per step of each way a car can be on."""
    charger = inp.site.charger(s.charger_id)
    if steps and charger.allowed_currents_a:
        return [
            ((1 - start_loss) * a, min((1 + start_loss) * a, top_a))
            for a in sorted(charger.allowed_currents_a)
            if 0 < a <= top_a + 1e-9
        ]
    lo = min(charger.min_current_a, top_a)
    return [((1 - start_loss) * lo, top_a)] if lo > 0 else []


def _min_rows(
    inp: PlanInput, lp: LpMatrices, start_loss: float, steps: bool
) -> tuple[LinearConstraint, FloatArray, FloatArray, FloatArray]:
    """Rows and columns that make each session's current semi-continuous.

    Per session column x (slot t) and level (lo, hi) (``_levels``: one, or one per allowed
    pilot with ``steps``) a binary b, at most one of them on, and a slack f >= 0:
    x <= sum hi * b + f, x >= sum lo * b, and the slack's energy over the stay <= one full
    step at the lowest level. Returns the rows (over old and new columns) and the new
    columns' lower and upper bounds and integrality."""
    e = _Extra(n0=len(lp.c))
    for s, cols, kwh in zip(inp.sessions, lp.session_cols, lp.kwh_per_a, strict=True):
        k = len(cols)
        top = float(np.max(lp.upper[cols], initial=0.0))
        levels = _levels(inp, s, top, start_loss, steps) if k else []
        if not levels:
            continue
        f = e.cols(k, integer=False)
        below, above = e.rows(k, 0.0), e.rows(k, 0.0)
        e.put(below, cols, 1.0)
        e.put(below, f, -1.0)
        e.put(above, cols, -1.0)
        one = e.rows(k, 1.0) if len(levels) > 1 else None
        for lo, hi in levels:
            b = e.cols(k, integer=True)
            e.put(below, b, -hi)
            e.put(above, b, lo)
            if one is not None:
                e.put(one, b, 1.0)
        nominal = levels[0][0] / (1 - start_loss)  # the charger's lowest current
        e.put(e.rows(1, nominal * float(np.max(kwh))).repeat(k), f, kwh)
    n = e.n0 + e.n_cols
    if not e.n_rows:
        return LinearConstraint(csr_matrix((0, n)), -np.inf, np.zeros(0)), *(np.zeros(0),) * 3
    a = csr_matrix(
        (np.concatenate(e.v), (np.concatenate(e.r), np.concatenate(e.c))), shape=(e.n_rows, n)
    )
    integer = np.concatenate(e.integer)
    upper = np.where(integer > 0, 1.0, np.inf)
    return LinearConstraint(a, -np.inf, np.concatenate(e.rhs)), np.zeros(e.n_cols), upper, integer
