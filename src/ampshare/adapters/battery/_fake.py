"""``FakeBattery``: the shipped fake of ``BatteryLink`` (tests, the ``sim`` driver)."""

from __future__ import annotations

from ampshare.clock import Clock
from ampshare.core.planner import Battery
from ampshare.core.snapshot import BatteryReading
from ampshare.errors import DeviceError, DeviceUnavailable

__all__ = ["FakeBattery"]


class FakeBattery:
    """A battery that follows its setpoint within ``model``'s power limits and state of charge
    bounds, its charge moving with the energy on the injected clock (efficiency each way).

    ``fail(error)`` makes every call raise ``error`` until ``recover`` (``writes_only``: it
    is read but refuses setpoints, as an inverter in local mode does); ``setpoints`` lists
    every power it accepted."""

    def __init__(self, battery_id: str, clock: Clock, model: Battery, *, soc_pct: float) -> None:
        self._id = battery_id
        self._clock = clock
        self.model = model
        self.soc_wh = model.capacity_wh * soc_pct / 100.0
        self.power_w = 0.0  # what it does (charge positive)
        self.setpoints: list[float] = []
        self._t = clock.now_s()
        self._error: DeviceError | None = None
        self._writes_only = False

    @property
    def battery_id(self) -> str:
        return self._id

    def fail(self, error: DeviceError | None = None, *, writes_only: bool = False) -> None:
        self._error = error or DeviceUnavailable(f"battery {self._id}: no answer (fake)")
        self._writes_only = writes_only

    def recover(self) -> None:
        self._error = None
        self._writes_only = False

    async def read(self) -> BatteryReading:
        if not self._writes_only:
            self._check()
        self._advance()
        return BatteryReading(
            battery_id=self._id,
            t_s=self._clock.now_s(),
            soc_pct=100.0 * self.soc_wh / self.model.capacity_wh,
            power_w=self.power_w,
        )

    async def set_power(self, power_w: float) -> None:
        self._check()
        self._advance()
        self.setpoints.append(power_w)
        m = self.model
        self.power_w = min(max(power_w, -m.max_discharge_w), m.max_charge_w)
        self._hold_bounds()

    async def close(self) -> None:
        return None

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def _advance(self) -> None:
        now = self._clock.now_s()
        dt_h = max(0.0, now - self._t) / 3600.0
        self._t = now
        m = self.model
        if self.power_w >= 0:
            self.soc_wh += self.power_w * dt_h * m.charge_efficiency
        else:
            self.soc_wh += self.power_w * dt_h / m.discharge_efficiency
        self._hold_bounds()

    def _hold_bounds(self) -> None:
        # A real battery's management system stops it at its limits: so does the fake.
        top = self.model.capacity_wh if self.model.max_soc_wh is None else self.model.max_soc_wh
        bottom = self.model.min_soc_wh
        full = self.soc_wh >= top and self.power_w > 0
        empty = self.soc_wh <= bottom and self.power_w < 0
        if full or empty:
            self.power_w = 0.0
        self.soc_wh = min(max(self.soc_wh, 0.0), self.model.capacity_wh)
