"""The replay loop, metrics and baselines on a tiny site, against numbers worked out by hand.

Tiny garage: 230/400 V, 32 A per line, three 16 A three-phase wallboxes (11.04 kW at 16 A).
Building load 4.416 kW (6.4 A per line) until 02:00, then 0. Ideal-battery EVs that obey a
new pilot 5 s after it is sent. Sessions (tests/fixtures/sim/sessions-acn.csv):
s1 on c1 00:00–02:00 wants 11.04 kWh; s2 on c2 00:00–01:00 wants 22.08 kWh; s3 arrives at an
unknown station (so it takes the free c3) 00:00–04:00 wanting 5.52 kWh.
"""

from __future__ import annotations

import csv
import dataclasses
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from ampshare.config import load_site
from ampshare.core.allocation import AllocationInput, NodeMeasurement, RotationState
from ampshare.core.electrical import node_line_currents_a, primary_line_currents_a
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
from ampshare.sim._compiled import compile_site
from ampshare.sim.baselines import allstop_waterfill, greedy_clamp
from ampshare.sim.data import SessionRecord, load_series, load_sessions
from ampshare.sim.engine import EvOptions, metered_site
from ampshare.sim.run import SimSpec, simulate
from ampshare.sim.trace import write_trace

FIX = Path(__file__).parent / "fixtures" / "sim"


@pytest.fixture(scope="module")
def tiny_spec() -> SimSpec:
    return SimSpec(
        site=load_site(FIX / "tiny-site.yaml"),
        sessions=load_sessions(FIX / "sessions-acn.csv", "acn").records,
        building=load_series(FIX / "building.csv", "load_kw"),
        ev=EvOptions(basic=True, reaction_s=5.0),
        step_s=60.0,
    )


def test_greedy_clamp_by_hand(tiny_spec: SimSpec) -> None:
    out = simulate(dataclasses.replace(tiny_spec, policy="greedy-clamp"))
    m, rep = out.metrics, out.replay
    # c1 takes 16 A, c2 what is left (32 - 6.4 - 16 = 9.6 A), c3 nothing until c2 leaves.
    s2 = 9.6 * 3 * 230 / 1000 * (3600 - 5) / 3600
    assert rep.delivered_wh / 1000 == pytest.approx([11.04, s2, 5.52], abs=1e-6)
    assert [tiny_spec.site.chargers[j].id for j in rep.charger_of] == ["c1", "c2", "c3"]
    assert m["energy_requested_kwh"] == pytest.approx(38.64)
    assert m["energy_delivered_ratio"] == pytest.approx((16.56 + s2) / 38.64, abs=1e-5)
    assert m["demands_met_ratio"] == pytest.approx(2 / 3, abs=1e-5)
    assert m["unmet_kwh_p95"] == pytest.approx(0.9 * (22.08 - s2), abs=1e-3)
    ratios = np.array([1.0, s2 / 22.08, 1.0])
    assert m["jain_fairness"] == pytest.approx(
        ratios.sum() ** 2 / (3 * (ratios**2).sum()), abs=1e-4
    )
    assert m["peak_site_kw"] == pytest.approx(4.416 + 11.04 + 9.6 * 0.69)
    assert m["violation_amp_seconds"] == 0.0
    assert m["start_stop_events"] == 0
    assert m["sessions"] == 3


def test_violation_is_counted_in_amp_seconds(tiny_spec: SimSpec) -> None:
    """A 20 A service under a building drawing 24 A per line until 02:00: greedy clamp pauses
    every car, and the building alone is 4 A over on three lines for two hours."""
    site = tiny_spec.site
    tight = dataclasses.replace(
        site, nodes=(dataclasses.replace(site.nodes[0], line_limit_a=(20.0,) * 3),)
    )
    assert tiny_spec.building is not None
    spec = dataclasses.replace(
        tiny_spec, site=tight, policy="greedy-clamp", building=tiny_spec.building.scaled(24 / 6.4)
    )
    m = simulate(spec).metrics
    assert m["violation_amp_seconds"] == pytest.approx(4 * 3 * 7200)
    assert m["max_violation_a"] == pytest.approx(4.0)
    assert m["peak_site_kw"] == pytest.approx(16.56)


