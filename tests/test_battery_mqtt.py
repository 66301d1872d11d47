"""The MQTT battery driver against a real Mosquitto on loopback (``test_mqtt``'s broker
fixture): state of charge and power from topics, the setpoint published, bad payloads and a
missing broker named."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from ampshare.adapters.battery import MqttBattery
from ampshare.clock import VirtualClock
from ampshare.config.sections import MqttBatteryDriver
from ampshare.errors import DeviceProtocolError, DeviceUnavailable
from test_mqtt import Broker, _publish, broker, prefix

__all__ = ["broker", "prefix"]


def _driver(broker: Broker, prefix: str, **kw: object) -> MqttBatteryDriver:
    fields: dict[str, object] = {
        "host": broker[0],
        "port": broker[1],
        "soc_topic": f"{prefix}/battery/state",
        "soc_path": "/soc",
        "power_topic": f"{prefix}/battery/state",
        "power_path": "/power_kw",
        "power_scale": 1000.0,
        "setpoint_topic": f"{prefix}/battery/set",
        "setpoint_scale": 1000.0,
    }
    fields.update(kw)
    return MqttBatteryDriver.model_validate(fields)


async def test_the_battery_is_read_from_topics_and_takes_its_setpoint(
    broker: Broker, prefix: str
) -> None:
    clock = VirtualClock(1000.0)
    state = f"{prefix}/battery/state"
    await _publish(broker, state, json.dumps({"soc": 62.5, "power_kw": -3.2}), retain=True)
    bat = MqttBattery("store", _driver(broker, prefix), clock)
    got: list[str] = []
    try:
        r = await bat.read()
        assert (r.battery_id, r.soc_pct, r.power_w, r.t_s) == ("store", 62.5, -3200.0, 1000.0)
        async with aiomqtt.Client(broker[0], broker[1]) as peer:
            await peer.subscribe(f"{prefix}/battery/set")
            await bat.set_power(4500.0)  # published in kW: setpoint_scale 1000
            async with asyncio.timeout(5):
                async for message in peer.messages:
                    got.append(bytes(message.payload).decode())  # type: ignore[arg-type]
                    break
        assert got == ["4.5"]
        # A payload without the value is named, and no number is passed on.
        clock.advance(5.0)
        await _publish(broker, state, json.dumps({"soc": "full"}))
        assert "value at '/soc' is not a number: 'full'" in await _refused(bat, f"topic {state}")
        # A state of charge the scale makes absurd is refused too.
        await _publish(broker, state, json.dumps({"soc": 625, "power_kw": 0}))
        assert "check soc_scale" in await _refused(bat, "625 % is not within 0-100")
    finally:
        await bat.close()
        await _publish(broker, state, "", retain=True)  # clear the retained message


async def _refused(bat: MqttBattery, text: str) -> str:
    """The first read error (within 5 s) that says ``text``; a timeout fails the test."""
    async with asyncio.timeout(5):
        while True:
            try:
                await bat.read()
            except DeviceProtocolError as exc:
                if text in str(exc):
                    return str(exc)
            await asyncio.sleep(0.05)


async def test_a_missing_broker_is_named(broker: Broker, prefix: str) -> None:
    del broker
    free = ("127.0.0.1", 1)  # nothing listens on port 1
    bat = MqttBattery("store", _driver(free, prefix), VirtualClock(0.0), first_message_s=0.5)
    try:
        with pytest.raises(DeviceUnavailable, match=r"battery store: MQTT broker 127\.0\.0\.1:1"):
            await bat.read()
        with pytest.raises(DeviceUnavailable, match="MQTT broker"):
            await bat.set_power(1000.0)
    finally:
        await bat.close()


def test_bad_mqtt_battery_settings_are_refused() -> None:
    base = {"soc_topic": "b/soc", "power_topic": "b/p", "setpoint_topic": "b/set"}
    with pytest.raises(ValueError, match="no \\+ or # wildcards"):
        MqttBatteryDriver.model_validate({**base, "soc_topic": "b/+"})
    with pytest.raises(ValueError, match="is not a JSON pointer"):
        MqttBatteryDriver.model_validate({**base, "power_path": "power"})
    with pytest.raises(ValueError, match="setpoint_scale must not be 0"):
        MqttBatteryDriver.model_validate({**base, "setpoint_scale": 0})
