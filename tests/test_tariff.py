"""The tariff model against hand-computed SCE TOU-EV-4 costs, and its loaders."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ampshare.config.tariff_files import load_price_series, load_tariff, utc_offsets
from ampshare.core.tariff import Tariff, UtcOffsets, civil_from_epoch, parse_acn_tou
from ampshare.errors import InputError

DATA = Path("/work/shared/data/tariffs")
SCE = DATA / "acnportal_tou" / "sce_tou_ev_4_march_2019.json"
LA = ZoneInfo("America/Los_Angeles")

pytestmark = pytest.mark.skipif(not SCE.exists(), reason="shared tariff data not present")


@pytest.fixture(scope="module")
def sce() -> Tariff:
    return load_tariff(SCE, timezone="America/Los_Angeles")


def _t(*args: int) -> float:
    return datetime(*args, tzinfo=LA).timestamp()


@pytest.mark.parametrize(
    ("when", "price"),
    [
        ((2019, 10, 15, 7, 59), 0.06087),  # winter weekday off-peak
        ((2019, 10, 15, 8, 0), 0.07492),  # mid-peak starts at 08:00 local
        ((2019, 10, 15, 12, 30), 0.0869),  # winter on-peak
        ((2019, 10, 15, 23, 0), 0.06087),
        ((2019, 10, 19, 13, 0), 0.06087),  # Saturday
        ((2019, 7, 15, 13, 0), 0.26668),  # summer weekday on-peak
        ((2019, 7, 13, 13, 0), 0.05623),  # summer Saturday
        ((2019, 11, 4, 12, 0), 0.0869),  # after the DST change: still local noon
        ((2019, 3, 11, 12, 0), 0.0869),  # after spring-forward
    ],
)
def test_sce_prices_follow_local_time(sce: Tariff, when: tuple[int, ...], price: float) -> None:
    assert sce.price_per_kwh(_t(*when)) == pytest.approx(price)
    assert sce.demand_charge_per_kw(_t(*when)) == pytest.approx(15.51)


def test_cost_of_four_hours_at_10_kw_by_hand(sce: Tariff) -> None:
    # Tue 2019-10-15 10:00-14:00 local: 2 h mid-peak + 2 h on-peak at 10 kW.
    t = np.arange(_t(2019, 10, 15, 10, 0), _t(2019, 10, 15, 14, 0), 300.0)
    cost = sce.cost(t, np.full(t.shape, 10.0))
    assert cost.energy_kwh == pytest.approx(40.0)
    assert cost.energy_cost == pytest.approx(20 * 0.07492 + 20 * 0.0869)
    assert cost.demand_charge == pytest.approx(10 * 15.51)
    assert cost.total == pytest.approx(cost.energy_cost + cost.demand_charge)


def test_demand_is_the_15_minute_average_not_the_spike(sce: Tariff) -> None:
    start = _t(2019, 10, 15, 10, 0)
    t = start + 300.0 * np.arange(6)
    p = np.array([30.0, 0, 0, 6, 6, 6])  # one 5-min spike of 30 kW, then 6 kW for 15 min
    cost = sce.cost(t, p)
    assert cost.demand_charge == pytest.approx(10.0 * 15.51)  # (30+0+0)/3
    assert cost.energy_kwh == pytest.approx((30 + 18) / 12)


def test_exports_cost_nothing_and_each_month_pays_its_own_peak(sce: Tariff) -> None:
    t = np.array([_t(2019, 10, 31, 12, 0), _t(2019, 11, 1, 12, 0), _t(2019, 11, 2, 12, 0)])
    cost = sce.cost(t, np.array([8.0, 4.0, -50.0]), step_s=900.0)
    assert len(cost.peak_kw_by_period) == 2
    assert sorted(cost.peak_kw_by_period.values()) == pytest.approx([4.0, 8.0])
    assert cost.demand_charge == pytest.approx(12.0 * 15.51)
    assert cost.energy_kwh == pytest.approx(3.0)


def test_vectorised_prices_agree_with_scalar(sce: Tariff) -> None:
    t = _t(2019, 9, 28, 0, 0) + 1800.0 * np.arange(48 * 5)  # crosses summer -> winter
    vec = sce.prices(t)
    assert [sce.price_per_kwh(float(x)) for x in t] == pytest.approx(list(vec))
    assert {0.05623, 0.26668, 0.0869} <= {round(float(v), 5) for v in vec}


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=-2_000_000_000, max_value=4_000_000_000),
    st.integers(min_value=0, max_value=999),
)
def test_civil_dates_match_datetime(whole_s: int, ms: int) -> None:
    t = whole_s + ms / 1000  # datetime rounds to microseconds; keep exact milliseconds
    year, month, day, weekday, hour = civil_from_epoch(np.array([t]))
    ref = datetime.fromtimestamp(t, UTC)
    assert (int(year[0]), int(month[0]), int(day[0])) == (ref.year, ref.month, ref.day)
    assert int(weekday[0]) == ref.weekday()
    assert float(hour[0]) == pytest.approx(
        ref.hour + ref.minute / 60 + ref.second / 3600 + ref.microsecond / 3.6e9, abs=1e-6
    )


def test_offset_table_matches_zoneinfo() -> None:
    offsets = utc_offsets("America/Los_Angeles", 2019, 2020)
    for t in np.linspace(_t(2019, 1, 2, 0, 0), _t(2020, 12, 30, 0, 0), 500):
        expected = datetime.fromtimestamp(float(t), LA).utcoffset()
        assert expected is not None
        assert float(offsets.offset_s(t)) == expected.total_seconds()
    assert float(UtcOffsets.fixed(3600).offset_s(0.0)) == 3600.0


def test_every_shipped_schedule_parses() -> None:
    for path in sorted((DATA / "acnportal_tou").glob("*.json")):
        tariff = load_tariff(path, timezone="America/Los_Angeles")
        assert np.all(tariff.prices(_t(2019, 1, 1, 0, 0) + 3600.0 * np.arange(24 * 366)) > 0)


def test_bad_schedules_are_named(tmp_path: Path) -> None:
    doc = json.loads(SCE.read_text())
    del doc["schedule"][2]  # no winter weekdays any more
    with pytest.raises(InputError, match="no schedule entry covers month-day 01-01 on weekday 0"):
        parse_acn_tou(doc, source="x.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"schedule": [{"dow_mask": "SOMEDAYS"}]}')
    with pytest.raises(InputError, match=r"bad\.json: schedule\[0\]: missing key"):
        load_tariff(bad)
    bad.write_text("{nope")
    with pytest.raises(InputError, match=r"bad\.json:1: not valid JSON"):
        load_tariff(bad)
    with pytest.raises(InputError, match="unknown time zone"):
        load_tariff(SCE, timezone="Mars/Olympus")


def test_price_series_from_day_ahead_csv(tmp_path: Path) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text(
        "timestamp_utc,price_eur_per_mwh\n2024-01-01T00:00:00Z,50\n"
        "2024-01-01T01:00:00Z,100\n2024-01-01T03:00:00Z,30\n"
    )
    tariff = load_price_series(csv, demand_charge_per_kw=2.0)
    t0 = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    got = tariff.prices(t0 + 3600.0 * np.array([-1, 0, 1.5, 2, 3, 10]))
    assert list(got) == pytest.approx([0.05, 0.05, 0.1, 0.1, 0.03, 0.03])  # gap held, edges flat
    cost = tariff.cost(t0 + 3600.0 * np.arange(4), np.array([1.0, 2.0, 0.0, 1.0]))
    assert cost.energy_cost == pytest.approx(0.05 + 0.2 + 0.03)
    assert cost.demand_charge == pytest.approx(4.0)
    csv.write_text("timestamp_utc,price\n2024-01-01T00:00:00Z,50\n")
    with pytest.raises(InputError, match="missing column 'price_eur_per_mwh'"):
        load_price_series(csv)
