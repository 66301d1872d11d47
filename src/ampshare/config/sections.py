"""Pydantic models of the site file's top-level sections other than the electrical site itself.

Each section belongs to the package that uses it (``control`` to the controller, ``planner`` to
the planner, ``ocpp`` to the central system, ``web`` to the API); its owner edits only its own
class here. The site schema includes them as optional keys, so that ``ampshare check`` validates
the whole file, with ``extra="forbid"`` everywhere.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ampshare.config.meter_drivers import ModbusConnection

__all__ = [
    "BatteryRegister",
    "BatterySection",
    "ControlSection",
    "ModbusBatteryDriver",
    "MqttBatteryDriver",
    "MqttSection",
    "OcppSection",
    "PlannerSection",
    "PolicySection",
    "SimBatteryDriver",
    "WebSection",
    "WebToken",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicySection(_Strict):
    """How headroom is shared (see ``ampshare.core.allocation.PolicyName``)."""

    name: Literal[
        "equal", "fcfs", "priority", "deadline", "planned", "static", "uncontrolled"
    ] = Field(default="equal", description="the sharing policy")
    rotation_interval_s: float = Field(default=900.0, gt=0)
    deadline_mode: str = Field(default="edf", pattern="^(edf|llf)$")


class ControlSection(_Strict):
    """Controller timing and safety settings (``ampshare.control.ControlSettings``; the field
    names match, so ``ControlSettings(**section.model_dump())`` builds it). Seconds and A."""

    max_period_s: float = Field(default=1.0, gt=0, le=60, description="a step at least this often")
    coalesce_s: float = Field(default=0.05, ge=0, le=5, description="wait for a burst of inputs")
    min_interval_s: float = Field(default=0.2, ge=0, le=10, description="steps never closer")
    lease_s: float = Field(default=120.0, gt=0, le=86400, description="validity of a sent limit")
    ack_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="a command not acknowledged is sent again after"
    )
    ev_reaction_s: float = Field(
        default=5.0, ge=0, le=60, description="time an EV may take to obey a lower pilot"
    )
    confirm_tolerance_a: float = Field(
        default=0.5, ge=0, le=10, description="measured <= new limit + this confirms a decrease"
    )
    ramp_up_a_per_s: float | None = Field(
        default=None, gt=0, description="fastest increase per charger [A/s]; null: at once"
    )
    deadband_a: float = Field(default=1.0, ge=0, le=10, description="smaller increases not sent")
    min_charge_s: float = Field(
        default=60.0, ge=0, le=3600, description="shortest charge before a rotation pause"
    )
    min_pause_s: float = Field(
        default=30.0, ge=0, le=3600, description="shortest pause before a restart"
    )
    meter_timeout_s: float | None = Field(
        default=None, gt=0, le=3600, description="stale after this; null: each meter's timeout_s"
    )
    meter_recover_s: float = Field(
        default=10.0, ge=0, le=3600, description="fresh this long before trusted again"
    )
    noncompliance_tolerance_a: float = Field(
        default=2.0, ge=0, le=32, description="draw above its limit that is tolerated"
    )
    noncompliance_s: float = Field(
        default=10.0, gt=0, le=3600, description="over limit + tolerance this long: non-compliant"
    )
    reclaim_below_a: float = Field(
        default=4.0, gt=0, le=80, description="a draw this far under the limit is reclaimed"
    )
    reclaim_after_s: float = Field(
        default=30.0, gt=0, le=3600, description="after the under-draw lasted this long"
    )
    reclaim_margin_a: float = Field(default=2.0, ge=0, le=32, description="cap = draw + this")
    probe_interval_s: float = Field(
        default=300.0, gt=0, le=86400,
        description="a reclaim cap is probed (lifted) after this; doubled after each miss",
    )
    startup_grace_s: float = Field(
        default=120.0,
        ge=0,
        le=3600,
        description="a charger not connected this long after a (re)start raises its offline alert",
    )


class PlannerSection(_Strict):
    """Receding-horizon planner (issue 9; ``ampshare.core.planner``): horizon and slots, the
    tariff (acnportal TOU JSON or a price CSV, times in ``timezone``), demand charge,
    contracted capacity, PV, a stationary battery, and defaults for undeclared sessions.
    File paths are relative to the site file. Units: h, s, kW, kWh, %."""

    enabled: bool = False
    horizon_h: float = Field(default=24.0, gt=0, le=168, description="planning horizon")
    slot_s: float = Field(default=900.0, ge=60, le=3600, description="length of a plan slot")
    replan_interval_s: float = Field(default=300.0, gt=0, le=3600)
    time_budget_s: float = Field(default=1.0, gt=0, le=60, description="late: use deadline")
    safety_quantile: float = Field(default=0.9, ge=0, le=1, description="building forecast")
    forecast_weeks: int = Field(default=4, ge=1, le=52, description="same weekdays to look at")
    timezone: str = Field(default="UTC", description="IANA zone of the tariff's local times")
    tariff_file: str | None = Field(default=None, description="acnportal TOU schedule JSON")
    price_file: str | None = Field(default=None, description="CSV: timestamp_utc, price/MWh")
    demand_charge_per_kw: float | None = Field(default=None, ge=0, description="override")
    hold_peak: bool = Field(
        default=True, description="with a demand charge: no charging beyond the plan's peak"
    )
    contracted_capacity_kw: float | None = Field(default=None, gt=0)
    pv_meter: str | None = Field(
        default=None, description="replaced by role: pv on the meter under meters:"
    )
    pv_profile_file: str | None = Field(default=None, description="CSV: kW per kWp")
    pv_kwp: float | None = Field(default=None, gt=0)
    battery_capacity_kwh: float | None = Field(default=None, gt=0)
    battery_max_charge_kw: float | None = Field(default=None, gt=0)
    battery_max_discharge_kw: float | None = Field(default=None, gt=0)
    battery_efficiency: float = Field(default=0.95, gt=0, le=1, description="each direction")
    battery_min_soc_pct: float = Field(default=10.0, ge=0, le=100)
    battery_max_soc_pct: float = Field(default=90.0, ge=0, le=100)
    default_dwell_h: float = Field(default=8.0, gt=0, le=168, description="undeclared stay")
    default_energy_kwh: float | None = Field(default=None, gt=0, description="None: all it takes")
    priority_factor: float = Field(default=4.0, ge=1, description="energy weight per tier")
    prefer: Literal["energy", "ready"] = Field(
        default="energy",
        description="among plans with (nearly) the same energy, serve first: energy = the most "
        "energy over time; ready = the cars closest to their request (more cars leave ready)",
    )
    energy_priority: Literal["strict", "expected"] = Field(
        default="strict",
        description="strict = every kWh a car may still take comes before the demand-charge "
        "peak and the price, however unlikely the car is still there; expected = a kWh is "
        "worth its chance of delivery, so an unlikely one does not raise the peak (a lower "
        "demand charge for a little energy)",
    )
    max_facet_deg: float = Field(default=10.0, ge=1, le=45, description="polygon step")

    @field_validator("pv_meter")
    @classmethod
    def _pv_meter_is_a_role(cls, v: str | None) -> str | None:
        # Refused with the way to say it: a PV meter is declared where meters are, with its
        # driver, and ``role: pv`` keeps it out of the node totals the controller reads.
        if v is not None:
            raise ValueError(
                f"a PV meter is declared under meters: with role: pv (e.g. "
                f"{{id: {v}, node: <the node behind whose meter the PV feeds in>, role: pv, "
                "driver: ...}); remove planner.pv_meter"
            )
        return v

    def model_post_init(self, context: object, /) -> None:
        # Cross-field rules; pydantic reports a ValueError here like any field error.
        if self.tariff_file and self.price_file:
            raise ValueError("give tariff_file or price_file, not both")
        battery = (self.battery_capacity_kwh, self.battery_max_charge_kw,
                   self.battery_max_discharge_kw)
        if any(v is not None for v in battery) and any(v is None for v in battery):
            raise ValueError("a battery needs battery_capacity_kwh, battery_max_charge_kw "
                             "and battery_max_discharge_kw")
        if self.battery_min_soc_pct >= self.battery_max_soc_pct:
            raise ValueError("battery_min_soc_pct must be below battery_max_soc_pct")
        if (self.pv_profile_file is None) != (self.pv_kwp is None):
            raise ValueError("pv_profile_file and pv_kwp go together")


class BatteryRegister(_Strict):
    """One register of a battery inverter: the raw value times ``scale`` gives % (state of
    charge) or W (power, charge positive; ``scale: -1`` flips a device that counts discharge
    positive)."""

    address: int = Field(ge=0, le=65535, description="0-based protocol address")
    type: Literal["u16", "i16", "u32", "i32", "f32"] = "i16"
    scale: float = Field(default=1.0, description="raw x scale = % or W")
    function: Literal["holding", "input"] = Field(
        default="holding", description="read with FC 3 (holding) or FC 4 (input)"
    )

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, v: float) -> float:
        if v == 0:
            raise ValueError("scale must not be 0")
        return v


class ModbusBatteryDriver(ModbusConnection):
    """A battery inverter over Modbus TCP (``host``) or RTU (``serial_port``): where its state
    of charge and power are read and where the power setpoint is written (holding registers,
    FC 16). Inverters name these differently; the manual's register list gives the three."""

    type: Literal["modbus"] = "modbus"
    word_order: Literal["big", "little"] = "big"
    soc_pct: BatteryRegister
    power_w: BatteryRegister
    setpoint_w: BatteryRegister

    @model_validator(mode="after")
    def _writable(self) -> ModbusBatteryDriver:
        if self.setpoint_w.function != "holding":
            raise ValueError("setpoint_w is written, so it is a holding register")
        return self


