"""Session and time-series loaders: presets, column mappings, and errors that say what to do."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from ampshare.errors import InputError
from ampshare.sim.data import load_series, load_sessions, parse_columns

FIX = Path(__file__).parent / "fixtures" / "sim"


def test_acn_sessions_hide_undeclared_values() -> None:
    got = load_sessions(FIX / "sessions-acn.csv", "acn")
    assert got.skipped == 1  # s4 has no plug-out
    by_id = {r.session_id: r for r in got.records}
    assert set(by_id) == {"s1", "s2", "s3"}
    s1, s2 = by_id["s1"], by_id["s2"]
    assert s1.energy_wh == pytest.approx(11040.0)
    assert s1.declared_energy_wh == pytest.approx(11040.0)
    assert s1.declared_departure_s == s1.departure_s
    # s2 is unclaimed: the file's estimated departure/request are not the driver's.
    assert s2.declared_departure_s is None
    assert s2.declared_energy_wh is None
    assert s2.departure_s - s2.arrival_s == pytest.approx(3600.0)


def test_gzip_and_window(tmp_path: Path) -> None:
    gz = tmp_path / "s.csv.gz"
    gz.write_bytes(gzip.compress((FIX / "sessions-acn.csv").read_bytes()))
    t0 = load_sessions(gz).records[0].arrival_s
    with pytest.raises(InputError, match="no sessions to replay"):
        load_sessions(gz, start_s=t0 + 1)


def test_mapping_without_preset_needs_the_three_columns() -> None:
    cols = parse_columns("arrival=plug_in,departure=plug_out,energy_kwh=kwh,timezone=Europe/Oslo")
    assert (cols.arrival, cols.station, cols.timezone) == ("plug_in", None, "Europe/Oslo")
    with pytest.raises(InputError, match="lacks energy_kwh"):
        parse_columns("arrival=a,departure=b")
    with pytest.raises(InputError, match="unknown key 'colour'"):
        parse_columns("acn,colour=red")


def test_raw_norway_style_file() -> None:
    cols = parse_columns(
        "norway-raw,arrival=plug_in,departure=plug_out,energy_kwh=kwh,station=box,session_id=,user="
    )
    got = load_sessions(FIX / "sessions-generic.csv", cols)
    assert [r.station_id for r in got.records] == ["c1"]
    assert got.records[0].energy_wh == pytest.approx(11040.0)
    assert got.skipped == 1  # plug-out before plug-in
    # 00:00 in Oslo (CEST, +2) is 22:00 UTC the day before
    assert got.records[0].arrival_s % 86400 == pytest.approx(22 * 3600)


def test_errors_name_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "arrival,departure,requested_energy (kWh),station_id\n"
        "2019-10-01T00:00,2019-10-01T01:00,lots,c1\n"
    )
    with pytest.raises(InputError, match=r"bad.csv:2: column 'requested_energy \(kWh\)'"):
        load_sessions(bad, "arrival=arrival,departure=departure,energy_kwh=requested_energy (kWh)")
    bad.write_text(
        "arrival,departure,requested_energy (kWh),station_id\n"
        "2019-10-01T00:00,2019-10-01T01:00,5,c1\n"
    )
    with pytest.raises(InputError, match=r"no column 'claimed'.*fix the column mapping"):
        load_sessions(bad, "acn")
    with pytest.raises(InputError, match="unknown column preset"):
        parse_columns("nope")
    with pytest.raises(InputError, match="cannot open"):
        load_sessions(tmp_path / "missing.csv")


def test_series_zero_order_hold_and_per_line(tmp_path: Path) -> None:
    s = load_series(FIX / "building.csv", "load_kw")
    t0 = s.start_s
    assert s.at(np.array([t0, t0 + 7199, t0 + 7200, t0 + 99999])).tolist() == [
        4.416,
        4.416,
        0.0,
        0.0,
    ]
    assert float(s.max_between(t0 + 100, t0 + 200)) == pytest.approx(4.416)
    p = tmp_path / "lines.csv"
    p.write_text("timestamp_utc,a,b,c\n2019-10-01T00:00:00Z,1,2,3\n2019-10-01T00:15:00Z,4,5,6\n")
    lines = load_series(p, "a,b,c", unit="A")
    assert lines.per_line
    assert lines.at(np.array([lines.start_s + 900.0]))[0].tolist() == [4.0, 5.0, 6.0]
    with pytest.raises(InputError, match="value column"):
        load_series(p, "a,b")