@pytest.mark.parametrize("policy", ["equal", "all-stop"])
def test_trace_rechecked_independently(tiny_spec: SimSpec, tmp_path: Path, policy: str) -> None:
    """The trace CSV alone shows every line within 32 A (three-phase chargers: plain sums are
    exact) and carries the energy that was delivered."""
    out = simulate(dataclasses.replace(tiny_spec, policy=policy, keep_ev=True))
    msite, node = metered_site(tiny_spec.site)
    path = tmp_path / "trace.csv"
    write_trace(out.replay, msite, path, node)
    per_t: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    energy_wh = 0.0
    with path.open() as fh:
        for row in csv.DictReader(fh):
            acc = per_t[row["t_s"]]
            for k in range(3):
                acc[k] += float(row[f"L{k + 1}_a"])
            if row["station_id"] != "_building":
                energy_wh += 230 * float(row["L1_a"]) * 3 * float(row["dt_s"]) / 3600
    assert len(per_t) > 100
    assert max(max(v) for v in per_t.values()) <= 32.0 + 1e-6
    # The trace holds each segment's starting current (the peak inside it): an upper bound
    # of the energy, tight but for cars that filled up inside a segment.
    assert out.replay.delivered_wh.sum() <= energy_wh <= out.replay.delivered_wh.sum() * 1.01


def test_allstop_stops_everyone_then_retries() -> None:
    site = load_site(FIX / "tiny-site.yaml")
    sessions = tuple(
        Session(session_id=f"s{i}", charger_id=f"c{i}", arrival_s=0.0) for i in (1, 2, 3)
    )

    def inp(now: float, building_a: float, rot: RotationState) -> AllocationInput:
        meas = NodeMeasurement(node_id="main", current_a=(building_a,) * 3)
        return AllocationInput(
            site=site, now_s=now, sessions=sessions, measurements=(meas,), rotation=rot
        )

    # 32 - 20 = 12 A left: three cars at 6 A would need 18 A, so everyone stops.
    a = allstop_waterfill(inp(0.0, 20.0, RotationState()))
    assert {lim.limit_a for lim in a.limits} == {0.0}
    # Half a minute later the building is gone, but all-stop waits its minute.
    b = allstop_waterfill(inp(30.0, 0.0, a.rotation))
    assert {lim.limit_a for lim in b.limits} == {0.0}
    c = allstop_waterfill(inp(60.0, 2.0, b.rotation))
    assert [lim.limit_a for lim in c.limits] == [10.0, 10.0, 10.0]  # (32 - 2) / 3


def test_greedy_clamp_keeps_first_comers() -> None:
    site = load_site(FIX / "tiny-site.yaml")
    sessions = tuple(
        Session(session_id=f"s{i}", charger_id=f"c{i}", arrival_s=0.0) for i in (1, 2, 3)
    )
    meas = NodeMeasurement(node_id="main", current_a=(4.0, 4.0, 4.0))
    a = greedy_clamp(AllocationInput(site=site, now_s=0.0, sessions=sessions, measurements=(meas,)))
    assert [lim.limit_a for lim in a.limits] == [16.0, 12.0, 0.0]


def test_compiled_rows_match_core_electrical() -> None:
    """The simulator's matrices give the same line currents as ampshare.core.electrical."""
    nodes = (
        CircuitNode(
            id="tx",
            kind=NodeKind.TRANSFORMER,
            parent_id=None,
            line_limit_a=(400.0, 400.0, 400.0),
            primary=TransformerPrimary(
                winding=PrimaryWinding.DELTA, winding_ratio=4.0, line_limit_a=180.0
            ),
        ),
        CircuitNode(
            id="pod", kind=NodeKind.SUBPANEL, parent_id="tx", line_limit_a=(80.0, 80.0, 80.0)
        ),
    )
    conns = [
        Connection.L1_L2,
        Connection.L2_L3,
        Connection.L3_L1,
        Connection.L1,
        Connection.THREE_PHASE,
    ]
    rots = list(PhaseRotation)
    chargers = tuple(
        Charger(
            id=f"c{i}",
            node_id="pod" if i % 2 else "tx",
            connection=conns[i % 5],
            phase_rotation=rots[i % 6],
            max_current_a=32.0,
        )
        for i in range(11)
    )
    site = Site(name="x", voltage=VoltageSystem.US_120_208, nodes=nodes, chargers=chargers)
    cs = compile_site(site)
    rng = np.random.default_rng(7)
    for _ in range(20):
        cur = rng.uniform(0, 32, len(chargers))
        single = np.zeros(len(chargers))
        rows = cs.row_currents_a(cur[None, :], single[None, :], np.zeros((1, 3)))[0]
        cmap = {c.id: float(x) for c, x in zip(chargers, cur, strict=True)}
        ref = node_line_currents_a(site, cmap)
        prim = primary_line_currents_a(site, cmap)
        for k, label in enumerate(cs.labels):
            parts = label.split("/")
            want = (
                prim[parts[0]][int(parts[2][1]) - 1]
                if len(parts) == 3
                else ref[parts[0]][int(parts[1][1]) - 1]
            )
            assert rows[k] == pytest.approx(want, abs=1e-9), label


