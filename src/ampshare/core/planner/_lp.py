"""The planning LP: sparse rows built per slot, solved by HiGHS (``scipy.optimize.linprog``).

Columns: each session's current in each slot it may charge [A]; per node, per charger class
(same per-ampere phasor and watts per ampere) and slot the aggregate current below that node
[A] — so capacity rows touch a handful of aggregates instead of every session; battery charge
and discharge [kW] and state of charge [kWh]; grid import per slot [kW]; the demand peak [kW].

Objective (minimised), lexicographic by weight: -(priority- and stay-probability-weighted
energy) * M + demand
charge * peak + price * import + a small self-consumption weight * import + tie-breakers
(charge earlier, do not cycle the battery). M is chosen so that one more kWh is always worth
more than the most it could add to demand charge and energy cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from ampshare.core.electrical import line_phasors, primary_matrix
from ampshare.core.planner._polygon import facets
from ampshare.core.planner._sessions import LpSession
from ampshare.core.planner._types import EnergyPriority, Linearisation, PlanInput, Prefer
from ampshare.core.site import CircuitNode

__all__ = ["LpMatrices", "LpResult", "build", "build_and_solve"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
PV_WEIGHT_PER_KWH = 2e-3  # below any real price step: self-consumption only breaks ties
EARLY_WEIGHT_PER_KWH = 3e-4  # among equal plans, earliest departure first (see _objective)
CYCLE_WEIGHT_PER_KWH = 1e-4  # no simultaneous charge and discharge of the battery
RESERVE_PREMIUM_PER_KWH = 0.01  # stored energy above any price, with a demand charge
# Prefer.READY: a kWh is worth up to this share more to a car that needs at most READY_KWH
# more (the more it needs, the less). Small enough to act as a tie-break, and as large as
# needed: 10x more changed nothing on Caltech fall 2019.
READY_BONUS = 0.002
READY_KWH = 5.0


@dataclass(slots=True)
class _Rows:
    """COO triplets and right-hand sides of one block (inequalities or equalities)."""

    r: list[IntArray] = field(default_factory=list)
    c: list[IntArray] = field(default_factory=list)
    v: list[FloatArray] = field(default_factory=list)
    rhs: list[FloatArray] = field(default_factory=list)
    n: int = 0

    def add(self, n_rows: int, rhs: FloatArray) -> int:
        """Reserve ``n_rows`` rows; returns the first row index."""
        first = self.n
        self.n += n_rows
        self.rhs.append(np.broadcast_to(np.asarray(rhs, dtype=np.float64), (n_rows,)).copy())
        return first

    def put(self, rows: IntArray, cols: IntArray, vals: FloatArray | float) -> None:
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        self.r.append(rows.ravel())
        self.c.append(cols.ravel())
        self.v.append(np.broadcast_to(np.asarray(vals, np.float64), rows.shape).ravel().copy())

    def matrix(self, n_cols: int) -> tuple[coo_matrix | None, FloatArray | None]:
        if self.n == 0:
            return None, None
        data = (np.concatenate(self.v), (np.concatenate(self.r), np.concatenate(self.c)))
        return coo_matrix(data, shape=(self.n, n_cols)), np.concatenate(self.rhs)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class LpResult:
    """Raw solution: ``current_a[i]`` per slot for session i, grid and battery per slot."""

    status: int
    message: str
    current_a: FloatArray  # (n_sessions, n_slots)
    grid_kw: FloatArray
    battery_kw: FloatArray
    peak_kw: float


class _Model:
    """Column layout and row generation for one ``PlanInput``."""

    def __init__(self, inp: PlanInput, sessions: list[LpSession]) -> None:
        self.inp, self.sessions, self.T = inp, sessions, inp.n_slots
        self.h = inp.slot_s / 3600.0
        self.ub, self.eq = _Rows(), _Rows()
        self.lb: list[FloatArray] = []
        self.hi: list[FloatArray] = []
        self.cost: list[FloatArray] = []
        self.n = 0
        self._classes()
        self.s_col = [self._cols(len(s.slots), 0.0, s.max_a) for s in sessions]
        self.y_col = {key: self._cols(self.T, 0.0, math.inf) for key in self._node_classes()}
        self.bat = inp.battery
        if self.bat is not None:
            self.bc = self._cols(self.T, 0.0, self.bat.max_charge_w / 1000)
            self.bd = self._cols(self.T, 0.0, self.bat.max_discharge_w / 1000)
            top = self.bat.capacity_wh if self.bat.max_soc_wh is None else self.bat.max_soc_wh
            self.soc = self._cols(self.T, self.bat.min_soc_wh / 1000, top / 1000)
        self.grid = self._cols(self.T, 0.0, math.inf)
        self.peak = self._cols(1, inp.peak_so_far_kw, math.inf)

    def _cols(self, k: int, lo: float, hi: float) -> IntArray:
        idx = np.arange(self.n, self.n + k, dtype=np.int64)
        self.n += k
        self.lb.append(np.full(k, lo))
        self.hi.append(np.full(k, hi))
        self.cost.append(np.zeros(k))
        return idx

    def _classes(self) -> None:
        """Group sessions by (phasor, watts per ampere); record which classes sit below which
        node."""
        keys: dict[tuple[float, ...], int] = {}
        self.cls_of: list[int] = []
        self.cls_phasor: list[npt.NDArray[np.complex128]] = []
        self.cls_wpa: list[float] = []
        for s in self.sessions:
            key = (
                *np.round(s.phasor.real, 9),
                *np.round(s.phasor.imag, 9),
                round(s.watts_per_a, 6),
            )
            if key not in keys:
                keys[key] = len(keys)
                self.cls_phasor.append(s.phasor)
                self.cls_wpa.append(s.watts_per_a)
            self.cls_of.append(keys[key])
        site = self.inp.site
        self.below: dict[str, set[int]] = {n.id: set() for n in site.nodes}
        for s, k in zip(self.sessions, self.cls_of, strict=True):
            for nid in site.ancestors(s.node_id):
                self.below[nid].add(k)

    def _node_classes(self) -> list[tuple[str, int]]:
        return [(n.id, k) for n in self.inp.site.nodes for k in sorted(self.below[n.id])]


def _aggregation(m: _Model) -> None:
    """y[n, k, t] = sum of children's y[., k, t] + currents of class-k sessions at node n."""
    site = m.inp.site
    first = {key: m.eq.add(m.T, np.zeros(m.T)) for key in m.y_col}
    for (nid, k), cols in m.y_col.items():
        m.eq.put(first[(nid, k)] + np.arange(m.T), cols, 1.0)
        for child in site.children(nid):
            if (child.id, k) in m.y_col:
                m.eq.put(first[(nid, k)] + np.arange(m.T), m.y_col[(child.id, k)], -1.0)
    for s, k, cols in zip(m.sessions, m.cls_of, m.s_col, strict=True):
        m.eq.put(first[(s.node_id, k)] + s.slots, cols, -1.0)


