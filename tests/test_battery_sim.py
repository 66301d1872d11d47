"""A stationary battery in the replay: the planner plans it, the same ``BatteryDriver`` as live
drives it within each decision's allocation, and the site's demand charge falls.

The site: a 3x40 A service, a building that draws 5 kW and 15 kW from 11:00 to 14:00 every
day, one car each night; a demand charge of 20 per kW and a flat price. The planner knows the
building from the week before and how long drivers stay from five weeks of sessions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from ampshare.cli._app import _register, app
from ampshare.core.planner import Battery
from ampshare.core.site import Charger, CircuitNode, Connection, NodeKind, Site, VoltageSystem
from ampshare.core.tariff import PriceSeries, Tariff
from ampshare.sim._plant import Battery as PlantBattery
from ampshare.sim.data import SessionRecord
from ampshare.sim.engine import EvOptions
from ampshare.sim.planning import PlannerOptions, PlannerProvider
from ampshare.sim.report import render_report
from ampshare.sim.run import SimOutcome, SimSpec, simulate
from ampshare.sim.series import TimeSeries

H = 3600.0
DAY = 86400.0
T0 = 1_569_974_400.0  # 2019-10-02 00:00 UTC
DAYS = 3
BAT = Battery(
    capacity_wh=20_000.0,
    max_charge_w=10_000.0,
    max_discharge_w=10_000.0,
    soc_wh=10_000.0,
    min_soc_wh=2_000.0,
    max_soc_wh=18_000.0,
)


def _site() -> Site:
    root = CircuitNode(
        id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(40.0, 40.0, 40.0)
    )
    return Site(
        name="shop",
        voltage=VoltageSystem.EU_230_400,
        nodes=(root,),
        chargers=(
            Charger(id="c0", node_id="main", connection=Connection.THREE_PHASE, max_current_a=16.0),
        ),
    )


def _nightly(day: int) -> SessionRecord:
    return SessionRecord(
        session_id=f"d{day}",
        station_id="c0",
        arrival_s=T0 + day * DAY + 20 * H,
        departure_s=T0 + day * DAY + 30 * H,
        energy_wh=10_000.0,
        declared_departure_s=T0 + day * DAY + 30 * H,
        declared_energy_wh=10_000.0,
    )


def _outcome(battery: Battery | None) -> SimOutcome:
    site = _site()
    t = T0 - 8 * DAY + 300.0 * np.arange((DAYS + 8) * 288)
    hour = ((t - T0) % DAY) / H
    building = TimeSeries(
        t_s=t, values=np.where((hour >= 11) & (hour < 14), 15.0, 5.0), unit="kW", source="test"
    )
    tariff = Tariff(
        name="flat + demand",
        energy=PriceSeries(start_s=T0, step_s=H, prices_per_kwh=(0.2,) * 24),
        demand_charge_per_kw_override=20.0,
    )
    provider = PlannerProvider(
        site=site, tariff=tariff, building=building, battery=battery, time_limit_s=None
    )
    provider.seed([_nightly(d) for d in range(-35, 0)])  # how long drivers stay
    spec = SimSpec(
        site=site,
        sessions=tuple(_nightly(d) for d in range(DAYS)),
        policy="planned",
        building=building,
        tariff=tariff,
        step_s=300.0,
        ev=EvOptions(basic=True),
        plan_provider=provider,
        planner=PlannerOptions(battery=battery),
        replan_s=300.0,
        start_s=T0,
        end_s=T0 + DAYS * DAY,
    )
    return simulate(spec)


@pytest.fixture(scope="module")
def shop() -> tuple[SimOutcome, SimOutcome]:
    """The shop's replay without and with the battery (each takes seconds: run once)."""
    return _outcome(None), _outcome(BAT)


def test_the_battery_cuts_the_demand_charge_within_the_limits(
    shop: tuple[SimOutcome, SimOutcome],
) -> None:
    without, with_battery = shop[0].metrics, shop[1].metrics
    assert without["battery_charged_kwh"] is None
    # The 15 kW midday is the month's peak without it; the battery shaves it.
    assert without["demand_charge"] == pytest.approx(15.0 * 20.0, rel=0.01)
    assert with_battery["demand_charge"] is not None
    assert with_battery["demand_charge"] < 0.85 * 300.0
    # Never at the cars' expense, never over a limit.
    assert with_battery["energy_delivered_kwh"] == pytest.approx(
        without["energy_delivered_kwh"], abs=0.1
    )
    assert with_battery["violation_amp_seconds"] == 0.0
    charged, discharged = (
        with_battery["battery_charged_kwh"],
        with_battery["battery_discharged_kwh"],
    )
    assert isinstance(charged, float)
    assert isinstance(discharged, float)
    assert charged > 5.0
    assert discharged > 5.0