def test_policies_share_the_same_physics(tiny_spec: SimSpec) -> None:
    """Every controlled policy stays within limits; uncontrolled does not, and delivers most."""
    got = {
        p: simulate(dataclasses.replace(tiny_spec, policy=p)).metrics
        for p in ("equal", "fcfs", "deadline", "static", "uncontrolled")
    }
    for p in ("equal", "fcfs", "deadline", "static"):
        assert got[p]["violation_amp_seconds"] == 0.0, p
    # uncontrolled: 6.4 + 3 x 16 = 54.4 A on a 32 A service at first
    assert got["uncontrolled"]["max_violation_a"] == pytest.approx(22.4)
    assert got["uncontrolled"]["energy_delivered_kwh"] > got["equal"]["energy_delivered_kwh"]
    # equal shares (32 - 6.4) / 3 = 8.5 A: s2 gets 8.5 A x 690 V for its hour (less 5 s),
    # except at the end: s3 (5.52 kWh) is full after 3,393 s; its charger says SuspendedEV at
    # the 58th minute (3,480 s), the controller takes its current back when the 30 s reclaim
    # timer runs out (3,511 s), raises s1 and s2 to (32 - 6.4) / 2 = 12.8 A once that is obeyed
    # (3,517 s), and they follow 5 s later: s2 at 12.8 A from 3,522 s until it leaves.
    eq = simulate(dataclasses.replace(tiny_spec, policy="equal")).replay
    amp_s = 8.5 * (3522 - 5) + 12.8 * (3600 - 3522)
    assert eq.delivered_wh[1] == pytest.approx(amp_s * 690 / 3600, rel=1e-6)


def test_pv_and_tariff(tiny_spec: SimSpec) -> None:
    """Greedy clamp as in the hand-worked case, with 4.416 kW of PV cancelling the building
    and a price of 0.10 per kWh in the first hour and 0.30 after, 2 per kW demand charge."""
    from ampshare.config.tariff_files import load_price_series

    assert tiny_spec.building is not None
    pv = tiny_spec.building.scaled(1.0)  # the same 4.416 kW, until 02:00
    tariff = load_price_series(FIX / "prices.csv", demand_charge_per_kw=2.0)
    base = simulate(dataclasses.replace(tiny_spec, policy="greedy-clamp", tariff=tariff))
    with_pv = simulate(dataclasses.replace(tiny_spec, policy="greedy-clamp", pv=pv, tariff=tariff))
    # PV frees 6.4 A per line: c3 no longer waits for c2 to leave.
    assert with_pv.metrics["energy_delivered_kwh"] > base.metrics["energy_delivered_kwh"]
    t, kw = (with_pv.replay.seg_t_s, with_pv.replay.seg_site_kw)
    assert float(kw[t < t[0] + 7200].max()) == pytest.approx(22.08, abs=0.01)
    # Cost of the base run by hand: import each minute at its hour's price.
    rep = base.replay
    t0 = rep.seg_t_s[0]
    energy_kwh = rep.seg_site_kw * rep.seg_dt_s / 3600
    price = np.where(rep.seg_t_s < t0 + 3600, 0.10, 0.30)
    assert base.metrics["energy_cost"] == pytest.approx(float((energy_kwh * price).sum()), rel=2e-3)
    # Demand charge: the highest 15-minute mean import (22.08 kW) x 2 per kW.
    assert base.metrics["demand_charge"] == pytest.approx(2 * 22.08, rel=2e-3)


