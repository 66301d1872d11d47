"""The meter port: fake, coordinator, factory from the site model, conformance check."""

from __future__ import annotations

import asyncio
import logging
from types import MappingProxyType

import pytest

from ampshare.adapters.meters import (
    FakeMeter,
    MeterCoordinator,
    MeterSource,
    ModbusMeter,
    MqttMeter,
    P1Meter,
    build_coordinator,
    build_meter,
    check_conformance,
    register_map_for,
)
from ampshare.adapters.meters._factory import driver_config
from ampshare.clock import Clock, VirtualClock
from ampshare.config.meter_drivers import ModbusDriver
from ampshare.core.site import Measurand, MeterSpec
from ampshare.core.snapshot import MeterReading
from ampshare.errors import ConfigError, DeviceProtocolError, DeviceUnavailable


def _spec(driver: str, **params: object) -> MeterSpec:
    return MeterSpec(id="grid", node_id="main", measures=frozenset({Measurand.CURRENT_PER_LINE}),
                     driver=driver, params=MappingProxyType(params), timeout_s=4.0,
                     poll_interval_s=0.5)


class _Hangs:
    """A port implementation that never answers (a test double of the port, not of our code)."""

    meter_id = "hang"

    async def read(self) -> MeterReading:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        return None


class _Rude:
    """A source breaking the contract: foreign exception, then a reading for another meter."""

    meter_id = "rude"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.n = 0

    async def read(self) -> MeterReading:
        self.n += 1
        if self.n == 1:
            raise ValueError("boom")
        return MeterReading(meter_id="other", t_s=self.clock.now_s() + 5, current_a=(-1.0, 0, 0))

    async def close(self) -> None:
        return None


async def test_fake_conforms_healthy_and_failing() -> None:
    clock = VirtualClock(100.0)
    fake = FakeMeter("m", clock)
    assert isinstance(fake, MeterSource)
    assert await check_conformance(fake, clock) == []
    fake.fail(DeviceProtocolError("bad"))
    assert await check_conformance(fake, clock, require_reading=False) == []
    assert await check_conformance(fake, clock) != []  # healthy expected, but it fails


async def test_conformance_check_catches_contract_breaks() -> None:
    clock = VirtualClock(100.0)
    problems = await check_conformance(_Rude(clock), clock, require_reading=False)
    text = "\n".join(problems)
    assert "ValueError" in text
    assert "meter_id 'other'" in text
    assert "t_s" in text
    assert "negative magnitude" in text


async def test_coordinator_tracks_success_error_and_staleness() -> None:
    clock = VirtualClock(0.0)
    fake = FakeMeter("m", clock, current_a=(10.0, 11.0, 12.0))
    coord = MeterCoordinator(fake, clock, timeout_s=3.0)
    assert coord.is_stale()
    assert coord.status().latest is None
    await coord.poll_once()
    clock.advance(2.0)
    fake.fail()
    await coord.poll_once()
    st = coord.status()
    assert st.latest is not None
    assert st.latest.current_a == (10.0, 11.0, 12.0)
    assert (st.last_success_s, st.last_error_s, st.failures, st.stale) == (0.0, 2.0, 1, False)
    assert st.last_error is not None
    assert "no answer" in st.last_error
    clock.advance(1.5)
    assert coord.is_stale()  # 3.5 s old > 3 s: the controller must use its worst case now
    assert coord.latest is not None  # the value is kept for display, flagged stale


async def test_coordinator_cuts_off_a_hanging_read() -> None:
    clock = VirtualClock()
    coord = MeterCoordinator(_Hangs(), clock, timeout_s=0.05)
    assert await coord.poll_once() is None
    assert isinstance(coord.last_error, DeviceUnavailable)


async def test_run_polls_until_stopped_and_closes_the_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ampshare.adapters.meters")
    clock = VirtualClock()
    fake = FakeMeter("m", clock)
    got: list[MeterReading] = []

    def on_reading(r: MeterReading) -> None:
        got.append(r)
        if len(got) == 2:
            fake.fail()
        if fake.reads == 6:
            coord.stop()

    coord = MeterCoordinator(fake, clock, poll_interval_s=0.005, timeout_s=1.0,
                             on_reading=on_reading)
    task = asyncio.create_task(coord.run())
    for _ in range(400):
        await asyncio.sleep(0.005)
        if fake.reads >= 5 and len(got) == 2:
            fake.recover()
        if task.done():
            break
    await asyncio.wait_for(task, 2.0)
    assert fake.closed
    assert len(got) >= 3
    assert [r.message for r in caplog.records].count("meter m lost: meter m: no answer (fake)") == 1


