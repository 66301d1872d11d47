"""Capacity study on the tiny garage: scaling rules and the pass/fail verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ampshare.cli._app import _register, app
from ampshare.config import load_site
from ampshare.sim.capacity import capacity_study, scale_sessions
from ampshare.sim.data import SessionRecord
from ampshare.sim.engine import EvOptions
from ampshare.sim.run import SimSpec
from ampshare.sim.series import TimeSeries
from ampshare.sim.sites import scale_chargers

FIX = Path(__file__).parent / "fixtures" / "sim"
H = 3600.0


def _streams() -> tuple[SessionRecord, ...]:
    """Two households, each plugging in at 18:00 for 12 h wanting 11.04 kWh (1 h at 16 A)."""
    return tuple(
        SessionRecord(
            session_id=f"{u}-{d}",
            station_id=u,
            arrival_s=d * 24 * H + 18 * H,
            departure_s=d * 24 * H + 30 * H,
            energy_wh=11040.0,
        )
        for u in ("flat-1", "flat-2")
        for d in range(2)
    )


def test_scale_sessions_gives_each_charger_one_stream() -> None:
    got = scale_sessions(_streams(), 5, seed=3)
    assert len(got) == 10  # 5 streams of 2 sessions: both streams used, then reused
    assert {r.station_id for r in got} == {f"s{k}" for k in range(5)}
    assert len({r.session_id for r in got}) == 10
    assert scale_sessions(_streams(), 5, seed=3) == got  # deterministic


def test_scale_chargers_copies_wiring() -> None:
    site = load_site(FIX / "tiny-site.yaml")
    big = scale_chargers(site, 7)
    assert len(big.chargers) == 7
    assert {c.node_id for c in big.chargers} == {"main"}
    assert len({c.id for c in big.chargers}) == 7
    assert [c.id for c in scale_chargers(site, 2).chargers] == ["c1", "c2"]


def test_dynamic_carries_more_than_static() -> None:
    """32 A per line minus 6.4 A of building (4.416 kW): static gives (32 - 6.4) / N per
    charger, so at N = 5 (5.12 A, below the 6 A minimum) nobody charges; equal shares 25.6 A
    among the cars plugged in: four fit at 6 A at once and rotation lets the fifth in, and
    12 h is plenty for 11.04 kWh each."""
    site = load_site(FIX / "tiny-site.yaml")
    building = TimeSeries(t_s=np.array([0.0]), values=np.array([4.416]), unit="kW")
    spec = SimSpec(
        site=site, sessions=_streams(), building=building, step_s=300.0, ev=EvOptions(basic=True)
    )
    res = capacity_study(spec, [2, 4, 5], ("static", "equal"), target=0.95)
    by = {(p.policy, p.chargers): p for p in res.points}
    assert by["static", 4].passed  # 25.6 / 4 = 6.4 A: 12 h x 4.4 kW is enough
    assert not by["static", 5].passed  # 5.12 A < 6 A: static pauses everyone
    assert by["static", 5].demands_met_ratio == 0.0
    assert by["equal", 5].passed
    assert res.best == {"static": 4, "equal": 5}
    assert all(p.violation_amp_seconds == 0.0 for p in res.points)
    # In two worker processes: the very same points, in the same order.
    heard: list[tuple[int, str]] = []
    par = capacity_study(
        spec,
        [2, 4, 5],
        ("static", "equal"),
        target=0.95,
        workers=2,
        on_point=lambda p: heard.append((p.chargers, p.policy)),
    )
    assert par == res
    assert sorted(heard) == sorted((p.chargers, p.policy) for p in res.points)


def test_cli_table_json_and_plot(tmp_path: Path) -> None:
    _register()
    out, png = tmp_path / "c.json", tmp_path / "c.png"
    res = CliRunner().invoke(
        app,
        [
            "capacity",
            "--site",
            str(FIX / "tiny-site.yaml"),
            "--sessions",
            str(FIX / "sessions-acn.csv"),
            "--chargers",
            "1,3",
            "--policies",
            "static,equal",
            "--json",
            str(out),
            "--plot",
            str(png),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert set(doc["best"]) == {"static", "equal"}
    assert len(doc["points"]) == 4
    assert png.read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(
        app,
        [
            "capacity",
            "--site",
            str(FIX / "tiny-site.yaml"),
            "--sessions",
            str(FIX / "sessions-acn.csv"),
            "--chargers",
            "a lot",
        ],
    )
    assert bad.exit_code == 2
    assert "--chargers 'a lot'" in bad.output


@pytest.mark.parametrize("n", [1, 3])
def test_each_point_counts_every_session(n: int) -> None:
    site = load_site(FIX / "tiny-site.yaml")
    res = capacity_study(SimSpec(site=site, sessions=_streams(), step_s=300.0), [n], ("equal",))
    assert res.points[0].sessions == 2 * n


def test_core_values_with_read_only_maps_pickle() -> None:
    """What the worker processes receive: a site whose meters carry read-only params, and a
    planner's defaults with a per-user map, come back equal and still read-only."""
    import pickle
    from types import MappingProxyType

    from ampshare.core.planner import SessionDefaults

    site = load_site(FIX / "garage-3x63.yaml")
    assert isinstance(site.meters[0].params, MappingProxyType)
    back = pickle.loads(pickle.dumps(site))
    assert back == site
    assert isinstance(back.meters[0].params, MappingProxyType)
    d = SessionDefaults(per_user=MappingProxyType({"u1": (3600.0, 5000.0)}))
    d2 = pickle.loads(pickle.dumps(d))
    assert d2 == d
    assert isinstance(d2.per_user, MappingProxyType)


def _die(code: int) -> int:
    import os

    os._exit(code)  # a worker killed under it (out of memory, a signal)


def test_a_dead_worker_is_a_clear_error() -> None:
    from ampshare.errors import AmpshareError
    from ampshare.sim.parallel import map_in_processes

    with pytest.raises(AmpshareError, match=r"worker process died .*--workers 1"):
        map_in_processes(_die, [(3,), (3,)], workers=2)
