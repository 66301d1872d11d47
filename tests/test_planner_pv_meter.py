"""PV measured by a meter (site file ``meters:`` with ``role: pv``): only the planner reads it.

The root meter sees the building minus the PV. With the PV measured, the planner learns the
building as what the root meter saw plus what the PV meter measured at that time, and forecasts
the PV from its own days at the low quantile; the controller never sees the PV meter, so its
output can never be mistaken for a node's total.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from ampshare.adapters.meters import BUILTIN_MAPS, ModbusMeterServer
from ampshare.adapters.ocpp import FakeChargerLink
from ampshare.app import Supervisor, SupervisorOptions
from ampshare.app._planner import PvMeters, _Forecast, pv_output_w
from ampshare.cli.meters import profile_values
from ampshare.clock import SystemClock
from ampshare.config import dump_site, load_config, parse_site
from ampshare.config.tariff_files import planner_from_section
from ampshare.core.snapshot import MeterReading
from ampshare.errors import ConfigError
from test_planner_pv import _day_profile
from test_run_modbus import _until

H = 3600.0
SITE = """
nodes: [{id: main, limit_a: 63}]
meters:
  - {id: house, node: main}
  - {id: roof, node: main, role: pv, timeout_s: 5}
"""


def test_a_pv_meter_is_kept_apart_from_the_node_totals() -> None:
    site = parse_site(SITE, name="site.yaml")
    assert [m.id for m in site.meters] == ["house"]
    assert [m.id for m in site.pv_meters] == ["roof"]
    # The file written back keeps the role, and reads back the same.
    dumped = dump_site(site)
    assert [m.get("role") for m in dumped["meters"]] == [None, "pv"]
    again = parse_site(dumped, name="dumped")
    assert (again.meters, again.pv_meters) == (site.meters, site.pv_meters)


@pytest.mark.parametrize(
    ("extra", "where", "what"),
    [
        ("fallback_a: 10", "meters[1].fallback_a", "a PV meter (role: pv) has no fallback"),
        ("includes_ev_load: false", "meters[1].includes_ev_load", "describes a node's total"),
        ("role: solar", "meters[1].role", "valid values: total, pv"),
    ],
)
def test_what_a_pv_meter_cannot_be_is_refused_with_file_and_key(
    extra: str, where: str, what: str
) -> None:
    text = SITE.replace(
        "role: pv, timeout_s: 5", extra if "role" in extra else f"role: pv, {extra}"
    )
    with pytest.raises(ConfigError) as info:
        parse_site(text, name="site.yaml")
    msg = str(info.value)
    assert f"site.yaml:5: {where}" in msg, msg
    assert what in msg


def test_the_output_is_read_whatever_sign_the_meter_gives_it() -> None:
    def reading(**kw: object) -> MeterReading:
        return MeterReading(meter_id="roof", t_s=0.0, **kw)  # type: ignore[arg-type]

    assert pv_output_w(reading(power_w=-4200.0), 230.0) == 4200.0  # import-positive meter
    assert pv_output_w(reading(power_w=4200.0), 230.0) == 4200.0  # generation-positive
    assert pv_output_w(reading(power_per_line_w=(-1000.0, -1000.0, None)), 230.0) == 2000.0
    assert pv_output_w(reading(current_a=(10.0, 10.0, 10.0)), 230.0) == pytest.approx(6900.0)
    assert pv_output_w(reading(current_a=(10.0, float("nan"), 10.0)), 230.0) is None
    assert pv_output_w(reading(), 230.0) is None


def test_the_pv_total_is_known_only_while_every_pv_meter_is_fresh() -> None:
    site = parse_site(
        SITE + "  - {id: carport, node: main, role: pv, timeout_s: 5}\n", name="site.yaml"
    )
    pv = PvMeters(site.pv_meters, 230.0)
    pv.observe(MeterReading(meter_id="roof", t_s=100.0, power_w=-3000.0))
    assert pv.total_w(101.0) is None  # the carport has not read: part of the PV is not the PV
    pv.observe(MeterReading(meter_id="carport", t_s=101.0, power_w=-1000.0))
    assert pv.total_w(102.0) == 4000.0
    assert pv.total_w(105.5) is None  # the roof's reading is older than its 5 s timeout


def test_the_forecast_learns_the_building_and_the_pv_from_the_pv_meter(tmp_path: Path) -> None:
    """Four weeks of a root meter that saw a flat 20 A per line of building minus what a
    10 kWp array made, and of the PV meter measuring it: sunny days at 5 kW from 10 to 14 UTC,
    but yesterday was cloudy (2 kW), and one day the PV meter was lost. The plan is told the
    flat building and, for tomorrow's noon, the cloudy day's PV (the low quantile of the last
    week: less sun than seen most days, so never less import than may come)."""
    site = parse_site(SITE, name="site.yaml")
    v_ln = site.voltage.line_to_neutral_v
    sunny = _day_profile(10.0)
    start = dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp()
    t = start + 60.0 * np.arange(28 * 24 * 60)
    day = ((t - start) // 86400).astype(int)
    pv_w = sunny.power_w(t) * np.where(day == 27, 0.4, 1.0)
    net_a = 20.0 - pv_w / (3 * v_ln)
    seen = np.column_stack([net_a] * 3)
    measured = np.where(day == 20, np.nan, pv_w)  # the PV meter lost for a day
    now = start + 28 * 86400.0
    fc = _Forecast(
        site=site, data={"main": (t, seen)}, weeks=4, quantile=0.9, measured_pv_w=measured
    )
    got = fc(now, 900.0, 96)
    assert got.building_power_w is not None
    assert got.pv_power_w is not None
    assert np.allclose(got.building_power_w, 20.0 * 3 * v_ln, atol=1.0)
    noon = (np.arange(96) * 900.0 + 450.0) // H
    assert np.allclose(got.pv_power_w, np.where((noon >= 10) & (noon < 14), 2000.0, 0.0))
    # The line rows keep the net currents the fuse carried (lower while the sun shines).
    assert got.building_line_a["main"][48].max() < got.building_line_a["main"][0].max()
    # With a profile too, a day the PV meter has not covered yet takes the profile's output.
    fresh = 60.0 * np.arange(6 * 60)  # six hours from midnight of the first day
    short = _Forecast(
        site=site,
        data={"main": (start + fresh, np.full((fresh.size, 3), 20.0))},
        weeks=4,
        quantile=0.9,
        pv=sunny,
        measured_pv_w=np.zeros(fresh.size),
    )(start + 86400.0, 900.0, 96)
    assert short.pv_power_w is not None
    assert short.pv_power_w[:24].tolist() == [0.0] * 24  # the night it measured: no PV
    assert short.pv_power_w[48] == pytest.approx(5000.0)  # noon, not seen yet: the profile


async def test_run_reads_the_pv_meter_for_the_planner_only(tmp_path: Path) -> None:
    """Two pymodbus servers on loopback: the house meter (SDM630, 9.2 kW) and the PV meter
    (SDM630 registers, 3 kW exported). The controller counts the house meter alone; the
    planner learns a building of what the house meter saw plus the 3 kW."""
    house = ModbusMeterServer.for_map(BUILTIN_MAPS["sdm630"], profile_values(9200.0))
    roof = ModbusMeterServer.for_map(BUILTIN_MAPS["sdm630"], profile_values(-3000.0))
    ports = [await house.start(), await roof.start()]
    driver = (
        "{{type: modbus, model: sdm630, host: 127.0.0.1, port: {}, timeout_s: 0.3, retries: 0}}"
    )
    path = tmp_path / "site.yaml"
    path.write_text(
        "nodes: [{id: main, limit_a: 63}]\n"
        "chargers: [{id: cp1, node: main, max_a: 32}]\n"
        "meters:\n"
        f"  - {{id: house, node: main, poll_s: 0.1, driver: {driver.format(ports[0])}}}\n"
        f"  - {{id: roof, node: main, role: pv, poll_s: 0.1, driver: {driver.format(ports[1])}}}\n"
        "policy: {name: planned}\n"
        "control: {max_period_s: 0.2}\n"
        "planner: {enabled: true, horizon_h: 2}\n",
        encoding="utf-8",
    )
    config = load_config(path)
    clock = SystemClock()
    mpc = planner_from_section(config.planner, config.site, tmp_path, str(path))
    sup = Supervisor(
        config,
        clock=clock,
        link=FakeChargerLink(config.site.chargers, clock),
        options=SupervisorOptions(planner=mpc),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    try:
        planner = sup.planner
        assert planner is not None
        assert planner.pv_meters is not None
        pv_meters = planner.pv_meters

        def learned() -> bool:
            return (
                sup.last_result is not None
                and pv_meters.total_w(clock.now_s()) is not None
                and planner.history.samples("main") > 0
            )

        await _until(learned, 5.0, lambda: (sup.last_result, planner.history.samples("main")))
        assert "roof" not in sup.state.meters  # the controller has no track of the PV meter
        assert sup.state.meters["house"].last is not None
        main = next(h for h in sup.last_result.allocation.headroom if h.node_id == "main")  # type: ignore[union-attr]
        # What the controller counts on 'main' is the house meter's, with nothing of the PV
        # in it (the charger, not connected yet, is in its start-up grace).
        assert main.other_load_a == pytest.approx((16.0, 13.2, 10.8), abs=0.01)
        assert pv_meters.total_w(clock.now_s()) == pytest.approx(3000.0)
        # The planner's building is what the root meter saw plus the PV at that time.
        fc = planner.history.forecast(config.site)(clock.now_s(), 900.0, 4)
        assert fc.building_power_w is not None
        seen_w = sum(main.other_load_a) * config.site.voltage.line_to_neutral_v
        assert fc.building_power_w == pytest.approx([seen_w + 3000.0] * 4, abs=1.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await house.stop()
        await roof.stop()
