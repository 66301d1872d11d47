"""Pure parts of the OCPP adapter: units, rounding, profiles against the OCPP schemas, tracker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ocpp.messages import Call, _validate_payload

from ampshare.adapters.ocpp._profiles import PROFILE_IDS, ProfileSpec, profile_v16, profile_v201
from ampshare.adapters.ocpp._tracker import ChargerTracker
from ampshare.adapters.ocpp._units import (
    Sample,
    format_time,
    parse_time,
    round_limit_a,
    sample_from_v16,
    sample_from_v201,
    to_si,
)
from ampshare.adapters.ocpp._v16 import capabilities_from_config
from ampshare.adapters.ocpp._v201 import capabilities_from_variables
from ampshare.adapters.ocpp.port import ProfilePurpose
from ampshare.core.site import Charger, Connection, Line
from ampshare.core.snapshot import ChargerStatus
from ampshare.errors import InputError

T0 = 1_700_000_000.0
CH = Charger(id="c", node_id="n", connection=Connection.THREE_PHASE, max_current_a=32.0)


specs = st.builds(
    ProfileSpec,
    purpose=st.sampled_from(list(ProfilePurpose)),
    connector_id=st.integers(0, 2),
    profile_id=st.sampled_from(list(PROFILE_IDS.values())),
    stack_level=st.integers(0, 8),
    limit=st.floats(0, 80, allow_nan=False),
    unit=st.sampled_from(["A", "W"]),
    phases=st.sampled_from([None, 1, 3]),
    transaction_id=st.sampled_from([None, 7, 123456]),
    start_s=st.sampled_from([None, T0, T0 + 0.123]),
    duration_s=st.sampled_from([None, 1, 120]),
)


@given(specs)
def test_every_profile_we_build_passes_the_16_schema(spec: ProfileSpec) -> None:
    # Exactly what _v16 sends; this is why SetChargingProfile may skip the library's
    # validation at run time.
    payload = {"connectorId": spec.connector_id, "csChargingProfiles": profile_v16(spec)}
    _validate_payload(Call("1", "SetChargingProfile", payload), "1.6")


@given(specs)
def test_every_profile_we_build_passes_the_201_schema(spec: ProfileSpec) -> None:
    payload = {"evseId": spec.connector_id, "chargingProfile": profile_v201(spec)}
    _validate_payload(Call("1", "SetChargingProfile", payload), "2.0.1")


def test_watts_are_whole_and_amps_have_one_decimal() -> None:
    spec = ProfileSpec(purpose=ProfilePurpose.TX, connector_id=1, profile_id=1,
                       stack_level=0, limit=11039.7, unit="W")
    sched = profile_v16(spec)["chargingSchedule"]
    assert sched["chargingSchedulePeriod"][0]["limit"] == 11040.0  # type: ignore[index]
    assert profile_v16(spec)["chargingProfileKind"] == "Relative"


@pytest.mark.parametrize(("charger", "limit", "expected"), [
    (CH, 12.37, 12.3),
    (CH, 15.9999999, 16.0),  # float noise is not a reason to give up 0.1 A
    (CH, 40.0, 32.0),  # the charger's maximum
    (CH, 5.9, 0.0),  # below the minimum: pause
    (CH, -1.0, 0.0),
    (Charger(id="w", node_id="n", connection=Connection.L1, resolution_a=1.0), 12.9, 12.0),
    (Charger(id="z", node_id="n", connection=Connection.L1, zero_pauses=False), 3.0, 6.0),
    (Charger(id="s", node_id="n", connection=Connection.L1, max_current_a=32.0,
             allowed_currents_a=(8.0, 16.0, 24.0, 32.0)), 23.9, 16.0),
])
def test_round_limit_never_above_the_decision(charger: Charger, limit: float,
                                              expected: float) -> None:
    assert round_limit_a(charger, limit) == expected


@given(st.floats(0, 100, allow_nan=False))
def test_a_pausable_charger_never_gets_more_than_decided(limit: float) -> None:
    out = round_limit_a(CH, limit)
    assert out <= limit + 1e-9
    assert out == 0.0 or out >= CH.min_current_a


def test_units_normalised() -> None:
    assert to_si(7.4, "Power.Active.Import", "kW") == pytest.approx(7400.0)
    assert to_si(12.5, "Energy.Active.Import.Register", "kWh") == pytest.approx(12500.0)
    assert to_si(16000, "Current.Import", "mA") == pytest.approx(16.0)
    assert to_si(3, "Power.Active.Import", "W", multiplier=3) == pytest.approx(3000.0)
    assert to_si(16, "Current.Import", None) == 16.0  # the measurand's default unit
    with pytest.raises(InputError, match="unsupported unit"):
        to_si(1, "Power.Active.Import", "horsepower")


def test_sampled_values_of_both_versions() -> None:
    s16 = sample_from_v16(T0, {"value": "7.2", "measurand": "Power.Active.Import",
                               "unit": "kW", "phase": "L2-N"})
    assert s16 == Sample(t_s=T0, measurand="Power.Active.Import", value=7200.0,
                         terminal=Line.L2)
    s201 = sample_from_v201(T0, {"value": 16, "measurand": "Current.Import", "phase": "L1",
                                 "unit_of_measure": {"unit": "A"}})
    assert s201.value == 16.0
    assert s201.terminal is Line.L1
    with pytest.raises(InputError):
        sample_from_v16(T0, {"value": "n/a"})
    with pytest.raises(InputError):
        sample_from_v201(T0, {"value": "16"})


def test_time_roundtrip_and_bad_time() -> None:
    assert parse_time(format_time(T0 + 0.25)) == pytest.approx(T0 + 0.25)
    assert parse_time("2023-11-14T22:13:20Z") == T0
    assert parse_time("2023-11-14T23:13:20+01:00") == T0
    with pytest.raises(InputError, match="timestamp"):
        parse_time("yesterday")


def test_tracker_places_late_samples_by_time() -> None:
    tr = ChargerTracker(CH)
    tr.seen(T0)
    tr.start_tx(tx_id="1", connector_id=1, t_s=T0, meter_start_wh=1000.0)
    new = [Sample(t_s=T0 + 60, measurand="Current.Import", value=10.0, terminal=t)
           for t in (Line.L1, Line.L2, Line.L3)]
    new.append(Sample(t_s=T0 + 60, measurand="Energy.Active.Import.Register", value=1500.0))
    tr.on_samples(new)
    old = [Sample(t_s=T0 + 30, measurand="Current.Import", value=25.0, terminal=Line.L1),
           Sample(t_s=T0 + 30, measurand="Energy.Active.Import.Register", value=1200.0)]
    tr.on_samples(old)
    st_ = tr.state()
    assert st_.measured_current_a == (10.0, 10.0, 10.0)
    assert st_.active_phases == 3
    assert tr.session().energy_delivered_wh == 500.0  # type: ignore[union-attr]
    assert [s.t_s for s in tr.history] == sorted(s.t_s for s in tr.history)
    assert len(tr.history) == 6


def test_tracker_status_is_not_hopeful_before_the_charger_reports_it() -> None:
    tr = ChargerTracker(CH, since_s=T0)
    assert tr.state().status is ChargerStatus.OFFLINE
    assert tr.state().t_s == T0  # offline since the central system started
    tr.connected()
    tr.seen(T0 + 5)
    # Connected, nothing reported: never "Available" (that would end a running session).
    assert tr.state().status is ChargerStatus.UNAVAILABLE
    tr.start_tx(tx_id="7", connector_id=1, t_s=T0, meter_start_wh=None)
    assert tr.state().status is ChargerStatus.PREPARING
    tr.on_status(ChargerStatus.CHARGING, T0 + 6)
    assert tr.state().status is ChargerStatus.CHARGING
    tr.gone(T0 + 9)
    assert (tr.state().status, tr.state().t_s) == (ChargerStatus.OFFLINE, T0 + 9)
    tr.connected()
    tr.seen(T0 + 20)
    assert tr.state().status is ChargerStatus.PREPARING  # may have changed while away


def test_capabilities_parsed() -> None:
    caps = capabilities_from_config([
        {"key": "SupportedFeatureProfiles", "value": "Core,SmartCharging"},
        {"key": "ChargingScheduleAllowedChargingRateUnit", "value": "Power"},
        {"key": "ChargeProfileMaxStackLevel", "value": "3"},
    ])
    assert caps.smart_charging
    assert caps.rate_units == ("W",)
    assert caps.max_stack_level == 3
    assert not capabilities_from_config([{"key": "SupportedFeatureProfiles",
                                          "value": "Core"}]).smart_charging
    caps201 = capabilities_from_variables([
        {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "RateUnit"},
         "attribute_status": "Accepted", "attribute_value": "A"},
        {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "Enabled"},
         "attribute_status": "Accepted", "attribute_value": "false"},
    ])
    assert caps201.rate_units == ("A",)
    assert not caps201.smart_charging


def test_a_current_sampled_before_the_charger_said_available_reads_zero() -> None:
    """Chargers sample only during a transaction: the last reading of a car that left would
    otherwise stay, and the controller would subtract it from the meter's total as EV load
    (the building would look that much smaller)."""
    tr = ChargerTracker(CH)
    tr.connected()
    tr.seen(T0)
    tr.on_status(ChargerStatus.CHARGING, T0)
    tr.start_tx(tx_id="1", connector_id=1, t_s=T0, meter_start_wh=0.0)
    tr.on_samples([Sample(t_s=T0 + 60, measurand="Current.Import", value=7.7, terminal=t)
                   for t in (Line.L1, Line.L2, Line.L3)]
                  + [Sample(t_s=T0 + 60, measurand="Power.Active.Import", value=5300.0)])
    assert tr.state().measured_current_a == (7.7, 7.7, 7.7)
    tr.end_tx("1", 1000.0)
    tr.on_status(ChargerStatus.FINISHING, T0 + 70)  # the car may still be plugged in
    assert tr.state().measured_current_a == (7.7, 7.7, 7.7)
    tr.on_status(ChargerStatus.AVAILABLE, T0 + 80)  # unplugged: nothing can flow
    st_ = tr.state()
    assert st_.measured_current_a == (0.0, 0.0, 0.0)
    assert st_.power_w == 0.0
    tr.on_status(ChargerStatus.AVAILABLE, T0 + 90)  # said again: still since T0 + 80
    # a sample taken after it said Available counts as it is
    tr.on_samples([Sample(t_s=T0 + 85, measurand="Current.Import", value=0.4, terminal=Line.L1)])
    assert tr.state().measured_current_a == (0.4, 0.0, 0.0)
    # the next car: the last car's samples stay gone; its own count
    tr.on_status(ChargerStatus.PREPARING, T0 + 100)
    assert tr.state().measured_current_a == (0.4, 0.0, 0.0)
    tr.on_samples([Sample(t_s=T0 + 110, measurand="Current.Import", value=16.0, terminal=t)
                   for t in (Line.L1, Line.L2, Line.L3)])
    assert tr.state().measured_current_a == (16.0, 16.0, 16.0)
