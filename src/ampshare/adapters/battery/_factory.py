"""``build_battery``: the site file's ``battery:`` section as a ``BatteryLink``."""

from __future__ import annotations

import os

from ampshare.adapters.battery._fake import FakeBattery
from ampshare.adapters.battery._modbus import ModbusBattery
from ampshare.adapters.battery._mqtt import MqttBattery
from ampshare.adapters.battery._port import BatteryLink
from ampshare.clock import Clock
from ampshare.config.sections import BatterySection, ModbusBatteryDriver, MqttBatteryDriver
from ampshare.core.planner import Battery
from ampshare.errors import ConfigError, ConfigIssue

__all__ = ["build_battery"]


def _password(battery_id: str, env: str | None) -> str | None:
    """The broker password from the environment variable the site file names (passwords
    are not written into site files)."""
    if env is None:
        return None
    if env not in os.environ:
        raise ConfigError([ConfigIssue(
            file="<site>", path="battery.driver.password_env",
            message=f"environment variable {env} is not set (battery {battery_id})",
            hint=f"export {env}=... before starting ampshare")])
    return os.environ[env]


def build_battery(section: BatterySection, model: Battery, clock: Clock) -> BatteryLink:
    """``model``: the battery's size and limits (the ``planner:`` section's ``battery_*``),
    which the ``sim`` driver follows."""
    d = section.driver
    if isinstance(d, ModbusBatteryDriver):
        return ModbusBattery(section.id, d, clock)
    if isinstance(d, MqttBatteryDriver):
        return MqttBattery(section.id, d, clock, password=_password(section.id, d.password_env))
    return FakeBattery(section.id, clock, model, soc_pct=d.soc_pct)
