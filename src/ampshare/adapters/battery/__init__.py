"""Stationary batteries: the ``BatteryLink`` port, its fake, and a Modbus driver.

``ampshare run`` drives a battery from the plan (``app._battery.LiveBattery``): it reads the
state of charge and power every few seconds and writes a power setpoint: over Modbus
(``ModbusBattery``: three registers) or MQTT (``MqttBattery``: two topics in, one out).
``build_battery``
turns the site file's ``battery:`` section (``config.sections.BatterySection``) into a link.
"""

from ampshare.adapters.battery._factory import build_battery
from ampshare.adapters.battery._fake import FakeBattery
from ampshare.adapters.battery._modbus import ModbusBattery
from ampshare.adapters.battery._mqtt import MqttBattery
from ampshare.adapters.battery._port import BatteryLink

__all__ = ["BatteryLink", "FakeBattery", "ModbusBattery", "MqttBattery", "build_battery"]
