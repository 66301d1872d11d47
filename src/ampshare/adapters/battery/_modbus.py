"""A battery inverter over Modbus TCP / RTU: state of charge and power read from registers the
site file names, the power setpoint written to another (``config.sections.
ModbusBatteryDriver``). Inverters differ in where these live, not in what they are, so the
three registers are data: address, type, scale, function.

Errors as for meters (``adapters.meters.ModbusLink``): no answer -> ``DeviceUnavailable``;
an exception reply, a wrong count, NaN or an absurd value -> ``DeviceProtocolError``. A
setpoint that the register's type cannot hold is refused before anything is written.
"""

from __future__ import annotations

import math

from ampshare.adapters.meters._modbus import ModbusLink, target_of
from ampshare.adapters.meters._registers import DataType, decode_value, encode_value
from ampshare.clock import Clock
from ampshare.config.sections import BatteryRegister, ModbusBatteryDriver
from ampshare.core.snapshot import BatteryReading
from ampshare.errors import DeviceProtocolError

__all__ = ["ModbusBattery"]

MAX_PLAUSIBLE_W = 10e6  # 10 MW: a larger reading is a wrong map (type, word order, scale)
_INT_RANGE = {
    "u16": (0, 0xFFFF),
    "i16": (-0x8000, 0x7FFF),
    "u32": (0, 0xFFFFFFFF),
    "i32": (-0x80000000, 0x7FFFFFFF),
}


class ModbusBattery:
    """A ``BatteryLink`` over Modbus (see the module docstring)."""

    def __init__(
        self,
        battery_id: str,
        driver: ModbusBatteryDriver,
        clock: Clock,
        *,
        link: ModbusLink | None = None,
    ) -> None:
        self._id = battery_id
        self._d = driver
        self._clock = clock
        self._link = link or ModbusLink(target_of(driver))

    @property
    def battery_id(self) -> str:
        return self._id

    async def read(self) -> BatteryReading:
        t_s = self._clock.now_s()
        soc = await self._value(self._d.soc_pct)
        power = await self._value(self._d.power_w)
        if not 0.0 <= soc <= 100.0:
            raise DeviceProtocolError(
                f"battery {self._id}: state of charge {soc:g} % is not within 0-100; check "
                f"soc_pct's address ({self._d.soc_pct.address}), type and scale"
            )
        if abs(power) > MAX_PLAUSIBLE_W:
            raise DeviceProtocolError(
                f"battery {self._id}: power {power:g} W is not plausible; check power_w's "
                f"address ({self._d.power_w.address}), type, scale and word_order"
            )
        return BatteryReading(battery_id=self._id, t_s=t_s, soc_pct=soc, power_w=power)

    async def set_power(self, power_w: float) -> None:
        reg = self._d.setpoint_w
        raw = power_w / reg.scale
        dtype = DataType(reg.type)
        if reg.type in _INT_RANGE:
            raw = round(raw)
            lo, hi = _INT_RANGE[reg.type]
            if not lo <= raw <= hi:
                raise DeviceProtocolError(
                    f"battery {self._id}: setpoint {power_w:g} W is {raw} in setpoint_w's "
                    f"{reg.type} register, which holds {lo}..{hi}; check its type and scale"
                )
        words = encode_value(raw, dtype, self._d.word_order)
        await self._link.write(self._id, self._d.unit_id, reg.address, words, what="battery")

    async def close(self) -> None:
        self._link.close()

    async def _value(self, reg: BatteryRegister) -> float:
        dtype = DataType(reg.type)
        words = await self._link.read(
            self._id, self._d.unit_id, reg.address, dtype.words, reg.function, what="battery"
        )
        value = decode_value(words, dtype, self._d.word_order) * reg.scale
        if not math.isfinite(value):
            raise DeviceProtocolError(
                f"battery {self._id}: register {reg.address} holds no number (NaN or infinite)"
            )
        return value
