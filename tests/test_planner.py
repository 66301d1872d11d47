"""The planning LP against independent references, and its safety invariants.

References: a max-flow (scipy's push-relabel on integer capacities) for the energy a single
line can deliver, brute-force enumeration for the energy-then-peak order, and the exact phasor
currents of ``core.electrical`` for "no slot above capacity".
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

from ampshare.core.electrical import node_line_currents_a, primary_line_currents_a
from ampshare.core.planner import (
    Battery,
    EnergyPriority,
    Linearisation,
    Plan,
    PlanInput,
    PlanStatus,
    SiteForecast,
    cone_arc,
    facets,
    plan,
)
from ampshare.core.site import (
    Charger,
    CircuitNode,
    Connection,
    NodeKind,
    PhaseRotation,
    PrimaryWinding,
    Site,
    TransformerPrimary,
    VoltageSystem,
)
from ampshare.core.snapshot import Session
from ampshare.errors import InputError

INF = math.inf
H = 3600.0


def single_line_site(limit_a: float, n_chargers: int, max_a: float = 32.0) -> Site:
    """EU single-phase: every charger on L1, so the magnitude is exactly linear."""
    root = CircuitNode(
        id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(limit_a, INF, INF)
    )
    chargers = tuple(
        Charger(id=f"c{i}", node_id="main", connection=Connection.L1, max_current_a=max_a)
        for i in range(n_chargers)
    )
    return Site(name="t", voltage=VoltageSystem.EU_230, nodes=(root,), chargers=chargers)


def caltech_like(
    secondary_a: float = 150.0, primary_a: float = 60.0, pod_a: float = 40.0, margin_a: float = 0.0
) -> Site:
    """A small ACN-like site: delta-wye transformer, one pod, 208 V line-to-line chargers."""
    root = CircuitNode(
        id="tx",
        kind=NodeKind.TRANSFORMER,
        parent_id=None,
        line_limit_a=(secondary_a,) * 3,
        margin_a=margin_a,
        primary=TransformerPrimary(
            winding=PrimaryWinding.DELTA, winding_ratio=4.0, line_limit_a=primary_a
        ),
    )
    pod = CircuitNode(id="pod", kind=NodeKind.SUBPANEL, parent_id="tx", line_limit_a=(pod_a,) * 3)
    conns = [Connection.L1_L2, Connection.L2_L3, Connection.L3_L1]
    chargers = [
        Charger(id=f"p{i}", node_id="pod", connection=Connection.L1_L2, max_current_a=32.0)
        for i in range(3)
    ]
    chargers += [
        Charger(id=f"r{i}", node_id="tx", connection=conns[i % 3], max_current_a=32.0)
        for i in range(6)
    ]
    return Site(
        name="acn", voltage=VoltageSystem.US_120_208, nodes=(root, pod), chargers=tuple(chargers)
    )


def eu_three_phase() -> Site:
    """EU 400 V with rotated three-phase chargers and a sub-panel with a power limit."""
    root = CircuitNode(
        id="main",
        kind=NodeKind.SERVICE,
        parent_id=None,
        line_limit_a=(63.0, 63.0, 63.0),
        max_power_w=40_000.0,
    )
    sub = CircuitNode(
        id="garage",
        kind=NodeKind.SUBPANEL,
        parent_id="main",
        line_limit_a=(40.0, 40.0, 40.0),
        max_line_sum_a=100.0,
    )
    rots = [PhaseRotation.L1L2L3, PhaseRotation.L2L3L1, PhaseRotation.L3L1L2]
    chargers = tuple(
        Charger(
            id=f"w{i}",
            node_id="garage" if i < 4 else "main",
            connection=Connection.THREE_PHASE if i % 2 == 0 else Connection.L1,
            phase_rotation=rots[i % 3],
            max_current_a=32.0,
        )
        for i in range(6)
    )
    return Site(name="eu", voltage=VoltageSystem.EU_230_400, nodes=(root, sub), chargers=chargers)


def energy_wh(p: Plan) -> float:
    return sum(s.expected_wh for s in p.sessions)


# --- references --------------------------------------------------------------------------


def max_flow_energy_wh(
    limit: list[int], sessions: list[tuple[int, int, int, int]], wh_per_a_slot: float
) -> float:
    """Max energy on one line: source -> session (need) -> slot (max A) -> sink (limit)."""
    n_s, n_t = len(sessions), len(limit)
    src, sink = 0, 1 + n_s + n_t
    cap = np.zeros((sink + 1, sink + 1), dtype=np.int32)
    for i, (a, d, max_a, need) in enumerate(sessions):
        cap[src, 1 + i] = need
        for k in range(a, d):
            cap[1 + i, 1 + n_s + k] = max_a
    for k, lim in enumerate(limit):
        cap[1 + n_s + k, sink] = lim
    return maximum_flow(csr_matrix(cap), src, sink).flow_value * wh_per_a_slot


@st.composite
def line_instances(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, int, int, int]]]:
    n_t = draw(st.integers(1, 4))
    limit = draw(st.lists(st.integers(0, 40), min_size=n_t, max_size=n_t))
    sessions = []
    for _ in range(draw(st.integers(1, 3))):
        a = draw(st.integers(0, n_t - 1))
        d = draw(st.integers(a + 1, n_t))
        sessions.append((a, d, draw(st.integers(1, 32)), draw(st.integers(0, 90))))
    return limit, sessions


@settings(max_examples=60, deadline=None)
@given(line_instances(), st.sampled_from([0.0, 15.51]))
def test_energy_equals_max_flow_on_a_single_line(
    inst: tuple[list[int], list[tuple[int, int, int, int]]], demand: float
) -> None:
    limit, sess = inst
    cap_a = 40.0
    site = single_line_site(cap_a, len(sess))
    # The slot's capacity varies through the building load forecast on L1.
    building = np.zeros((len(limit), 3))
    building[:, 0] = cap_a - np.array(limit, dtype=float)
    sessions = tuple(
        Session(
            session_id=f"s{i}",
            charger_id=f"c{i}",
            arrival_s=a * H,
            departure_s=d * H,
            energy_wanted_wh=need * 230.0,
            vehicle_max_current_a=float(mx),
        )
        for i, (a, d, mx, need) in enumerate(sess)
    )
    p = plan(
        PlanInput(
            site=site,
            start_s=0.0,
            slot_s=H,
            n_slots=len(limit),
            sessions=sessions,
            forecast=SiteForecast(building_line_a={"main": building}),
            demand_charge_per_kw=demand,
        )
    )
    assert p.status is PlanStatus.OPTIMAL
    assert energy_wh(p) == pytest.approx(max_flow_energy_wh(limit, sess, 230.0), abs=1e-3)


def test_energy_first_then_lowest_peak_against_brute_force() -> None:
    # Two cars on a 6 A line, four 1-hour slots; s0 leaves after slot 1.
    site = single_line_site(6.0, 2, max_a=4.0)
    sessions = (
        Session(
            session_id="s0",
            charger_id="c0",
            arrival_s=0.0,
            departure_s=2 * H,
            energy_wanted_wh=6 * 230.0,
        ),
        Session(
            session_id="s1",
            charger_id="c1",
            arrival_s=0.0,
            departure_s=4 * H,
            energy_wanted_wh=10 * 230.0,
        ),
    )
    best: tuple[float, float] = (-1.0, 0.0)  # (energy, -peak) maximised lexicographically
    grid = range(5)
    for x in itertools.product(grid, repeat=6):  # s0: slots 0-1, s1: slots 0-3
        i0, i1 = np.array([x[0], x[1], 0, 0]), np.array(x[2:])
        if np.any(i0 + i1 > 6) or i0.sum() > 6 or i1.sum() > 10:
            continue
        best = max(best, (float(i0.sum() + i1.sum()), -float((i0 + i1).max())))
    p = plan(
        PlanInput(
            site=site,
            start_s=0.0,
            slot_s=H,
            n_slots=4,
            sessions=sessions,
            demand_charge_per_kw=15.51,
        )
    )
    assert energy_wh(p) == pytest.approx(best[0] * 230.0)
    assert p.peak_kw <= -best[1] * 0.23 + 1e-6  # continuous can only be as good or better
    assert p.peak_kw == pytest.approx(16 * 0.23 / 4)  # 16 A-h spread flat over 4 h


# --- invariants ----------------------------------------------------------------------------


@st.composite
def site_instances(draw: st.DrawFn) -> PlanInput:
    site = draw(st.sampled_from([caltech_like(), caltech_like(margin_a=5.0), eu_three_phase()]))
    n_slots = draw(st.integers(2, 8))
    slot_s = 900.0
    sessions = []
    for i, c in enumerate(site.chargers):
        if not draw(st.booleans()):
            continue
        a = draw(st.floats(0.0, (n_slots - 1) * slot_s))
        d = a + draw(st.floats(60.0, n_slots * slot_s))
        sessions.append(
            Session(
                session_id=f"s{i}",
                charger_id=c.id,
                arrival_s=a,
                departure_s=d,
                energy_wanted_wh=draw(st.one_of(st.none(), st.floats(0.0, 30_000.0))),
                energy_delivered_wh=draw(st.floats(0.0, 2000.0)),
                vehicle_max_current_a=draw(st.one_of(st.none(), st.floats(6.0, 40.0))),
                vehicle_phases=draw(st.sampled_from([None, 1, 3])),
                priority=draw(st.integers(0, 2)),
            )
        )
    build = {
        n.id: np.array(
            draw(st.lists(st.floats(0.0, 50.0), min_size=3 * n_slots, max_size=3 * n_slots))
        ).reshape(n_slots, 3)
        for n in site.nodes
        if draw(st.booleans())
    }
    return PlanInput(
        site=site,
        start_s=0.0,
        slot_s=slot_s,
        n_slots=n_slots,
        sessions=tuple(sessions),
        forecast=SiteForecast(building_line_a=build),
        prices_per_kwh=np.array(
            draw(st.lists(st.floats(0.0, 0.5), min_size=n_slots, max_size=n_slots))
        ),
        demand_charge_per_kw=draw(st.sampled_from([0.0, 15.51])),
    )


def _check_capacity(inp: PlanInput, p: Plan, tol: float = 1e-6) -> None:
    site = inp.site
    phases = {s.charger_id: s.vehicle_phases for s in inp.sessions if s.vehicle_phases == 1}
    for k in range(inp.n_slots):
        cur = {s.charger_id: float(p.current_a[i, k]) for i, s in enumerate(inp.sessions)}
        lines = node_line_currents_a(site, cur, phases)
        prim = primary_line_currents_a(site, cur, phases)
        for node in site.nodes:
            b = inp.forecast.building_line_a.get(node.id, np.zeros((inp.n_slots, 3)))[k]
            room = np.maximum(np.array(node.line_limit_a) - node.margin_a - b, 0.0)
            assert np.all(np.array(lines[node.id]) <= room + tol), (node.id, k)
            if node.max_line_sum_a is not None:
                assert sum(lines[node.id]) <= max(node.max_line_sum_a - b.sum(), 0.0) + tol
            if node.primary is not None:
                pm = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1]]) / node.primary.winding_ratio
                proom = node.primary.line_limit_a - node.margin_a - pm @ b
                assert np.all(np.array(prim[node.id]) <= np.maximum(proom, 0) + tol)


def _check_sessions(inp: PlanInput, p: Plan) -> None:
    site = inp.site
    for i, s in enumerate(inp.sessions):
        row = p.current_a[i]
        cap = min(site.charger(s.charger_id).max_current_a, s.vehicle_max_current_a or INF)
        assert np.all(row >= -1e-9)
        assert np.all(row <= cap + 1e-6)
        t = inp.start_s + inp.slot_s * np.arange(inp.n_slots)
        outside = (t + inp.slot_s <= s.arrival_s) | (t >= max(s.departure_s or INF, inp.slot_s))
        assert np.all(row[outside] == 0.0)
        sp = p.sessions[i]
        if s.energy_wanted_wh is not None:
            assert sp.expected_wh <= max(s.energy_wanted_wh, s.energy_delivered_wh) + 1e-3


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(site_instances())
def test_no_slot_above_capacity_no_session_above_its_maximum_or_request(inp: PlanInput) -> None:
    p = plan(inp)
    assert p.status is PlanStatus.OPTIMAL
    _check_capacity(inp, p)
    _check_sessions(inp, p)


def _busy(site: Site, n_slots: int = 4, wanted_wh: float = 50_000.0) -> tuple[Session, ...]:
    return tuple(
        Session(
            session_id=f"s{i}",
            charger_id=c.id,
            arrival_s=0.0,
            departure_s=n_slots * H,
            energy_wanted_wh=wanted_wh,
        )
        for i, c in enumerate(site.chargers)
    )


def _max_ratio(inp: PlanInput, p: Plan) -> float:
    """Highest exact line current / room over nodes, lines, primaries and slots."""
    worst = 0.0
    for k in range(inp.n_slots):
        cur = {s.charger_id: float(p.current_a[i, k]) for i, s in enumerate(inp.sessions)}
        lines = node_line_currents_a(inp.site, cur)
        prim = primary_line_currents_a(inp.site, cur)
        for node in inp.site.nodes:
            worst = max(worst, *(np.array(lines[node.id]) / np.array(node.line_limit_a)))
            if node.primary is not None:
                worst = max(worst, *(np.array(prim[node.id]) / node.primary.line_limit_a))
    return worst


@pytest.mark.parametrize("site", [caltech_like(), eu_three_phase()])
def test_inscribed_plan_fills_the_binding_limit_to_within_half_a_percent(site: Site) -> None:
    inp = PlanInput(site=site, start_s=0.0, slot_s=H, n_slots=2, sessions=_busy(site, 2))
    ratio = _max_ratio(inp, plan(inp))
    assert 0.995 <= ratio <= 1.0 + 1e-9  # conservative, and loses at most 1 - cos(5 deg)


def test_circumscribed_relaxation_bounds_the_inscribed_plan_from_above() -> None:
    site = caltech_like()
    inner = PlanInput(site=site, start_s=0.0, slot_s=H, n_slots=3, sessions=_busy(site, 3))
    outer = PlanInput(
        site=site,
        start_s=0.0,
        slot_s=H,
        n_slots=3,
        sessions=_busy(site, 3),
        linearisation=Linearisation.CIRCUMSCRIBED,
    )
    e_in, p_out = energy_wh(plan(inner)), plan(outer)
    e_out = energy_wh(p_out)
    assert e_in <= e_out <= e_in / math.cos(math.radians(5.0)) + 1e-6
    assert 1.0 <= _max_ratio(outer, p_out) <= 1.0 / math.cos(math.radians(5.0)) + 1e-9


def test_polygon_facets_cover_the_cone_only() -> None:
    arc = cone_arc(
        [complex(math.cos(math.radians(a)), math.sin(math.radians(a))) for a in (30.0, -30.0)]
    )
    assert arc is not None
    assert math.degrees(arc[0]) == pytest.approx(330.0)
    assert math.degrees(arc[1]) == pytest.approx(60.0)
    rows = facets([1 + 0j, -1j, -1 + 0j, 1j], conservative=True, max_facet_deg=30.0)
    assert len(rows) == 12  # directions all round: full 12-gon
    assert rows[0][1] == pytest.approx(math.cos(math.radians(15.0)))
    assert facets([2 + 0j, 1 + 0j], conservative=True) == [(0.0, 1.0)]  # collinear: exact


def test_higher_priority_gets_the_scarce_energy() -> None:
    site = single_line_site(16.0, 2)
    sessions = tuple(
        Session(
            session_id=f"s{i}",
            charger_id=f"c{i}",
            arrival_s=0.0,
            departure_s=2 * H,
            energy_wanted_wh=20_000.0,
            priority=i,
        )
        for i in range(2)
    )
    p = plan(PlanInput(site=site, start_s=0.0, slot_s=H, n_slots=2, sessions=sessions))
    assert p.current_a[1] == pytest.approx([16.0, 16.0])
    assert p.current_a[0] == pytest.approx([0.0, 0.0])
    assert [s.will_not_be_ready for s in p.sessions] == [True, True]  # 7.4 of 20 kWh
    assert p.warnings == p.sessions


def test_cheap_slots_and_pv_are_used_but_never_at_the_expense_of_energy() -> None:
    site = single_line_site(32.0, 1)
    s = (
        Session(
            session_id="s",
            charger_id="c0",
            arrival_s=0.0,
            departure_s=4 * H,
            energy_wanted_wh=2 * 32 * 230.0,
        ),
    )
    prices = np.array([0.3, 0.1, 0.3, 0.05])
    p = plan(
        PlanInput(site=site, start_s=0.0, slot_s=H, n_slots=4, sessions=s, prices_per_kwh=prices)
    )
    assert p.current_a[0] == pytest.approx([0.0, 32.0, 0.0, 32.0])
    pv = np.array([0.0, 0.0, 8000.0, 8000.0])
    p = plan(
        PlanInput(
            site=site,
            start_s=0.0,
            slot_s=H,
            n_slots=4,
            sessions=s,
            forecast=SiteForecast(pv_power_w=pv),
        )
    )
    assert p.current_a[0] == pytest.approx([0.0, 0.0, 32.0, 32.0])
    assert p.grid_kw == pytest.approx([0.0, 0.0, 0.0, 0.0], abs=1e-6)
    full = (
        Session(
            session_id="s",
            charger_id="c0",
            arrival_s=0.0,
            departure_s=4 * H,
            energy_wanted_wh=4 * 32 * 230.0,
        ),
    )
    p = plan(
        PlanInput(
            site=site,
            start_s=0.0,
            slot_s=H,
            n_slots=4,
            sessions=full,
            prices_per_kwh=prices,
            demand_charge_per_kw=50.0,
        )
    )
    assert p.current_a[0] == pytest.approx([32.0] * 4)  # dearer and peakier, but delivered


def test_demand_charge_flattens_and_battery_shaves_the_building_peak() -> None:
    site = single_line_site(100.0, 1)
    s = (
        Session(
            session_id="s",
            charger_id="c0",
            arrival_s=0.0,
            departure_s=4 * H,
            energy_wanted_wh=4 * 10 * 230.0,
        ),
    )
    building = np.array([2000.0, 10_000.0, 2000.0, 2000.0])
    base = {
        "site": site,
        "start_s": 0.0,
        "slot_s": H,
        "n_slots": 4,
        "sessions": s,
        "forecast": SiteForecast(building_power_w=building),
        "demand_charge_per_kw": 15.0,
    }
    flat = plan(PlanInput(**base))  # type: ignore[arg-type]
    assert flat.peak_kw == pytest.approx(10.0)  # the car stays out of the building's peak
    assert flat.current_a[0, 1] == pytest.approx(0.0, abs=1e-6)
    bat = Battery(
        capacity_wh=10_000.0,
        max_charge_w=5000.0,
        max_discharge_w=5000.0,
        soc_wh=5000.0,
        charge_efficiency=1.0,
        discharge_efficiency=1.0,
    )
    shaved = plan(PlanInput(**base, battery=bat))  # type: ignore[arg-type]
    assert shaved.peak_kw < flat.peak_kw - 1.0
    assert energy_wh(shaved) == pytest.approx(energy_wh(flat))
    assert -shaved.battery_kw.sum() <= 5.0 + 1e-6  # never more than it held


def test_expected_energy_priority_keeps_an_unlikely_kwh_below_the_peak() -> None:
    """A car here now that nine in ten like it have left after the first hour (it declared
    four). In the first hour the building holds L1 at 20 A, so the car takes 12 A and the
    site's peak is 7.36 kW; then the building moves to another line (4.6 kW at the root all
    along) and L1 is free. ``STRICT``: every kWh first, the car is planned at 32 A (the peak
    rises to 11.96 kW for kWh with a one-in-ten chance); ``EXPECTED``: a kWh is worth its
    chance of delivery, so the car is planned at the 12 A that keeps the peak."""
    site = single_line_site(32.0, 1)
    sessions = (Session(session_id="a", charger_id="c0", arrival_s=0.0, departure_s=4 * H),)
    line = np.zeros((4, 3))
    line[0, 0] = 20.0  # L1 in the first hour only
    base = {
        "site": site,
        "start_s": 0.0,
        "slot_s": H,
        "n_slots": 4,
        "sessions": sessions,
        "forecast": SiteForecast(
            building_line_a={"main": line}, building_power_w=np.full(4, 4600.0)
        ),
        "demand_charge_per_kw": 10.0,
        "stay_samples": ((4 * H, 0.25),) * 90 + ((4 * H, 1.0),) * 10,
    }
    got = {
        prio: plan(PlanInput(**base, energy_priority=prio))  # type: ignore[arg-type]
        for prio in EnergyPriority
    }
    for p in got.values():
        assert p.current_a[0, 0] == pytest.approx(12.0)
    assert got[EnergyPriority.STRICT].current_a[0, 1:] == pytest.approx([32.0] * 3)
    assert got[EnergyPriority.STRICT].peak_kw == pytest.approx(11.96)
    assert got[EnergyPriority.EXPECTED].current_a[0, 1:] == pytest.approx([12.0] * 3)
    assert got[EnergyPriority.EXPECTED].peak_kw == pytest.approx(7.36)


def test_contracted_capacity_caps_the_ev_power() -> None:
    site = single_line_site(100.0, 2)
    p = plan(
        PlanInput(
            site=site,
            start_s=0.0,
            slot_s=H,
            n_slots=2,
            sessions=_busy(site, 2),
            forecast=SiteForecast(building_power_w=np.array([3000.0, 9000.0])),
            contracted_capacity_w=10_000.0,
        )
    )
    ev_kw = p.current_a.sum(axis=0) * 0.23
    assert ev_kw == pytest.approx([7.0, 1.0])


def test_late_solve_reports_time_limit_instead_of_a_plan() -> None:
    site = caltech_like(secondary_a=400.0, primary_a=180.0, pod_a=80.0)
    sessions = tuple(
        Session(
            session_id=f"s{i}",
            charger_id=site.chargers[i % 9].id,
            arrival_s=(i % 40) * 900.0,
            departure_s=(i % 40) * 900.0 + 8 * H,
            energy_wanted_wh=20_000.0,
        )
        for i in range(150)
    )
    p = plan(
        PlanInput(
            site=site,
            start_s=0.0,
            slot_s=300.0,
            n_slots=288,
            sessions=sessions,
            demand_charge_per_kw=15.0,
            time_limit_s=1e-6,
        )
    )
    assert p.status is PlanStatus.TIME_LIMIT
    assert not p.status.usable
    assert not p.current_a.any()


def test_malformed_input_is_named() -> None:
    site = single_line_site(10.0, 1)
    bad = (Session(session_id="x", charger_id="nope", arrival_s=0.0),)
    with pytest.raises(InputError, match="session 'x': unknown charger 'nope'"):
        plan(PlanInput(site=site, start_s=0.0, slot_s=H, n_slots=2, sessions=bad))
    with pytest.raises(InputError, match="prices_per_kwh must have one value per slot"):
        plan(
            PlanInput(
                site=site, start_s=0.0, slot_s=H, n_slots=2, sessions=(), prices_per_kwh=np.zeros(3)
            )
        )