class MqttBatteryDriver(_Strict):
    """A battery reached over MQTT (Home Assistant, an inverter's own MQTT, a bridge): its state
    of charge and power arrive on topics (a plain number, or JSON with an RFC 6901 pointer to
    it), the power setpoint is published as a plain number. ``*_scale`` converts into % and W
    (``power_scale: -1`` flips a device that counts discharge positive); ``setpoint_scale`` is
    W per unit sent (1000: the device takes kW)."""

    type: Literal["mqtt"] = "mqtt"
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password_env: str | None = Field(
        default=None, pattern="^[A-Za-z_][A-Za-z0-9_]*$", description="env var with the password"
    )
    soc_topic: str = Field(min_length=1)
    soc_path: str = Field(default="", description="JSON pointer; empty: a plain number")
    soc_scale: float = 1.0
    power_topic: str = Field(min_length=1)
    power_path: str = Field(default="", description="JSON pointer; empty: a plain number")
    power_scale: float = 1.0
    setpoint_topic: str = Field(min_length=1)
    setpoint_scale: float = Field(default=1.0, description="W per unit published")

    @model_validator(mode="after")
    def _consistent(self) -> MqttBatteryDriver:
        for name in ("soc_topic", "power_topic", "setpoint_topic"):
            if any(c in getattr(self, name) for c in "+#"):
                raise ValueError(f"{name}: one concrete topic, no + or # wildcards")
        for name in ("soc_path", "power_path"):
            pointer = getattr(self, name)
            if pointer and not pointer.startswith("/"):
                raise ValueError(f"{name}: {pointer!r} is not a JSON pointer (it starts with /)")
        for name in ("soc_scale", "power_scale", "setpoint_scale"):
            if getattr(self, name) == 0:
                raise ValueError(f"{name} must not be 0")
        return self