def _building_a(m: _Model, node_id: str) -> FloatArray:
    b = m.inp.forecast.building_line_a.get(node_id)
    if b is None:
        return np.zeros((m.T, 3))
    return np.asarray(b, dtype=np.float64).reshape(m.T, 3)


def _phasor_rows(
    m: _Model, node: CircuitNode, coef: list[tuple[IntArray, complex]], limit_a: FloatArray
) -> None:
    """Polygon rows for ``|sum coef * column| <= limit_a[t]`` in every slot."""
    conservative = m.inp.linearisation is Linearisation.INSCRIBED
    for theta, scale in facets(
        [c for _, c in coef], conservative=conservative, max_facet_deg=m.inp.max_facet_deg
    ):
        rot = complex(math.cos(theta), -math.sin(theta))
        proj = [(cols, (c * rot).real) for cols, c in coef]
        if all(p <= 1e-12 for _, p in proj):
            continue  # a non-negative sum can never push this facet
        first = m.ub.add(m.T, scale * np.maximum(limit_a, 0.0))
        for cols, p in proj:
            if abs(p) > 1e-12:
                m.ub.put(first + np.arange(m.T), cols, p)


def _node_lines(m: _Model, node: CircuitNode) -> None:
    classes = sorted(m.below[node.id])
    bat = _battery_phasor(m) if (m.bat is not None and node.parent_id is None) else None
    build = _building_a(m, node.id)
    for line in range(3):
        limit = node.line_limit_a[line]
        if not math.isfinite(limit):
            continue
        coef = [(m.y_col[(node.id, k)], complex(m.cls_phasor[k][line])) for k in classes]
        if bat is not None:
            coef.append((m.bc, complex(bat[line])))
        _phasor_rows(m, node, coef, limit - node.margin_a - build[:, line])
    if node.primary is None:
        return
    pm = primary_matrix(node.primary)
    for line in range(3):
        coef = [(m.y_col[(node.id, k)], complex((pm @ m.cls_phasor[k])[line])) for k in classes]
        if bat is not None:
            coef.append((m.bc, complex((pm @ bat)[line])))
        other = build @ np.abs(pm[line])  # unknown phase: count magnitudes (pessimistic)
        _phasor_rows(m, node, coef, node.primary.line_limit_a - node.margin_a - other)


