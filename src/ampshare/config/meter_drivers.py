"""Pydantic models of each meter driver's settings in the site file (``meters[].driver``).

Owned by the meter adapters (issue 7); the site schema (``ampshare.config.schema``) imports
``MeterDriverConfig`` and validates ``driver:`` against it, so that a bad Modbus address is
reported by ``ampshare check`` with its file, key path and line like any other mistake.
``ampshare.adapters.meters.build_meter`` validates ``MeterSpec.params`` against the same models,
so the file and the running driver never disagree.

Quantity names (``current_l1`` …) and their units are those of
``ampshare.adapters.meters.Quantity``: A, V, W and Wh after ``scale``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "MEASURAND_QUANTITIES",
    "QUANTITY_UNITS",
    "MeterDriverConfig",
    "ModbusConnection",
    "ModbusDriver",
    "MqttDriver",
    "P1Driver",
    "RegisterConfig",
    "SimDriver",
    "provided_measurands",
]

QuantityName = Literal[
    "current_l1", "current_l2", "current_l3", "voltage_l1", "voltage_l2", "voltage_l3",
    "power", "power_l1", "power_l2", "power_l3", "energy_import",
]
QUANTITY_UNITS = {"c": "A", "v": "V", "p": "W", "e": "Wh"}  # by the name's first letter
ModbusModel = Literal["sdm630", "sdm72d-m", "em24", "em340", "b23", "b24", "umg604", "sunspec",
                      "custom"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimDriver(_Strict):
    """A simulated meter (demo, tests): replays a profile or follows a fixed value."""

    type: Literal["sim"] = "sim"
    profile: str | None = None  # a load profile name or CSV path
    base_load_a: float = Field(default=0.0, ge=0)


class RegisterConfig(_Strict):
    """One register of a user-defined map (``model: custom``).

    ``address`` is the 0-based protocol address; the raw value times ``scale`` must give
    ``unit``, which is fixed by the quantity (A, V, W, Wh): write ``scale: 1000`` for a kWh
    register, ``scale: 0.001`` for a mA register.
    """

    quantity: QuantityName
    address: int = Field(ge=0, le=65535)
    type: Literal["u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64"] = "f32"
    scale: float = Field(default=1.0, description="raw value x scale = value in unit")
    unit: str | None = Field(default=None, description="A, V, W or Wh (checks the scale)")

    @model_validator(mode="after")
    def _unit_matches(self) -> RegisterConfig:
        want = QUANTITY_UNITS[self.quantity[0]]
        if self.unit is not None and self.unit != want:
            raise ValueError(f"{self.quantity} is stored in {want}, not {self.unit}; "
                             f"convert with scale (e.g. kWh -> Wh is scale: 1000)")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self


class ModbusConnection(_Strict):
    """Where a Modbus device is: TCP (``host``) or RTU (``serial_port``), its unit id, and how
    long to wait. Meters (``ModbusDriver``) and battery inverters
    (``config.sections.ModbusBatteryDriver``) share it."""

    host: str | None = None
    port: int = Field(default=502, ge=1, le=65535)
    serial_port: str | None = None
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    unit_id: int = Field(default=1, ge=0, le=247)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    retries: int = Field(default=2, ge=0, le=10)

    @model_validator(mode="after")
    def _one_link(self) -> ModbusConnection:
        if (self.host is None) == (self.serial_port is None):
            raise ValueError("give exactly one of host (Modbus TCP) or serial_port (Modbus RTU)")
        return self


class ModbusDriver(ModbusConnection):
    """A Modbus TCP (``host``) or RTU (``serial_port``) meter with a register map by model name.

    ``model: custom`` takes ``registers``; ``function`` and ``word_order`` then say how to read
    them (for a named model they come from its built-in map).
    """

    type: Literal["modbus"] = "modbus"
    model: ModbusModel = Field(description="register map by meter model, or custom")
    registers: tuple[RegisterConfig, ...] = ()
    function: Literal["holding", "input"] | None = Field(
        default=None, description="custom maps: holding (FC 3, the default) or input (FC 4)")
    word_order: Literal["big", "little"] | None = Field(
        default=None, description="custom maps: big (high word first, the default) or little")

    @model_validator(mode="after")
    def _consistent(self) -> ModbusDriver:
        if self.model == "custom" and not self.registers:
            raise ValueError("model: custom needs a registers: list (quantity, address, type)")
        if self.model != "custom" and (self.registers or self.function or self.word_order):
            raise ValueError("registers, function and word_order are only for model: custom "
                             f"({self.model} has its own map)")
        names = [r.quantity for r in self.registers]
        if len(set(names)) != len(names):
            raise ValueError("each quantity may appear only once in registers")
        return self


class MqttDriver(_Strict):
    """Readings arriving on MQTT topics (Shelly, Tasmota, Home Assistant, zigbee2mqtt).

    ``topics`` maps a quantity to its topic (several quantities may share one JSON topic);
    ``value_path`` maps a quantity to an RFC 6901 JSON pointer into that topic's payload
    (``/a_current``, ``/SML/Power_curr``); without one the payload must be a plain number.
    ``scale`` multiplies the value into the quantity's unit (``1000`` for kW -> W).
    """

    type: Literal["mqtt"] = "mqtt"
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    topics: dict[QuantityName, str] = Field(
        default_factory=dict, description="quantity (current_l1, power, ...) -> topic"
    )
    value_path: dict[QuantityName, str] = Field(
        default_factory=dict, description="quantity -> JSON pointer into the payload"
    )
    scale: dict[QuantityName, float] = Field(default_factory=dict)
    username: str | None = None
    password_env: str | None = Field(
        default=None, description="name of the environment variable holding the password "
        "(passwords are not written into site files)")

    @model_validator(mode="after")
    def _consistent(self) -> MqttDriver:
        if not self.topics:
            raise ValueError("topics: must name at least one quantity and its topic")
        for name, topic in self.topics.items():
            if not topic or any(c in topic for c in "+#"):
                raise ValueError(f"topics.{name}: {topic!r} must be one concrete topic "
                                 "(no + or # wildcards)")
        for name, pointer in self.value_path.items():
            if name not in self.topics:
                raise ValueError(f"value_path.{name}: no topic given for {name} in topics:")
            if pointer and not pointer.startswith("/"):
                raise ValueError(f"value_path.{name}: {pointer!r} is not a JSON pointer "
                                 "(it starts with '/', e.g. /a_current)")
        return self


class P1Driver(_Strict):
    """A DSMR smart-meter P1 port over serial (``serial_port``) or TCP (``host``/``port``).

    ``dsmr_version`` is one of dsmr-parser's: 2.2, 4, 5, 5B (Belgium), 5L (Luxembourg),
    5S (Sweden), Q3D.
    """

    type: Literal["p1"] = "p1"
    serial_port: str | None = None
    host: str | None = None
    port: int = Field(default=2000, ge=1, le=65535)
    dsmr_version: Literal["2.2", "4", "5", "5B", "5L", "5S", "Q3D"] = "5"

    @field_validator("dsmr_version", mode="before")
    @classmethod
    def _version_as_text(cls, value: object) -> object:
        # ``dsmr_version: 5`` is read by YAML as a number; the version names are strings.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return f"{value:g}"
        return value

    @model_validator(mode="after")
    def _consistent(self) -> P1Driver:
        if (self.host is None) == (self.serial_port is None):
            raise ValueError("give exactly one of serial_port or host (P1 over TCP)")
        return self


MeterDriverConfig = Annotated[
    SimDriver | ModbusDriver | MqttDriver | P1Driver, Field(discriminator="type")
]


MEASURAND_QUANTITIES: dict[str, tuple[str, ...]] = {
    "current": ("current_l1", "current_l2", "current_l3"),
    "voltage": ("voltage_l1", "voltage_l2", "voltage_l3"),
    "power": ("power",),
    "power_per_line": ("power_l1", "power_l2", "power_l3"),
    "energy": ("energy_import",),
}
"""The site file's ``measures`` names and the driver quantities that deliver each."""


def provided_measurands(driver: SimDriver | ModbusDriver | MqttDriver | P1Driver
                        ) -> frozenset[str] | None:
    """What a driver's settings can deliver (``measures`` names); None: everything it is asked
    for (built-in register maps, P1 telegrams, the simulator's meters)."""
    if isinstance(driver, ModbusDriver) and driver.model == "custom":
        names: set[str] = {r.quantity for r in driver.registers}
    elif isinstance(driver, MqttDriver):
        names = set(driver.topics)
    else:
        return None
    return frozenset(m for m, qs in MEASURAND_QUANTITIES.items() if names & set(qs))