class SimBatteryDriver(_Strict):
    """A simulated battery (demo, tests): follows its setpoint within the planner section's
    power limits, its state of charge moving with the energy."""

    type: Literal["sim"] = "sim"
    soc_pct: float = Field(default=50.0, ge=0, le=100, description="at start")


class BatterySection(_Strict):
    """A stationary battery behind the root meter that ``ampshare run`` drives from the plan
    (its size and limits are the ``planner:`` section's ``battery_*``). It is read every
    ``poll_s``; a reading older than ``timeout_s`` is stale, and the battery is then told to
    idle and its discharge is assumed at its maximum (never counted on). The setpoint is sent
    when it changes and at least every ``refresh_s`` (inverters drop a remote setpoint their
    watchdog has not seen renewed)."""

    id: str = Field(default="battery", min_length=1, max_length=64)
    driver: Annotated[
        ModbusBatteryDriver | MqttBatteryDriver | SimBatteryDriver, Field(discriminator="type")
    ] = Field(default_factory=SimBatteryDriver)
    poll_s: float = Field(default=2.0, gt=0, le=300)
    timeout_s: float = Field(default=10.0, gt=0, le=3600)
    refresh_s: float = Field(default=30.0, gt=0, le=3600)
    deadband_w: float = Field(default=200.0, ge=0, description="smaller changes are not sent")