def _battery_phasor(m: _Model) -> npt.NDArray[np.complex128]:
    """Per-kW line currents of a balanced battery load at the root."""
    v = line_phasors(m.inp.site)
    n_lines = int(np.count_nonzero(v))
    return v * 1000.0 / (n_lines * m.inp.site.voltage.line_to_neutral_v)


def _node_power_rows(m: _Model, node: CircuitNode) -> None:
    """Total power and sum-of-lines limits (both counted pessimistically)."""
    classes = sorted(m.below[node.id])
    build = _building_a(m, node.id)
    is_root = node.parent_id is None
    if node.max_power_w is not None:
        other_w = m.inp.site.voltage.line_to_neutral_v * build.sum(axis=1)
        if is_root and m.inp.forecast.building_power_w is not None:
            other_w = np.asarray(m.inp.forecast.building_power_w, dtype=np.float64)
        _sum_row(
            m, node, [m.cls_wpa[k] / 1000 for k in classes], (node.max_power_w - other_w) / 1000
        )
    if node.max_line_sum_a is not None:
        _sum_row(
            m,
            node,
            [float(np.abs(m.cls_phasor[k]).sum()) for k in classes],
            node.max_line_sum_a - build.sum(axis=1),
            with_battery=False,
        )


def _sum_row(
    m: _Model, node: CircuitNode, per_class: list[float], rhs: FloatArray, with_battery: bool = True
) -> None:
    classes = sorted(m.below[node.id])
    first = m.ub.add(m.T, np.maximum(rhs, 0.0))
    for k, v in zip(classes, per_class, strict=True):
        m.ub.put(first + np.arange(m.T), m.y_col[(node.id, k)], v)
    if with_battery and m.bat is not None and node.parent_id is None:
        m.ub.put(first + np.arange(m.T), m.bc, 1.0)


def _root_ev_kw(m: _Model, first: int) -> None:
    root = m.inp.site.root.id
    for k in sorted(m.below[root]):
        m.ub.put(first + np.arange(m.T), m.y_col[(root, k)], m.cls_wpa[k] / 1000)
    if m.bat is not None:
        m.ub.put(first + np.arange(m.T), m.bc, 1.0)


def _grid_rows(m: _Model) -> None:
    """import >= EV + building - PV + battery charge - discharge; contract; demand peak."""
    f = m.inp.forecast
    build = np.zeros(m.T) if f.building_power_w is None else np.asarray(f.building_power_w)
    pv = np.zeros(m.T) if f.pv_power_w is None else np.asarray(f.pv_power_w)
    first = m.ub.add(m.T, (pv - build) / 1000)
    _root_ev_kw(m, first)
    m.ub.put(first + np.arange(m.T), m.grid, -1.0)
    if m.bat is not None:
        m.ub.put(first + np.arange(m.T), m.bd, -1.0)
    if m.inp.contracted_capacity_w is not None:
        first = m.ub.add(m.T, np.maximum(m.inp.contracted_capacity_w - build, 0.0) / 1000)
        _root_ev_kw(m, first)
    t = m.inp.start_s + m.inp.slot_s * np.arange(m.T)
    window = np.floor(t / max(m.inp.peak_window_s, m.inp.slot_s)).astype(np.int64)
    _, group, counts = np.unique(window, return_inverse=True, return_counts=True)
    first = m.ub.add(len(counts), np.zeros(len(counts)))
    m.ub.put(first + group, m.grid, 1.0 / counts[group])
    m.ub.put(first + np.arange(len(counts)), np.full(len(counts), m.peak[0]), -1.0)