def test_plan_provider_hook_is_called_on_changes_and_every_replan(tiny_spec: SimSpec) -> None:
    """The planner hook sees only declared values and runs on arrivals/departures and every
    ``replan_s``; its targets reach the allocator through ``Policy.planned_targets_a``."""
    calls: list[tuple[float, tuple[str, ...], tuple[float | None, ...]]] = []

    def provider(
        now_s: float,
        site: object,
        sessions: tuple[Session, ...],
        states: tuple[object, ...],
        *,
        rotation: object,
    ) -> dict[str, float]:
        del site, rotation
        assert {getattr(st, "charger_id", None) for st in states} == {
            s.charger_id for s in sessions
        }  # one report per charger with a car
        calls.append(
            (now_s, tuple(s.session_id for s in sessions), tuple(s.departure_s for s in sessions))
        )
        return {s.session_id: 6.0 for s in sessions}

    spec = dataclasses.replace(tiny_spec, policy="planned", plan_provider=provider, replan_s=1800.0)
    out = simulate(spec)
    t0 = calls[0][0]
    times = [t - t0 for t, _, _ in calls]
    assert times[0] == 0.0
    assert calls[0][1] == ("s1", "s2", "s3")
    assert 3600.0 in times  # s2 left: re-plan at once
    assert 1800.0 in times  # and on the re-plan interval
    # s2 is unclaimed: the hook never sees a departure for it
    assert all(dep[1] is None for _, ids, dep in calls if len(ids) == 3)
    assert out.metrics["violation_amp_seconds"] == 0.0


def test_a_car_plugging_in_starts_at_the_lease_its_charger_holds(tiny_spec: SimSpec) -> None:
    """s1 leaves c1 at 01:00 and s2 plugs into c1 in that same grid step. The charger still
    holds s1's leased 16 A, so s2 draws it at once (as it would live, and as the controller
    counts it) instead of waiting for the next change or lease refresh."""
    t0 = 1_570_000_200.0  # on the 5-minute grid
    recs = tuple(
        SessionRecord(
            session_id=sid,
            station_id="c1",
            arrival_s=t0 + a * 3600,
            departure_s=t0 + d * 3600,
            energy_wh=50_000.0,
        )
        for sid, a, d in (("s1", 0.0, 1.0), ("s2", 1.0, 2.0))
    )
    spec = dataclasses.replace(
        tiny_spec, sessions=recs, building=None, policy="equal", step_s=300.0
    )
    out = simulate(spec)
    full_kwh = 16 * 3 * 230 / 1000  # 11.04 kW for an hour, less s1's first 5 s reaction
    assert out.replay.delivered_wh / 1000 == pytest.approx([full_kwh] * 2, rel=0.003)
    assert out.metrics["violation_amp_seconds"] == 0.0


def test_cars_plug_in_and_out_at_their_true_times(tiny_spec: SimSpec) -> None:
    """On a 5-minute grid a car arriving at 00:01 or 00:02 starts charging then (after the
    cars' 5 s reaction and the controller's decrease-before-increase), not at the next grid
    time, and the current a car frees by leaving at 00:12 goes to the others at once, not at
    00:15. 32 A per line under ``fcfs``: a and b take 16 A; when c comes, b drops to 10 A so
    that c gets its 6 A minimum; when a leaves, b and c both get 16 A."""
    t0 = tiny_spec.sessions[0].arrival_s
    stays = {"a": ("c1", 60, 12 * 60), "b": ("c2", 60, 3600), "c": ("c3", 120, 3600)}
    recs = tuple(
        SessionRecord(
            session_id=sid,
            station_id=station,
            arrival_s=t0 + arrive,
            departure_s=t0 + leave,
            energy_wh=50_000.0,
        )
        for sid, (station, arrive, leave) in stays.items()
    )
    spec = dataclasses.replace(
        tiny_spec, sessions=recs, building=None, step_s=300.0, policy="fcfs", keep_ev=True
    )
    out = simulate(spec)
    rep = out.replay
    assert rep.seg_ev_a is not None

    def draws_at(t_s: float) -> list[float]:
        k = int(np.searchsorted(rep.seg_t_s, t0 + t_s, side="right")) - 1
        return [float(x) for x in rep.seg_ev_a[k]]

    assert draws_at(59) == [0.0, 0.0, 0.0]
    assert draws_at(60 + 15) == [16.0, 16.0, 0.0]
    assert draws_at(120 + 15) == [16.0, 10.0, 6.0]
    assert draws_at(720 + 15) == [0.0, 16.0, 16.0]
    # a charged at 16 A from 00:01:05 until it left at 00:12, to the Wh.
    assert rep.delivered_wh[0] == pytest.approx(16 * (660 - 5) * 3 * 230 / 3600, rel=1e-9)
    assert out.metrics["violation_amp_seconds"] == 0.0


