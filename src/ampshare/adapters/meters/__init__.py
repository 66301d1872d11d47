"""Meters: the ``MeterSource`` port, its fake, and drivers for Modbus, MQTT and P1 (DSMR).

::

    MeterSpec (site file) --build_meter--> MeterSource --MeterCoordinator--> MeterReading
                                            |- ModbusMeter  (register maps as data, SunSpec)
                                            |- MqttMeter    (topics + JSON pointers)
                                            |- P1Meter      (DSMR telegrams via dsmr-parser)
                                            '- FakeMeter    (tests, demos)

Every driver raises only ``DeviceUnavailable`` (no answer) or ``DeviceProtocolError``
(an unusable answer); ``check_conformance`` holds each of them to that contract.
"""

from ampshare.adapters.meters._conformance import check_conformance
from ampshare.adapters.meters._coordinator import MeterCoordinator, MeterStatus
from ampshare.adapters.meters._factory import (
    build_coordinator,
    build_coordinators,
    build_meter,
    build_meters,
    driver_config,
    register_map_for,
)
from ampshare.adapters.meters._fake import FakeMeter
from ampshare.adapters.meters._maps import BUILTIN_MAPS
from ampshare.adapters.meters._modbus import ModbusLink, ModbusMeter, ModbusTarget
from ampshare.adapters.meters._mqtt import MqttMeter, TopicValue, extract_value
from ampshare.adapters.meters._p1 import P1Meter, parse_telegram, telegram_values
from ampshare.adapters.meters._port import MeterSource
from ampshare.adapters.meters._registers import (
    DataType,
    RegisterMap,
    RegisterSpec,
    decode_map,
    encode_map,
)
from ampshare.adapters.meters._simserver import ModbusMeterServer
from ampshare.adapters.meters._sunspec import sunspec_map
from ampshare.adapters.meters._values import Quantity, reading_from_values

__all__ = [
    "BUILTIN_MAPS",
    "DataType",
    "FakeMeter",
    "MeterCoordinator",
    "MeterSource",
    "MeterStatus",
    "ModbusLink",
    "ModbusMeter",
    "ModbusMeterServer",
    "ModbusTarget",
    "MqttMeter",
    "P1Meter",
    "Quantity",
    "RegisterMap",
    "RegisterSpec",
    "TopicValue",
    "build_coordinator",
    "build_coordinators",
    "build_meter",
    "build_meters",
    "check_conformance",
    "decode_map",
    "driver_config",
    "encode_map",
    "extract_value",
    "parse_telegram",
    "reading_from_values",
    "register_map_for",
    "sunspec_map",
    "telegram_values",
]
