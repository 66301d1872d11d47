"""PV in the live planner: a year's profile per kWp forecasts the PV behind the root meter, and
the building is learned as what the meter saw plus that PV (the meter sees the difference)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ampshare.app._planner import _Forecast
from ampshare.cli._app import _register, app
from ampshare.config.tariff_files import load_pv_profile
from ampshare.core.planner import PvProfile
from ampshare.errors import InputError
from test_planner_live import SITE, config_in

PASADENA = Path("/work/shared/data/solar_pv/pv_clearsky_pasadena_caltech_2019_15min.csv")
H = 3600.0


def _day_profile(kwp: float) -> PvProfile:
    """A made-up year of hourly steps: 0 at night, 0.5 kW/kWp from 10:00 to 14:00 UTC."""
    hours = np.arange(365 * 24) % 24
    return PvProfile(
        start_s=dt.datetime(2019, 1, 1, tzinfo=dt.UTC).timestamp(),
        step_s=H,
        kw_per_kwp=np.where((hours >= 10) & (hours < 14), 0.5, 0.0),
        kwp=kwp,
    )


def test_a_profile_maps_any_year_to_the_same_time_of_year() -> None:
    p = _day_profile(10.0)
    noon_2026 = dt.datetime(2026, 3, 5, 12, 30, tzinfo=dt.UTC).timestamp()
    night_2026 = dt.datetime(2026, 3, 5, 2, 0, tzinfo=dt.UTC).timestamp()
    assert p.power_w([noon_2026, night_2026]).tolist() == [5000.0, 0.0]


@pytest.mark.skipif(not PASADENA.exists(), reason="shared data not on this machine")
def test_the_shared_clear_sky_profile_loads() -> None:
    p = load_pv_profile(PASADENA, 10.0)
    assert p.step_s == 900.0
    june_1pm_pdt = dt.datetime(2026, 6, 15, 20, 0, tzinfo=dt.UTC).timestamp()
    june_1am_pdt = june_1pm_pdt + 12 * H
    noon, night = p.power_w([june_1pm_pdt, june_1am_pdt])
    assert 5_000.0 < noon < 9_000.0  # a clear June noon in Pasadena, 10 kWp
    assert night == 0.0


def test_a_bad_profile_names_file_and_row(tmp_path: Path) -> None:
    bad = tmp_path / "pv.csv"
    bad.write_text("timestamp_utc,pv_kW_per_kWp\n2019-01-01T00:00:00Z,0\n"
                   "2019-01-01T00:15:00Z,750\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"pv.csv:3: pv_kW_per_kWp 750.0 is not a PV output"):
        load_pv_profile(bad, 5.0)
    bad.write_text("time,kw\n2019-01-01T00:00:00Z,0\n", encoding="utf-8")
    with pytest.raises(InputError, match="missing column 'timestamp_utc'"):
        load_pv_profile(bad, 5.0)


def test_the_forecast_learns_the_building_behind_the_pv(tmp_path: Path) -> None:
    """Four weeks of a root meter that saw 20 A per line of building minus a 10 kWp array's
    output: the plan is told a flat 13.8 kW building and the PV per slot, not a building that
    dips at noon."""
    site = config_in(tmp_path).site
    pv = _day_profile(10.0)
    v_ln = site.voltage.line_to_neutral_v
    start = dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp()  # a Monday
    t = start + 60.0 * np.arange(28 * 24 * 60)
    net_a = 20.0 - pv.power_w(t) / (3 * v_ln)  # per line, the PV spread over three lines
    seen = np.column_stack([net_a] * 3)
    now = start + 28 * 86400.0
    fc = _Forecast(site=site, data={site.root.id: (t, seen)}, weeks=4, quantile=0.9, pv=pv)
    got = fc(now, 900.0, 96)  # the next 24 h in 15-minute slots
    assert got.building_power_w is not None
    assert got.pv_power_w is not None
    assert np.allclose(got.building_power_w, 20.0 * 3 * v_ln, atol=1.0)
    noon = (np.arange(96) * 900.0 + 450.0) // H
    assert np.allclose(got.pv_power_w, np.where((noon >= 10) & (noon < 14), 5000.0, 0.0))
    # The fuses carried the net current: the line rows keep it (lower at noon).
    lines = got.building_line_a[site.root.id]
    assert lines[(12 * 4)].max() < lines[0].max()
    # Without the profile the same meter is the building as seen (the dip stays in it).
    plain = _Forecast(site=site, data={site.root.id: (t, seen)}, weeks=4, quantile=0.9)(
        now, 900.0, 96
    )
    assert plain.pv_power_w is None
    assert plain.building_power_w is not None
    assert plain.building_power_w[48] < plain.building_power_w[0] - 4000.0


def test_ampshare_run_says_it_forecasts_pv_and_names_a_bad_profile(tmp_path: Path) -> None:
    _register()
    (tmp_path / "pv.csv").write_text(
        "timestamp_utc,pv_kW_per_kWp\n2019-01-01T00:00:00Z,0\n2019-01-01T01:00:00Z,0.5\n",
        encoding="utf-8",
    )
    site = tmp_path / "site.yaml"
    base = SITE.replace("  horizon_h: 12\n", "  horizon_h: 12\n  pv_profile_file: pv.csv\n"
                        "  pv_kwp: 8\n")
    site.write_text(base + "ocpp: {host: 127.0.0.1, port: 0}\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["run", str(site), "--duration-s", "0.5"])
    assert res.exit_code == 0, res.output
    assert "planner PV forecast: pv.csv x 8 kWp behind the root meter" in res.output
    site.write_text(base.replace("pv.csv", "nothere.csv") + "ocpp: {host: 127.0.0.1, port: 0}\n",
                    encoding="utf-8")
    res = CliRunner().invoke(app, ["run", str(site), "--duration-s", "0.5"])
    assert res.exit_code == 2
    assert f"{site}: planner.pv_profile_file" in res.output
    assert "nothere.csv" in res.output
