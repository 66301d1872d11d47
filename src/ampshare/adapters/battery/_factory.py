"""``build_battery``: the site file's ``battery:`` section as a ``BatteryLink``."""

from __future__ import annotations

from ampshare.adapters.battery._fake import FakeBattery
from ampshare.adapters.battery._modbus import ModbusBattery
from ampshare.adapters.battery._port import BatteryLink
from ampshare.clock import Clock
from ampshare.config.sections import BatterySection, ModbusBatteryDriver
from ampshare.core.planner import Battery

__all__ = ["build_battery"]


def build_battery(section: BatterySection, model: Battery, clock: Clock) -> BatteryLink:
    """``model``: the battery's size and limits (the ``planner:`` section's ``battery_*``),
    which the ``sim`` driver follows."""
    d = section.driver
    if isinstance(d, ModbusBatteryDriver):
        return ModbusBattery(section.id, d, clock)
    return FakeBattery(section.id, clock, model, soc_pct=d.soc_pct)