def _battery_rows(m: _Model) -> None:
    """soc[t] = soc[t-1] + eta_c * charge * h - discharge * h / eta_d."""
    b = m.bat
    if b is None:
        return
    first = m.eq.add(m.T, np.r_[b.soc_wh / 1000, np.zeros(m.T - 1)])
    rows = first + np.arange(m.T)
    m.eq.put(rows, m.soc, 1.0)
    m.eq.put(rows[1:], m.soc[:-1], -1.0)
    m.eq.put(rows, m.bc, -b.charge_efficiency * m.h)
    m.eq.put(rows, m.bd, m.h / b.discharge_efficiency)


def _energy_rows(m: _Model) -> None:
    for s, cols in zip(m.sessions, m.s_col, strict=True):
        if math.isfinite(s.need_kwh) and len(cols):
            first = m.ub.add(1, np.array([s.need_kwh]))
            m.ub.put(np.full(len(cols), first), cols, s.kwh_per_a)


def _objective(m: _Model) -> FloatArray:
    c = np.concatenate(m.cost)
    prices = m.inp.prices_per_kwh
    price = np.zeros(m.T) if prices is None else np.asarray(prices, dtype=np.float64)
    c[m.grid] = (price + PV_WEIGHT_PER_KWH) * m.h
    c[m.peak] = m.inp.demand_charge_per_kw
    if m.bat is not None:
        c[m.bc] = CYCLE_WEIGHT_PER_KWH * m.h
        c[m.bd] = CYCLE_WEIGHT_PER_KWH * m.h
        # What is stored at the horizon's end has a value: without one it would be worth
        # nothing, and every plan would empty the battery early for a cent of energy cost (a
        # receding horizon never reaches its end). Without a demand charge it is worth the
        # cheapest energy it could replace then (never worth charging for: cheapest price x
        # discharge efficiency is below any price / charge efficiency). With a demand charge
        # it is the reserve for the peaks no plan foresees (cars that have not arrived yet,
        # which the live battery shaves above the held peak): worth a little more than any
        # energy, so a plan fills it wherever that raises no peak and takes no car's energy,
        # and empties it only to lower a peak.
        if m.inp.demand_charge_per_kw > 0:
            value = (float(np.max(price, initial=0.0)) + RESERVE_PREMIUM_PER_KWH) / (
                m.bat.charge_efficiency
            )
        else:
            value = float(np.min(price, initial=0.0)) * m.bat.discharge_efficiency
        c[m.soc[-1]] = -value
    # One more kWh in one slot adds at most 1/h kW to the peak and max(price) to cost.
    worst = m.inp.demand_charge_per_kw / m.h + float(np.max(price, initial=0.0))
    worst += PV_WEIGHT_PER_KWH + 2 * CYCLE_WEIGHT_PER_KWH / 0.5
    ready = m.inp.prefer is Prefer.READY
    big = (2.0 * worst + 1.0) / _least_worth(m)
    for s, cols in zip(m.sessions, m.s_col, strict=True):
        # Among equal plans, earlier is better, falling to zero at each car's own departure:
        # steeper for a car leaving sooner, so the car leaving first charges first (EDF),
        # which keeps the plan good when a new car arrives unannounced.
        window = max(s.departure_s - m.inp.start_s, m.inp.slot_s)
        pos = np.clip((s.slots + 0.5) * m.inp.slot_s / window, 0.0, 1.0)
        early = EARLY_WEIGHT_PER_KWH * (1.0 - pos)
        worth = s.weight * s.stay * (_ready_factor(s.need_kwh) if ready else 1.0)
        c[cols] = -(big * worth + early) * s.kwh_per_a
    return c


def _least_worth(m: _Model) -> float:
    """The least a kWh is worth per unit of ``big``: ``big`` is made large enough that a kWh
    worth this much still beats the worst peak and price it adds. ``STRICT``: down to the
    least stay probability of any slot (every kWh first, however unlikely); ``EXPECTED``: a
    kWh of a car sure to be there (an unlikely one is worth its chance against the peak)."""
    if m.inp.energy_priority is EnergyPriority.EXPECTED:
        return min(min((s.weight for s in m.sessions), default=1.0), 1.0)
    return min((s.weight * float(np.min(s.stay, initial=1.0)) for s in m.sessions), default=1.0)