def test_build_meter_picks_the_driver_from_the_spec() -> None:
    clock = VirtualClock()
    assert isinstance(build_meter(_spec("modbus", model="sdm630", host="10.0.0.2"), clock),
                      ModbusMeter)
    assert isinstance(build_meter(_spec("mqtt", topics={"power": "home/p"}), clock), MqttMeter)
    assert isinstance(build_meter(_spec("p1", host="10.0.0.3", dsmr_version=5), clock), P1Meter)
    assert isinstance(build_meter(_spec("sim", base_load_a=4.0), clock), FakeMeter)
    coord = build_coordinator(_spec("sim"), clock)
    assert (coord.poll_interval_s, coord.timeout_s) == (0.5, 4.0)


def test_mqtt_password_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec("mqtt", topics={"power": "p"}, username="ampshare",
                 password_env="AMPSHARE_TEST_MQTT_PW")
    monkeypatch.delenv("AMPSHARE_TEST_MQTT_PW", raising=False)
    with pytest.raises(ConfigError, match="AMPSHARE_TEST_MQTT_PW is not set"):
        build_meter(spec, VirtualClock())
    monkeypatch.setenv("AMPSHARE_TEST_MQTT_PW", "s3cret")
    meter = build_meter(spec, VirtualClock())
    assert isinstance(meter, MqttMeter)
    assert meter._sub._password == "s3cret"  # the listener logs in with it


def test_user_defined_register_map() -> None:
    cfg = driver_config(_spec(
        "modbus", model="custom", host="h", function="input", word_order="little",
        registers=[{"quantity": "current_l1", "address": 10, "type": "i32", "scale": 0.001},
                   {"quantity": "energy_import", "address": 20, "type": "u32",
                    "scale": 1000, "unit": "Wh"}]))
    assert isinstance(cfg, ModbusDriver)
    rmap = register_map_for(cfg)
    assert rmap is not None
    assert (rmap.function, rmap.word_order) == ("input", "little")
    assert [(r.address, r.dtype.value, r.scale) for r in rmap.registers] == [
        (10, "i32", 0.001), (20, "u32", 1000.0)]


@pytest.mark.parametrize(("driver", "params", "text"), [
    ("modbus", {"model": "sdm999", "host": "h"}, "model"),
    ("modbus", {"model": "sdm630"}, "exactly one of host"),
    ("modbus", {"model": "custom", "host": "h"}, "needs a registers"),
    ("modbus", {"model": "custom", "host": "h", "registers": [
        {"quantity": "energy_import", "address": 1, "unit": "kWh"}]}, "scale"),
    ("mqtt", {"topics": {"power": "a/#"}}, "wildcards"),
    ("mqtt", {"topics": {"power": "a"}, "value_path": {"power": "x"}}, "JSON pointer"),
    ("mqtt", {"topics": {"power": "a"}, "value_path": {"current_l1": "/a"}}, "no topic"),
    ("p1", {}, "exactly one of serial_port"),
])
def test_bad_driver_settings_name_the_meter_and_field(
    driver: str, params: dict[str, object], text: str
) -> None:
    with pytest.raises(ConfigError, match=text) as info:
        build_meter(_spec(driver, **params), VirtualClock())
    assert all(i.path.startswith("meters[grid].driver") for i in info.value.issues)


def test_public_api_is_pinned() -> None:
    import ampshare.adapters.meters as meters
    import ampshare.adapters.mqtt as mqtt

    assert sorted(meters.__all__) == [
        "BUILTIN_MAPS", "DataType", "FakeMeter", "MeterCoordinator", "MeterSource", "MeterStatus",
        "ModbusLink", "ModbusMeter", "ModbusMeterServer", "ModbusTarget", "MqttMeter", "P1Meter",
        "Quantity", "RegisterMap", "RegisterSpec", "TopicValue", "build_coordinator",
        "build_coordinators", "build_meter", "build_meters", "check_conformance", "decode_map",
        "driver_config", "encode_map", "extract_value", "parse_telegram", "reading_from_values",
        "register_map_for", "sunspec_map", "telegram_values"]
    assert sorted(mqtt.__all__) == [
        "ChargerView", "MqttBridge", "MqttMessage", "NodeView", "SessionCommand", "SiteView",
        "apply_command", "discovery_messages", "parse_command", "site_view", "state_messages",
        "topic_id"]
    assert all(hasattr(meters, n) for n in meters.__all__)
    assert all(hasattr(mqtt, n) for n in mqtt.__all__)


async def test_a_driver_bug_does_not_stop_the_polling(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock(100.0)
    rude = _Rude(clock)  # raises ValueError first, then answers
    coord = MeterCoordinator(rude, clock, timeout_s=10.0)
    with caplog.at_level(logging.ERROR, logger="ampshare.adapters.meters"):
        assert await coord.poll_once() is None
    assert isinstance(coord.last_error, DeviceProtocolError)
    assert "ValueError: boom" in str(coord.last_error)
    assert any("unexpected error" in r.message for r in caplog.records)
    assert await coord.poll_once() is not None  # the next poll is made, and succeeds
