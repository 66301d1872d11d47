"""The site file's schema: pydantic v2 models, ``extra="forbid"`` everywhere.

These models check the *shape* of each part (types, ranges, known keys). Relations between
parts (parents exist, ids unique, a charger's connection exists on this voltage system, child
limits below parents) are checked afterwards in ``_checks``, so that one run reports both kinds.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from ampshare.config.meter_drivers import MeterDriverConfig, SimDriver
from ampshare.config.sections import (
    BatterySection,
    ControlSection,
    MqttSection,
    OcppSection,
    PlannerSection,
    PolicySection,
    WebSection,
)
from ampshare.core.site import (
    Connection,
    LimitUnit,
    Line,
    Measurand,
    NodeKind,
    PhaseRotation,
    PrimaryWinding,
    VoltageSystem,
)

__all__ = [
    "ID_PATTERN",
    "MAX_CURRENT_A",
    "PROTOCOLS",
    "ChargerModel",
    "LimitInput",
    "LoadModel",
    "MeterModel",
    "NodeModel",
    "PrimaryModel",
    "SiteFileModel",
]

MAX_CURRENT_A = 10_000.0
"""Anything above 10 kA per line is a typo, not a site (the largest LV services are ~6 kA)."""

MAX_POWER_W = 50e6
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/\-]*$"
PROTOCOLS = ("ocpp1.6", "ocpp2.0.1", "sim")

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN, max_length=64)]

LimitInput = float | tuple[float, ...] | dict[Line, float]
"""A per-line current as written: one number (every line), a list [L1, L2, L3] or {L1: ..}."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_amps(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        number = re.match(r"^\s*(-?[\d.]+)\s*[A-Za-z]+\s*$", value) if isinstance(
            value, str) else None
        fix = f" (write {number[1]}: the unit is in the key's name)" if number else ""
        raise ValueError(f"expected a number of amperes, got {value!r}{fix}")
    if not 0 < value <= MAX_CURRENT_A:
        raise ValueError(f"{value} A is not a plausible limit: use a value in (0, 10000]")
    return float(value)


def parse_limit(value: Any) -> LimitInput | None:
    """Accept ``63``, ``[63, 63, 40]`` or ``{L1: 63, L3: 40}``; each value in (0, 10000] A."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        if not 1 <= len(value) <= 3:
            raise ValueError("a list of line limits has one value per line: [L1, L2, L3]")
        return tuple(_check_amps(v) for v in value)
    if isinstance(value, dict):
        out: dict[Line, float] = {}
        for key, amps in value.items():
            if str(key) not in ("L1", "L2", "L3"):
                raise ValueError(f"unknown line {key!r}: use L1, L2 or L3")
            out[Line(str(key))] = _check_amps(amps)
        return out
    return _check_amps(value)


class PrimaryModel(_Strict):
    """Primary side of a transformer node."""

    winding: PrimaryWinding = PrimaryWinding.DELTA
    ratio: float = Field(gt=0, le=1000, description="primary winding V / secondary winding V")
    limit_a: float = Field(gt=0, le=MAX_CURRENT_A, description="primary line current limit")


class NodeModel(_Strict):
    """One circuit node: service, transformer, sub-panel, charger group or contract."""

    id: Id
    name: str = ""
    kind: NodeKind | None = None  # root: service, others: subpanel (transformer if primary)
    parent: Id | None = None
    limit_a: Any = None
    max_power_w: float | None = Field(default=None, gt=0, le=MAX_POWER_W)
    max_power_kw: float | None = Field(default=None, gt=0, le=MAX_POWER_W / 1000)
    max_line_sum_a: float | None = Field(default=None, gt=0, le=3 * MAX_CURRENT_A)
    margin_a: float = Field(default=0.0, ge=0, le=MAX_CURRENT_A)
    primary: PrimaryModel | None = None

    _limit = field_validator("limit_a", mode="before")(parse_limit)


class ChargerModel(_Strict):
    """One charger, or with ``count`` a row of identical chargers (``id: g-{n:02d}``)."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    name: str = ""
    node: Id
    count: int | None = Field(default=None, ge=1, le=10_000)
    start: int = Field(default=1, ge=0, description="first {n} when count is given")
    connection: Connection | None = None  # default: the site's natural connection
    min_a: float = Field(default=6.0, ge=0, le=MAX_CURRENT_A)
    max_a: float = Field(default=16.0, gt=0, le=MAX_CURRENT_A)
    connectors: int = Field(default=1, ge=1, le=16)
    rotation: PhaseRotation | Literal["cycle"] = PhaseRotation.L1L2L3
    switch_phases: bool = False
    limit_unit: LimitUnit = LimitUnit.AMPERE
    resolution_a: float = Field(default=0.1, gt=0, le=10)
    zero_pauses: bool = True
    max_power_w: float | None = Field(default=None, gt=0, le=MAX_POWER_W)
    max_power_kw: float | None = Field(default=None, gt=0, le=MAX_POWER_W / 1000)
    allowed_a: tuple[Annotated[float, Field(gt=0, le=MAX_CURRENT_A)], ...] = ()
    protocol: Literal["ocpp1.6", "ocpp2.0.1", "sim"] = "ocpp1.6"
    dc: bool = False

    @field_validator("rotation", mode="before")
    @classmethod
    def _known_rotation(cls, value: Any) -> Any:
        # One message instead of pydantic's one per member of the union.
        if not isinstance(value, str) or (
                value != "cycle" and value not in {r.value for r in PhaseRotation}):
            raise ValueError(f"{value!r} is not a phase rotation: use one of "
                             f"{', '.join(r.value for r in PhaseRotation)} (the site line of "
                             "the charger's L1, L2, L3), or 'cycle' with count")
        return value


