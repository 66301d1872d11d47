"""The live planner's building-load forecast: what each step's allocation saw at the fresh
metered nodes is kept (one sample a minute, a few weeks) and every solve plans around the
same weekday and time of the weeks seen — or, before a week is seen, the highest load seen."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from ampshare.app._planner import WEEK_S, LivePlanner, LoadHistory
from ampshare.config import load_config, parse_site
from ampshare.config.tariff_files import planner_from_section
from ampshare.core.allocation import Allocation, ChargerLimits, NodeHeadroom, RotationState
from ampshare.core.snapshot import Session
from test_planner_live import SITE  # 32 A service, two chargers, planned, 12 h horizon

DAY = 86400.0
T0 = 1_750_032_000.0  # a Monday 00:00 UTC


def _seen(node_a: dict[str, float], *, stale: bool = False, measured: bool = True) -> Allocation:
    rows = tuple(
        NodeHeadroom(
            node_id=nid,
            limit_a=(32.0, 32.0, 32.0),
            other_load_a=(a, a, a),
            ev_load_a=(0.0, 0.0, 0.0),
            headroom_a=(32.0 - a,) * 3,
            measured=measured,
            stale=stale,
        )
        for nid, a in node_a.items()
    )
    return Allocation(limits=ChargerLimits.of(()), headroom=rows, rotation=RotationState())


def _office(t_s: float) -> float:
    """10 A from 08:00 to 18:00, 2 A otherwise."""
    hour = (t_s - T0) % DAY / 3600.0
    return 10.0 if 8.0 <= hour < 18.0 else 2.0


def test_one_sample_a_minute_only_from_fresh_meters_and_old_ones_dropped() -> None:
    h = LoadHistory(sample_s=60.0, lookback_weeks=1)
    for k in range(10):  # every 30 s for 5 minutes: 5 samples
        h.observe(T0 + 30.0 * k, _seen({"main": 3.0}))
    assert h.samples("main") == 5
    h.observe(T0 + 400.0, _seen({"sub": 4.0}, stale=True))  # a worst case, not a reading
    h.observe(T0 + 400.0, _seen({"calc": 4.0}, measured=False))  # no meter there
    assert h.samples("sub") == 0
    assert h.samples("calc") == 0
    h.observe(T0 + WEEK_S + 2 * DAY, _seen({"main": 3.0}))  # a week and a day later
    assert h.samples("main") == 1  # everything older than the lookback and a day is gone


def test_the_forecast_is_the_same_time_a_week_before() -> None:
    h = LoadHistory(sample_s=60.0)
    for t in np.arange(T0, T0 + 8 * DAY, 60.0):
        h.observe(float(t), _seen({"main": _office(float(t))}))
    start = T0 + 7 * DAY  # the next Monday 00:00
    fc = h.forecast(parse_site(SITE))(start, 900.0, 96)
    lines = fc.building_line_a["main"]
    assert lines.shape == (96, 3)
    hours = np.arange(96) * 0.25
    want = np.where((hours >= 8.0) & (hours < 18.0), 10.0, 2.0)
    np.testing.assert_allclose(lines[:, 0], want)
    assert fc.building_power_w is not None
    np.testing.assert_allclose(fc.building_power_w, want * 3 * 230.0, rtol=1e-3)


def test_before_a_week_is_seen_the_forecast_is_the_highest_load_seen() -> None:
    h = LoadHistory()
    assert not h.forecast(parse_site(SITE))(T0, 900.0, 4).building_line_a
    for k, a in enumerate((4.0, 9.0, 5.0)):
        h.observe(T0 + 60.0 * k, _seen({"main": a}))
    fc = h.forecast(parse_site(SITE))(T0 + 300.0, 900.0, 4)
    np.testing.assert_allclose(fc.building_line_a["main"], 9.0)


def test_a_solve_leaves_room_for_the_building_load_seen(tmp_path: Path) -> None:
    """32 A service, 20 A of building load seen: the car's plan stays within the 12 A left,
    where without the history it would plan all 32 A."""
    path = tmp_path / "site.yaml"
    path.write_text(SITE, encoding="utf-8")
    config = load_config(path)
    assert config.planner is not None
    car = Session(
        session_id="s1", charger_id="cp1", arrival_s=T0, departure_s=T0 + 4 * 3600.0,
        energy_wanted_wh=60_000.0,
    )
    blind = LivePlanner(planner_from_section(config.planner, config.site, tmp_path))
    p0 = asyncio.run(blind.replan(T0 + 600.0, (car,)))
    assert p0.status.usable
    assert p0.current_a.max() == pytest.approx(32.0, abs=0.1)
    seeing = LivePlanner(planner_from_section(config.planner, config.site, tmp_path))
    for k in range(10):
        seeing.observe(T0 + 60.0 * k, _seen({"main": 20.0}))
    p1 = asyncio.run(seeing.replan(T0 + 600.0, (car,)))
    assert p1.status.usable
    assert p1.current_a.max() <= 12.0 + 1e-6
    assert p1.current_a.max() == pytest.approx(12.0, abs=0.2)
    assert p1.sessions[0].will_not_be_ready
