"""The site model: voltage system, a tree of circuit nodes, chargers and meters.

Everything here is a frozen value. The config layer (``ampshare.config``) builds a ``Site``
from a YAML file after validating it; the core trusts a ``Site`` to be consistent (ids unique,
parents exist, limits positive). Units are in the field names: ``_a`` amperes (RMS),
``_w`` watts, ``_v`` volts, ``_s`` seconds, ``_deg`` degrees.

Lines are always indexed 0..2 as L1, L2, L3; a site with fewer lines simply has no load and an
infinite limit on the lines it does not have.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "Charger",
    "CircuitNode",
    "Connection",
    "LimitUnit",
    "Line",
    "Load",
    "Measurand",
    "MeterSpec",
    "NodeKind",
    "PhaseRotation",
    "PrimaryWinding",
    "Site",
    "TransformerPrimary",
    "VoltageSystem",
]

INF = math.inf


class Line(StrEnum):
    """A line (phase conductor) of the site."""

    L1 = "L1"
    L2 = "L2"
    L3 = "L3"

    @property
    def index(self) -> int:  # type: ignore[override]  # shadows str.index on purpose
        return ("L1", "L2", "L3").index(self.value)


class VoltageSystem(StrEnum):
    """The supply system of the site; names are ``line-to-neutral/line-to-line`` volts."""

    EU_230_400 = "230/400"  # three-phase wye, Europe
    EU_230 = "230"  # single-phase, Europe (one line + neutral)
    US_120_240 = "120/240"  # split-phase, US homes: L1 and L2 180 degrees apart
    US_120_208 = "120/208"  # three-phase wye, US commercial
    US_277_480 = "277/480"  # three-phase wye, US commercial / industrial

    @property
    def lines(self) -> tuple[Line, ...]:
        """The lines this system has."""
        if self is VoltageSystem.EU_230:
            return (Line.L1,)
        if self is VoltageSystem.US_120_240:
            return (Line.L1, Line.L2)
        return (Line.L1, Line.L2, Line.L3)

    @property
    def line_to_neutral_v(self) -> float:
        return {
            "230/400": 230.0,
            "230": 230.0,
            "120/240": 120.0,
            "120/208": 120.0,
            "277/480": 277.0,
        }[self.value]

    @property
    def line_to_line_v(self) -> float | None:
        """Voltage between two lines; None on a single-phase system."""
        return {
            "230/400": 400.0,
            "230": None,
            "120/240": 240.0,
            "120/208": 208.0,
            "277/480": 480.0,
        }[self.value]

    @property
    def line_angles_deg(self) -> tuple[float, float, float]:
        """Phase angle of each line-to-neutral voltage (L1 is the reference).

        Positive sequence: L2 lags L1 by 120 degrees. Split-phase L2 is opposite L1.
        Absent lines carry an angle too, but never a load.
        """
        if self is VoltageSystem.US_120_240:
            return (0.0, 180.0, 0.0)
        return (0.0, -120.0, 120.0)

    @property
    def is_polyphase(self) -> bool:
        return len(self.lines) > 1


class Connection(StrEnum):
    """How a charger's input is wired, in the charger's own terminal names.

    ``THREE_PHASE`` loads L1, L2 and L3; ``L1``/``L2``/``L3`` are line-to-neutral single-phase;
    ``L1_L2``/``L2_L3``/``L3_L1`` are single-phase line-to-line (US 208 V and 240 V chargers).
    The install's ``PhaseRotation`` maps these terminals onto the site's lines.
    """

    THREE_PHASE = "3p"
    L1 = "L1"
    L2 = "L2"
    L3 = "L3"
    L1_L2 = "L1-L2"
    L2_L3 = "L2-L3"
    L3_L1 = "L3-L1"

    @property
    def terminals(self) -> tuple[Line, ...]:
        """Charger terminals that carry current (in the charger's own naming)."""
        return {
            "3p": (Line.L1, Line.L2, Line.L3),
            "L1": (Line.L1,),
            "L2": (Line.L2,),
            "L3": (Line.L3,),
            "L1-L2": (Line.L1, Line.L2),
            "L2-L3": (Line.L2, Line.L3),
            "L3-L1": (Line.L3, Line.L1),
        }[self.value]

    @property
    def is_line_to_line(self) -> bool:
        return self in (Connection.L1_L2, Connection.L2_L3, Connection.L3_L1)


class PhaseRotation(StrEnum):
    """Which site line each charger terminal (L1, L2, L3) is connected to.

    ``L1L2L3`` is the standard install; ``L2L3L1`` means the charger's L1 is on the site's L2,
    its L2 on L3 and its L3 on L1 (installers rotate phases so that single-phase cars, which
    charge on the charger's L1, spread over the site's lines). Names follow OCPP's RST/STR/TRS
    idea with site line names.
    """

    L1L2L3 = "L1L2L3"
    L2L3L1 = "L2L3L1"
    L3L1L2 = "L3L1L2"
    L1L3L2 = "L1L3L2"
    L3L2L1 = "L3L2L1"
    L2L1L3 = "L2L1L3"

    def site_line(self, terminal: Line) -> Line:
        """The site line that charger terminal ``terminal`` is wired to."""
        v = self.value
        return Line(v[terminal.index * 2 : terminal.index * 2 + 2])


class LimitUnit(StrEnum):
    """What a charger accepts as a limit."""

    AMPERE = "A"
    WATT = "W"


class NodeKind(StrEnum):
    SERVICE = "service"  # the service entrance / main fuse
    TRANSFORMER = "transformer"
    SUBPANEL = "subpanel"
    GROUP = "group"  # a charger group (e.g. a shared breaker or load-management group)
    CONTRACT = "contract"  # contracted capacity with the grid operator


class PrimaryWinding(StrEnum):
    DELTA = "delta"  # delta primary, wye secondary: primary line = (secondary a - c) / ratio
    WYE = "wye"  # wye-wye: primary line = secondary line / ratio


@dataclass(frozen=True, slots=True, kw_only=True)
class TransformerPrimary:
    """The primary side of a transformer node, limited separately from its secondary.

    ``winding_ratio`` is primary winding voltage / secondary winding voltage (ACN Caltech:
    480 V delta winding to 120 V wye winding = 4). With a delta primary the primary line
    currents are phasor differences of secondary line currents, which is why ACN states them as
    phasor constraints.
    """

    winding: PrimaryWinding
    winding_ratio: float
    line_limit_a: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitNode:
    """One node of the circuit tree; everything below it flows through it.

    ``line_limit_a`` gives the limit of L1, L2, L3 (``inf`` where the site has no such line or
    the node does not limit it). ``max_power_w`` bounds the total active power,
    ``max_line_sum_a`` the sum of the three line currents. ``margin_a`` is subtracted from every
    line limit (and its power equivalent) before sharing.
    """

    id: str
    kind: NodeKind
    parent_id: str | None
    line_limit_a: tuple[float, float, float]
    max_power_w: float | None = None
    max_line_sum_a: float | None = None
    margin_a: float = 0.0
    primary: TransformerPrimary | None = None
    name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Charger:
    """One EVSE (one controllable output) under a circuit node.

    ``resolution_a`` is the step the charger accepts (0.1 or 1.0 A); ``limit_unit`` whether it
    takes amperes or watts; ``zero_pauses`` whether a 0 A limit pauses it (otherwise the
    lowest it can be told is ``min_current_a``). ``max_power_w`` bounds DC chargers and
    W-limited ones. ``allowed_currents_a``, when not empty, is the finite set of pilot values
    the charger accepts (ACN ClipperCreek units: 8, 16, 24, 32 A) besides 0.
    """

    id: str
    node_id: str
    connection: Connection
    min_current_a: float = 6.0
    max_current_a: float = 16.0
    connectors: int = 1
    phase_rotation: PhaseRotation = PhaseRotation.L1L2L3
    can_switch_phases: bool = False
    limit_unit: LimitUnit = LimitUnit.AMPERE
    resolution_a: float = 0.1
    zero_pauses: bool = True
    max_power_w: float | None = None
    allowed_currents_a: tuple[float, ...] = ()
    protocol: str = "ocpp1.6"
    is_dc: bool = False
    name: str = ""

    def site_lines(self, connection: Connection | None = None) -> tuple[Line, ...]:
        """Site lines loaded by this charger (for ``connection``, default its own)."""
        conn = connection or self.connection
        return tuple(self.phase_rotation.site_line(t) for t in conn.terminals)


class Measurand(StrEnum):
    CURRENT_PER_LINE = "current"  # A on each line
    POWER_TOTAL = "power"  # W total active power
    POWER_PER_LINE = "power_per_line"
    VOLTAGE = "voltage"
    ENERGY = "energy"


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterSpec:
    """A meter measuring the total flowing through ``node_id`` (building plus EVs below it).

    ``driver`` names the adapter (``modbus``, ``mqtt``, ``p1``, ``sim`` …) and ``params`` its
    settings as validated by the config layer. ``timeout_s`` is how old a reading may get before
    it counts as stale; ``fallback_line_a`` is the worst-case per-line load to assume then
    (None: the node's own limit, the most pessimistic value).
    """

    id: str
    node_id: str
    measures: frozenset[Measurand]
    driver: str = "sim"
    params: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    timeout_s: float = 10.0
    fallback_line_a: tuple[float, float, float] | None = None
    includes_ev_load: bool = True
    poll_interval_s: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Load:
    """A known non-EV load on a node (heat pump, lift, kitchen): at most ``max_current_a`` on
    each line it loads. Meters see it as building load; without a fresh meter it is the worst
    case to assume for that node instead of 0."""

    id: str
    node_id: str
    connection: Connection
    max_current_a: float
    name: str = ""

    def site_lines(self) -> tuple[Line, ...]:
        return self.connection.terminals


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    """A whole site: nodes in parent-before-child order, chargers, meters and known loads.

    ``meters`` measure the total through their node and bound the chargers' headroom.
    ``pv_meters`` measure what a PV array behind a node's meter produces (site file
    ``role: pv``): only the planner reads them, to learn the building the net meter hides and
    to forecast the PV. They are kept apart so that nothing that reads ``meters`` as node
    totals can mistake a PV output for one."""

    name: str
    voltage: VoltageSystem
    nodes: tuple[CircuitNode, ...]
    chargers: tuple[Charger, ...]
    meters: tuple[MeterSpec, ...] = ()
    frequency_hz: float = 50.0
    loads: tuple[Load, ...] = ()
    pv_meters: tuple[MeterSpec, ...] = ()

    @property
    def root(self) -> CircuitNode:
        return self.nodes[0]

    def node(self, node_id: str) -> CircuitNode:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def charger(self, charger_id: str) -> Charger:
        for c in self.chargers:
            if c.id == charger_id:
                return c
        raise KeyError(charger_id)

    def children(self, node_id: str) -> tuple[CircuitNode, ...]:
        return tuple(n for n in self.nodes if n.parent_id == node_id)

    def ancestors(self, node_id: str) -> tuple[str, ...]:
        """``node_id`` and every node above it, nearest first."""
        parents = {n.id: n.parent_id for n in self.nodes}
        out: list[str] = []
        cur: str | None = node_id
        while cur is not None:
            out.append(cur)
            cur = parents[cur]
        return tuple(out)