def test_the_report_shows_what_the_battery_did(shop: tuple[SimOutcome, SimOutcome]) -> None:
    """The replay keeps the battery's stored energy per segment (within its bounds, ending
    where its charge and discharge put it) and the report draws it beside the import it
    shaved."""
    out = shop[1]
    rep = out.replay
    assert rep.seg_battery_kw is not None
    assert rep.seg_battery_soc_kwh is not None
    soc = rep.seg_battery_soc_kwh
    assert len(soc) == len(rep.seg_t_s)
    assert soc.min() >= BAT.min_soc_wh / 1000 - 1e-6
    assert soc.max() <= (BAT.max_soc_wh or 0.0) / 1000 + 1e-6
    assert soc.max() - soc.min() > 5.0  # it cycled
    charged, discharged = rep.battery_kwh or (0.0, 0.0)
    expected_end = (
        BAT.soc_wh / 1000 + charged * BAT.charge_efficiency - discharged / BAT.discharge_efficiency
    )
    assert soc[-1] == pytest.approx(expected_end, abs=1e-6)
    # its power is the mean over each segment, as the site's import counts it
    hours = rep.seg_dt_s / H
    assert float(np.sum(np.maximum(rep.seg_battery_kw, 0.0) * hours)) == pytest.approx(
        charged, abs=1e-6
    )
    assert float(np.sum(np.maximum(-rep.seg_battery_kw, 0.0) * hours)) == pytest.approx(
        discharged, abs=1e-6
    )
    page = render_report(
        SimSpec(site=_site(), sessions=tuple(_nightly(d) for d in range(DAYS))), [out]
    )
    assert "<h2>Battery (planned)</h2>" in page
    no_battery = render_report(
        SimSpec(site=_site(), sessions=tuple(_nightly(d) for d in range(DAYS))), [shop[0]]
    )
    assert "<h2>Battery" not in no_battery


@given(st.lists(st.tuples(st.floats(-20_000, 20_000), st.floats(0, 7200)), min_size=1, max_size=30))
def test_the_plant_battery_keeps_its_bounds(moves: list[tuple[float, float]]) -> None:
    bat = PlantBattery(model=BAT, soc_wh=BAT.soc_wh)
    for power, dt in moves:
        bat.set(power)
        assert -BAT.max_discharge_w <= bat.power_w <= BAT.max_charge_w
        before = bat.soc_wh
        mean = bat.step(dt)
        assert BAT.min_soc_wh - 1e-6 <= bat.soc_wh <= (BAT.max_soc_wh or 0) + 1e-6
        # the energy at its terminals moved the charge by the efficiency, no more
        if mean > 0:
            assert bat.soc_wh - before == pytest.approx(
                mean * dt / H * BAT.charge_efficiency, abs=1e-6
            )
        elif mean < 0:
            assert before - bat.soc_wh == pytest.approx(
                -mean * dt / H / BAT.discharge_efficiency, abs=1e-6
            )
    assert bat.charged_wh >= 0.0
    assert bat.discharged_wh >= 0.0


def test_simulate_runs_the_site_files_battery_under_planned(tmp_path: Path) -> None:
    fix = Path(__file__).parent / "fixtures" / "sim"
    site = tmp_path / "site.yaml"
    site.write_text(
        (fix / "tiny-site.yaml").read_text(encoding="utf-8")
        + "planner: {enabled: true, price_file: prices.csv, battery_capacity_kwh: 10, "
        "battery_max_charge_kw: 5, battery_max_discharge_kw: 5}\n",
        encoding="utf-8",
    )
    # dear while the first cars take the whole service, cheap from 02:00, dear again at 05:00
    rows = ["timestamp_utc,price_eur_per_mwh"] + [
        f"2019-10-01T{h:02d}:00:00Z,{300 if h < 2 else 50 if h < 5 else 400}" for h in range(12)
    ]
    (tmp_path / "prices.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    _register()
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            "--site",
            str(site),
            "--sessions",
            str(fix / "sessions-acn.csv"),
            "--building-load",
            str(fix / "building.csv"),
            "--ev",
            "basic",
            "--policy",
            "planned,equal",
            "--json",
            "-",
            "--report",
            str(tmp_path / "report.html"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "the planner's battery (10 kWh) is simulated under policy planned" in res.stderr
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count("<h2>Battery") == 1  # planned's; equal had none
    assert "<h2>Battery (planned)</h2>" in page
    planned, equal = json.loads(res.stdout)["runs"]
    assert equal["battery_charged_kwh"] is None  # no plan for it under equal
    moved = planned["battery_charged_kwh"] + planned["battery_discharged_kwh"]
    assert moved > 1.0  # it charges in the cheap hours
    assert planned["violation_amp_seconds"] == 0.0


def test_the_replay_checks_a_battery_with_its_phasors() -> None:
    """A balanced battery is in phase with the line voltages: charging it adds to a
    three-phase car's current on every line, discharging it takes away (a magnitude, as for
    the building, would have added it either way)."""
    from ampshare.sim._compiled import compile_site

    cs = compile_site(_site())
    car = np.array([[10.0]])  # c0 at 10 A per phase
    none = np.zeros((1, 1))
    building = np.zeros((1, 3))
    charging = cs.row_currents_a(car, none, building, np.array([5.0]))[0]
    discharging = cs.row_currents_a(car, none, building, np.array([-5.0]))[0]
    assert charging.tolist() == pytest.approx([15.0, 15.0, 15.0])
    assert discharging.tolist() == pytest.approx([5.0, 5.0, 5.0])
    assert cs.row_currents_a(car, none, building)[0].tolist() == pytest.approx([10.0] * 3)