class OcppSection(_Strict):
    """The OCPP central system (issue 6): where it listens, who may connect, how it meters.

    ``password_hashes`` maps charge point id to a hash made by
    ``ampshare.adapters.ocpp.hash_password`` (never the password itself). Security profile 1
    requires HTTP Basic auth from every charger, 2 additionally TLS (``tls_cert_path``).
    """

    host: str = "0.0.0.0"
    port: int = Field(default=9000, ge=0, le=65535, description="0: any free port")
    auto_register: bool = Field(default=False, description="accept ids not in the site")
    security_profile: int = Field(default=0, ge=0, le=2, description="0 none, 1 Basic, 2 +TLS")
    password_hashes: dict[str, str] = Field(default_factory=dict)
    tls_cert_path: str | None = None
    tls_key_path: str | None = None
    max_messages_per_s: float = Field(default=20.0, gt=0, description="per connection, sustained")
    max_burst: int = Field(default=60, ge=1, description="per connection, messages at once")
    meter_sample_interval_s: int = Field(default=10, ge=1, le=3600)
    heartbeat_interval_s: int = Field(default=300, ge=10, le=86400)
    min_write_interval_s: float = Field(default=1.0, ge=0, le=300)
    call_timeout_s: float = Field(default=10.0, gt=0, le=120)
    fallback_limit_a: float | None = Field(default=None, ge=0, description="override static share")


class WebToken(_Strict):
    """One API token, stored only as its hash (``python3 -c "from ampshare.web import
    hash_token; print(hash_token('the-token'))"``)."""

    name: str = Field(min_length=1, description="who or what holds it (for the log)")
    sha256: str = Field(pattern="^sha256:[0-9a-f]{64}$", description="hash_token(token)")
    role: str = Field(default="read", pattern="^(read|driver|admin)$")


class WebSection(_Strict):
    """REST API, dashboard and store (issue 8)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    store_url: str = Field(
        default="sqlite:///ampshare.db",
        description="sqlite:///path.db (WAL) or postgresql://user@host:port/db",
    )
    tokens: tuple[WebToken, ...] = Field(default=(), description="API tokens (hashed) with roles")
    recent_retention_s: float = Field(default=6 * 3600.0, gt=0, description="1 s samples kept")
    history_retention_d: float = Field(default=400.0, gt=0, description="60 s history kept")


class MqttSection(_Strict):
    """State publishing, Home Assistant discovery and session commands over MQTT (issue 7;
    ``ampshare.adapters.mqtt.MqttBridge``, run by ``ampshare run`` when this key is present).

    The password is never in the file: ``password_env`` names the environment variable that
    holds it. ``prefix`` defaults to ``ampshare/<site name>``."""

    enabled: bool = Field(default=True, description="false: keep the section, run no bridge")
    host: str = Field(default="127.0.0.1", min_length=1, description="the broker")
    port: int = Field(default=1883, ge=1, le=65535)
    prefix: str | None = Field(
        default=None, min_length=1, pattern="^[^#+]+$", description="state and command topics"
    )
    discovery_prefix: str = Field(default="homeassistant", min_length=1, pattern="^[^#+]+$")
    username: str | None = Field(default=None, min_length=1)
    password_env: str | None = Field(
        default=None, pattern="^[A-Za-z_][A-Za-z0-9_]*$", description="env var with the password"
    )
    publish_interval_s: float = Field(
        default=1.0, ge=0.1, le=3600, description="state published at most this often"
    )
    reconnect_s: float = Field(default=2.0, gt=0, le=300, description="wait before reconnecting")