def test_a_probed_full_car_gives_its_current_back_within_the_reclaim_time(
    tiny_spec: SimSpec,
) -> None:
    """The controller probes a full car now and then (offers it current again). Live it runs
    every second and takes the current back ``reclaim_after_s`` (30 s) after the car's
    charger says SuspendedEV; on a 5-minute grid the replay has to wake for that timer, or the
    probed car holds current the others could use until the next grid step. 32 A per line:
    a (full after a few minutes) and b, c (16 A each) — every probe of a takes 6 A from b or
    c, and it should for less than a minute each time."""
    t0 = tiny_spec.sessions[0].arrival_s
    stays = {"a": ("c1", 500.0), "b": ("c2", 90_000.0), "c": ("c3", 90_000.0)}
    recs = tuple(
        SessionRecord(
            session_id=sid,
            station_id=station,
            arrival_s=t0,
            departure_s=t0 + 4 * 3600,
            energy_wh=wh,
        )
        for sid, (station, wh) in stays.items()
    )
    spec = dataclasses.replace(
        tiny_spec, sessions=recs, building=None, step_s=300.0, policy="equal", keep_ev=True
    )
    rep = simulate(spec).replay
    assert rep.seg_ev_a is not None
    after = rep.seg_t_s >= t0 + 1800  # a is full and paused by then
    others = rep.seg_ev_a[after, 1] + rep.seg_ev_a[after, 2]
    short_s = float(rep.seg_dt_s[after][others < 32.0 - 1e-6].sum())
    probes = int(np.count_nonzero(np.diff((others < 32.0 - 1e-6).astype(int)) == 1))
    assert probes >= 3  # a was probed (backing off: 5, 10, 20, 40 min)
    assert short_s <= probes * 60.0


def test_a_direct_replay_pauses_a_full_car_and_shares_its_current(tiny_spec: SimSpec) -> None:
    """``direct`` (the bare allocator, no controller): once a car's charger reports it full
    (SuspendedEV) it is held at 0 A, so the others get its share — as ACN-Sim's schedulers
    stop seeing an EV whose demand is met. 32 A per line and three 16 A cars: equal shares of
    10.7 A while all three charge; a is full after ~4 minutes, then b and c take 16 A each
    (without the pause a full car would keep a third of the line, and its 6 A minimum at
    least)."""
    t0 = tiny_spec.sessions[0].arrival_s
    stays = {"a": ("c1", 500.0), "b": ("c2", 90_000.0), "c": ("c3", 90_000.0)}
    recs = tuple(
        SessionRecord(
            session_id=sid, station_id=station, arrival_s=t0, departure_s=t0 + 3600, energy_wh=wh
        )
        for sid, (station, wh) in stays.items()
    )
    spec = dataclasses.replace(
        tiny_spec, sessions=recs, building=None, policy="equal", direct=True, keep_ev=True
    )
    rep = simulate(spec).replay
    assert rep.seg_ev_a is not None
    early = (rep.seg_t_s >= t0 + 60) & (rep.seg_t_s < t0 + 120)
    assert rep.seg_ev_a[early, 1] == pytest.approx(32 / 3, abs=0.5)
    late = rep.seg_t_s >= t0 + 900
    assert rep.delivered_wh[0] == pytest.approx(500.0)
    assert np.all(rep.seg_ev_a[late, 0] == 0.0)
    assert np.all(rep.seg_ev_a[late, 1:] == 16.0)