def _ready_factor(need_kwh: float) -> float:
    """``Prefer.READY``'s weight on a car's kWh: 1 + READY_BONUS for a car that needs at most
    READY_KWH more, falling with what it needs; 1 for a car that takes all it can."""
    if not math.isfinite(need_kwh):
        return 1.0
    return 1.0 + READY_BONUS * min(1.0, READY_KWH / max(need_kwh, 1e-3))


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class LpMatrices:
    """The LP in ``scipy.optimize`` form (minimise ``c @ x``); ``session_cols[i]`` are the
    columns of session i's current in each of its ``slots`` (for callers that add rows or
    integrality, e.g. the offline bound with minimum currents)."""

    c: FloatArray
    a_ub: coo_matrix | None
    b_ub: FloatArray | None
    a_eq: coo_matrix | None
    b_eq: FloatArray | None
    lower: FloatArray
    upper: FloatArray
    session_cols: list[IntArray]
    kwh_per_a: list[FloatArray]  # per session, the energy one ampere delivers per column


def _built(inp: PlanInput, sessions: list[LpSession]) -> tuple[_Model, LpMatrices]:
    m = _Model(inp, sessions)
    _aggregation(m)
    for node in inp.site.nodes:
        if m.below[node.id] or (m.bat is not None and node.parent_id is None):
            _node_lines(m, node)
            _node_power_rows(m, node)
    _grid_rows(m)
    _battery_rows(m)
    _energy_rows(m)
    a_ub, b_ub = m.ub.matrix(m.n)
    a_eq, b_eq = m.eq.matrix(m.n)
    lower = np.concatenate(m.lb)
    for s, cols in zip(m.sessions, m.s_col, strict=True):
        if s.floor_a > 0:
            lower[cols[0]] = s.floor_a
    lp = LpMatrices(
        c=_objective(m),
        a_ub=a_ub,
        b_ub=b_ub,
        a_eq=a_eq,
        b_eq=b_eq,
        lower=lower,
        upper=np.concatenate(m.hi),
        session_cols=m.s_col,
        kwh_per_a=[s.kwh_per_a for s in m.sessions],
    )
    return m, lp


def build(inp: PlanInput, sessions: list[LpSession]) -> LpMatrices:
    """The LP for ``inp`` (see the module docstring), not solved."""
    return _built(inp, sessions)[1]


def build_and_solve(inp: PlanInput, sessions: list[LpSession]) -> LpResult:
    """Build the LP for ``inp`` and solve it within ``inp.time_limit_s``."""
    m, lp = _built(inp, sessions)
    options: dict[str, object] = {"presolve": True}
    if inp.time_limit_s is not None:
        options["time_limit"] = float(inp.time_limit_s)
    res = linprog(
        lp.c,
        A_ub=lp.a_ub,
        b_ub=lp.b_ub,
        A_eq=lp.a_eq,
        b_eq=lp.b_eq,
        bounds=np.column_stack([lp.lower, lp.upper]),
        # Interior point (with crossover to a vertex) beats dual simplex on these LPs by
        # 1.2-2x (bench/planner.py): many columns, few rows after presolve.
        method="highs-ipm",
        options=options,
    )
    current = np.zeros((len(m.sessions), m.T))
    grid, battery, peak = np.zeros(m.T), np.zeros(m.T), 0.0
    if res.status == 0 and res.x is not None:
        x = np.maximum(res.x, 0.0)
        for i, (s, cols) in enumerate(zip(m.sessions, m.s_col, strict=True)):
            current[i, s.slots] = np.minimum(x[cols], s.max_a)
        grid, peak = x[m.grid], float(x[m.peak[0]])
        if m.bat is not None:
            battery = x[m.bc] - x[m.bd]
    return LpResult(
        status=int(res.status),
        message=str(res.message),
        current_a=current,
        grid_kw=grid,
        battery_kw=battery,
        peak_kw=peak,
    )