class MeterModel(_Strict):
    """A meter measuring everything that flows through ``node`` (``role: total``), or what a
    PV array behind that node's meter produces (``role: pv``, read by the planner only)."""

    id: Id
    name: str = ""
    node: Id
    role: Literal["total", "pv"] = Field(
        default="total", description="total: all through the node; pv: a PV array's output"
    )
    measures: tuple[Measurand, ...] = (Measurand.CURRENT_PER_LINE,)
    driver: MeterDriverConfig = Field(default_factory=SimDriver)
    timeout_s: float = Field(default=10.0, gt=0, le=3600)
    fallback_a: Any = None
    includes_ev_load: bool = True
    poll_s: float = Field(default=1.0, gt=0, le=3600)

    _fallback = field_validator("fallback_a", mode="before")(parse_limit)


class LoadModel(_Strict):
    """A known non-EV load (heat pump, lift): counted at ``max_a`` when nothing measures it."""

    id: Id
    name: str = ""
    node: Id
    connection: Connection | None = None
    max_a: float = Field(gt=0, le=MAX_CURRENT_A)


class SiteFileModel(_Strict):
    """The whole file. Item lists are validated one item at a time (see ``_validate``), so that
    one bad charger does not hide the problems of the others."""

    site: str = Field(default="site", min_length=1, max_length=200)
    voltage: VoltageSystem = VoltageSystem.EU_230_400
    frequency_hz: float | None = Field(default=None, ge=45, le=65)
    nodes: list[Any] = Field(min_length=1)
    chargers: list[Any] = Field(default_factory=list)
    meters: list[Any] = Field(default_factory=list)
    loads: list[Any] = Field(default_factory=list)
    policy: PolicySection = Field(default_factory=PolicySection)
    control: ControlSection = Field(default_factory=ControlSection)
    planner: PlannerSection = Field(default_factory=PlannerSection)
    ocpp: OcppSection = Field(default_factory=OcppSection)
    web: WebSection = Field(default_factory=WebSection)
    mqtt: MqttSection | None = None
    battery: BatterySection | None = None

    @field_validator("voltage", mode="before")
    @classmethod
    def _voltage_as_text(cls, value: Any) -> Any:
        # ``voltage: 230`` is read by YAML as an int; the system names are strings.
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or text not in {v.value for v in VoltageSystem}:
            raise ValueError(f"{text!r} is not a supply system: use '230/400' (EU three-phase), "
                             "'230' (EU single-phase), '120/240' (US split-phase home), "
                             "'120/208' or '277/480' (US three-phase wye); quote it")
        return text


ITEM_MODELS: dict[str, type[_Strict]] = {
    "nodes": NodeModel,
    "chargers": ChargerModel,
    "meters": MeterModel,
    "loads": LoadModel,
}
