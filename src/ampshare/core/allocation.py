"""Types at the boundary of ``allocate``: what goes in, what comes out, and why.

``allocate(AllocationInput) -> Allocation`` (in ``ampshare.core.allocate``) is the one pure
function that decides every charger's limit. The controller prepares the input (it decides
which meters are stale, which chargers cannot be trusted and must be counted at a fixed worst
case, which cars get a temporary cap while their unused current is reclaimed), and turns the
output into commands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from ampshare.core.site import Line, Site
from ampshare.core.snapshot import ChargerState, ExternalCap, Session

__all__ = [
    "Allocation",
    "AllocationInput",
    "ChargerLimit",
    "FixedLoad",
    "NodeHeadroom",
    "NodeMeasurement",
    "Policy",
    "PolicyName",
    "Reason",
    "ReasonKind",
    "RotationState",
]

PerLine = tuple[float, float, float]


def _empty() -> Mapping[str, float]:
    return MappingProxyType({})


class PolicyName(StrEnum):
    EQUAL = "equal"  # max-min fair water-filling, optional weights
    FCFS = "fcfs"  # arrival order
    PRIORITY = "priority"  # tiers, equal within a tier
    DEADLINE = "deadline"  # energy needed / time to departure (EDF or LLF)
    PLANNED = "planned"  # follow the planner's per-session targets within headroom
    STATIC = "static"  # baseline: fixed share of the group limit per charger
    UNCONTROLLED = "uncontrolled"  # baseline: every car at its maximum


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """How to share. ``rotation_interval_s``: how long a car stays paused (or charges while
    others wait) before paused cars rotate in. ``deadline_mode`` is ``edf`` or ``llf``.
    ``planned_targets_a`` maps session id to the planner's target current for this slot."""

    name: PolicyName = PolicyName.EQUAL
    rotation_interval_s: float = 900.0
    deadline_mode: str = "edf"
    planned_targets_a: Mapping[str, float] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeMeasurement:
    """The controller's view of a metered node.

    ``current_a`` is the measured total per line at the node (building plus EVs below it);
    when ``stale`` is true (or ``current_a`` is None) the allocator uses ``worst_case_line_a``
    (configured fallback or historical maximum) and, lacking that, the node's full limit.
    """

    node_id: str
    current_a: tuple[float | None, float | None, float | None] | None
    power_w: float | None = None
    stale: bool = False
    worst_case_line_a: PerLine | None = None
    includes_ev_load: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedLoad:
    """A charger the allocator must not control this cycle, counted at ``current_a`` per site
    line (offline: max(last limit, last measured); non-compliant: its measured draw)."""

    charger_id: str
    current_a: PerLine
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationState:
    """Memory the allocator keeps between calls so that paused cars rotate fairly.

    ``paused_since_s``: charger id -> when the allocator paused it for lack of headroom;
    ``charging_since_s``: charger id -> when it was last (re)started. Opaque to callers: pass the
    previous ``Allocation.rotation`` back in.
    """

    paused_since_s: Mapping[str, float] = field(default_factory=_empty)
    charging_since_s: Mapping[str, float] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationInput:
    """Everything ``allocate`` looks at.

    ``sessions`` are the cars plugged in (one per charger); ``charger_states`` their last
    reports (measured current feeds the "measured total minus measured EV" headroom);
    ``caps_a`` temporary per-charger caps from the controller (reclaim of unused current,
    ramp limits); ``fixed_loads`` chargers counted at a fixed worst case.
    """

    site: Site
    now_s: float
    sessions: tuple[Session, ...]
    charger_states: tuple[ChargerState, ...] = ()
    measurements: tuple[NodeMeasurement, ...] = ()
    external_caps: tuple[ExternalCap, ...] = ()
    fixed_loads: tuple[FixedLoad, ...] = ()
    caps_a: Mapping[str, float] = field(default_factory=_empty)
    policy: Policy = field(default_factory=Policy)
    rotation: RotationState = field(default_factory=RotationState)


class ReasonKind(StrEnum):
    NODE_LINE = "node_line"  # a node's line limit bound it
    NODE_POWER = "node_power"
    NODE_LINE_SUM = "node_line_sum"
    TRANSFORMER_PRIMARY = "transformer_primary"
    EXTERNAL_CAP = "external_cap"
    CHARGER_MAX = "charger_max"
    VEHICLE_MAX = "vehicle_max"
    CONTROLLER_CAP = "controller_cap"  # reclaim / ramp cap from the controller
    POLICY_SHARE = "policy_share"  # got its share; others had priority
    STATIC_SHARE = "static_share"
    PLAN_TARGET = "plan_target"
    NO_SESSION = "no_session"
    PAUSED_ROTATION = "paused_rotation"  # paused so that others get their minimum; will rotate
    PAUSED_NO_HEADROOM = "paused_no_headroom"  # not even one car fits at minimum
    FIXED = "fixed"  # not controlled this cycle (offline, non-compliant)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reason:
    """Why a limit is what it is; ``text`` is what the API, dashboard and logs show."""

    kind: ReasonKind
    node_id: str | None = None
    line: Line | None = None
    detail: str = ""

    @property
    def text(self) -> str:
        if self.kind is ReasonKind.NODE_LINE and self.node_id is not None:
            where = f"circuit {self.node_id}"
            return f"{where}, line {self.line.value}" if self.line else where
        if self.node_id is not None:
            base = f"{self.kind.value.replace('_', ' ')}: {self.node_id}"
        else:
            base = self.kind.value.replace("_", " ")
        if self.line is not None:
            base += f", line {self.line.value}"
        return f"{base} ({self.detail})" if self.detail else base


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerLimit:
    """The decision for one charger: ``limit_a`` per phase (0 = paused), on ``phases`` phases
    (1 or 3; for line-to-line chargers 1), ``power_w`` the same limit in watts for chargers that
    take W, and the reason that bound it."""

    charger_id: str
    limit_a: float
    phases: int
    reason: Reason
    power_w: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeHeadroom:
    """Per node and line: the limit in force (after margin and caps), the non-EV load assumed,
    the EV load allocated, and what is left."""

    node_id: str
    limit_a: PerLine
    other_load_a: PerLine
    ev_load_a: PerLine
    headroom_a: PerLine
    measured: bool
    stale: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Allocation:
    limits: tuple[ChargerLimit, ...]
    headroom: tuple[NodeHeadroom, ...]
    rotation: RotationState
