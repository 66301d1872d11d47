"""A battery reached over MQTT: state of charge and power arrive on topics, the setpoint is
published (``config.sections.MqttBatteryDriver``).

As for MQTT meters (``adapters.meters.MqttMeter``, whose ``TopicListener`` keeps the
subscription open here too), each value is remembered with the (injected) clock time it
arrived; ``read`` gives both stamped with the older arrival, so one silent topic makes the
reading age and go stale. The setpoint goes out on the same connection (QoS 1, not retained:
a setpoint retained on the broker would be obeyed again by a battery that restarts while
ampshare is down).
"""

from __future__ import annotations

import asyncio
import math

import aiomqtt

from ampshare.adapters.battery._modbus import MAX_PLAUSIBLE_W
from ampshare.adapters.meters._mqtt import Latest, TopicListener, extract_value
from ampshare.clock import Clock
from ampshare.config.sections import MqttBatteryDriver
from ampshare.core.snapshot import BatteryReading
from ampshare.errors import DeviceProtocolError, DeviceUnavailable

__all__ = ["MqttBattery"]


class MqttBattery:
    """A ``BatteryLink`` over MQTT; its subscription starts on the first ``read``."""

    def __init__(
        self,
        battery_id: str,
        driver: MqttBatteryDriver,
        clock: Clock,
        *,
        password: str | None = None,
        first_message_s: float = 2.0,
        reconnect_s: float = 1.0,
    ) -> None:
        self._id = battery_id
        self._d = driver
        self._clock = clock
        self._first_message_s = first_message_s
        self._soc = Latest()
        self._power = Latest()
        self._got_all = asyncio.Event()
        self._sub = TopicListener(
            f"battery {battery_id}",
            host=driver.host,
            port=driver.port,
            topics=[driver.soc_topic, driver.power_topic],
            handle=self.handle,
            username=driver.username,
            password=password,
            reconnect_s=reconnect_s,
        )

    @property
    def battery_id(self) -> str:
        return self._id

    async def read(self) -> BatteryReading:
        await self._started()
        soc = self._value(self._soc, self._d.soc_topic)
        power = self._value(self._power, self._d.power_topic)
        return BatteryReading(
            battery_id=self._id,
            t_s=min(self._soc.t_s, self._power.t_s),
            soc_pct=soc,
            power_w=power,
        )

    def _value(self, latest: Latest, topic: str) -> float:
        if latest.error is not None:
            raise latest.error
        if latest.value is None:
            raise DeviceUnavailable(f"battery {self._id}: nothing received yet on {topic}")
        return latest.value

    async def set_power(self, power_w: float) -> None:
        await self._started()
        client = self._sub.client
        if client is None:
            raise DeviceUnavailable(self._where(self._sub.conn_error))
        payload = f"{power_w / self._d.setpoint_scale:.6g}"
        try:
            await client.publish(self._d.setpoint_topic, payload=payload, qos=1, retain=False)
        except aiomqtt.MqttError as exc:
            raise DeviceUnavailable(self._where(f"publishing the setpoint: {exc}")) from None

    async def close(self) -> None:
        await self._sub.stop()
        self._got_all.clear()
        self._soc, self._power = Latest(), Latest()

    def handle(self, topic: str, payload: bytes | str) -> None:
        """Take one message (called by the subscription; public for replaying recordings)."""
        now = self._clock.now_s()
        d = self._d
        for latest, name, want, path, scale in (
            (self._soc, "state of charge", d.soc_topic, d.soc_path, d.soc_scale),
            (self._power, "power", d.power_topic, d.power_path, d.power_scale),
        ):
            if topic != want:
                continue
            try:
                value = extract_value(payload, path) * scale
                _check(self._id, name, value)
                latest.value, latest.error = value, None
            except DeviceProtocolError as exc:
                latest.error = DeviceProtocolError(f"battery {self._id}: topic {topic}: {exc}")
            latest.t_s = now
        if all(x.value is not None or x.error for x in (self._soc, self._power)):
            self._got_all.set()

    async def _started(self) -> None:
        await self._sub.started(self._got_all, self._first_message_s)
        if self._sub.client is None:
            raise DeviceUnavailable(self._where(self._sub.conn_error))

    def _where(self, what: str) -> str:
        return f"battery {self._id}: MQTT broker {self._d.host}:{self._d.port}: {what}"


def _check(battery_id: str, name: str, value: float) -> None:
    if not math.isfinite(value):
        raise DeviceProtocolError(f"battery {battery_id}: {name} is not a number")
    if name == "state of charge" and not 0.0 <= value <= 100.0:
        raise DeviceProtocolError(f"{name} {value:g} % is not within 0-100; check soc_scale")
    if name == "power" and abs(value) > MAX_PLAUSIBLE_W:
        raise DeviceProtocolError(f"{name} {value:g} W is not plausible; check power_scale")
