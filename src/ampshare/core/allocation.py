"""Types at the boundary of ``allocate``: what goes in, what comes out, and why.

``allocate(AllocationInput) -> Allocation`` (in ``ampshare.core.allocate``) is the one pure
function that decides every charger's limit. The controller prepares the input (it decides
which meters are stale, which chargers cannot be trusted and must be counted at a fixed worst
case, which cars get a temporary cap while their unused current is reclaimed), and turns the
output into commands.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeVar, overload

import numpy as np
import numpy.typing as npt

from ampshare.core._bulk import bulk_builder
from ampshare.core.site import Line, Site
from ampshare.core.snapshot import ChargerState, ExternalCap, Session

__all__ = [
    "Allocation",
    "AllocationInput",
    "ChargerLimit",
    "ChargerLimits",
    "FixedLoad",
    "NodeHeadroom",
    "NodeHeadrooms",
    "NodeMeasurement",
    "Policy",
    "PolicyName",
    "Reason",
    "ReasonKind",
    "RotationState",
    "SinceByCharger",
    "site_import_kw",
]

PerLine = tuple[float, float, float]
_T = TypeVar("_T")


def _empty() -> Mapping[str, float]:
    return MappingProxyType({})


def _no_reasons() -> Mapping[str, Reason]:
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
    ``planned_targets_a`` maps session id to the planner's target current for this slot;
    ``planned_ceiling_w`` (None: none) is the site import [W, at the root node] the plan holds
    for the demand charge: current beyond the targets stops there, the targets themselves
    never do (energy comes first)."""

    name: PolicyName = PolicyName.EQUAL
    rotation_interval_s: float = 900.0
    deadline_mode: str = "edf"
    planned_targets_a: Mapping[str, float] = field(default_factory=_empty)
    planned_ceiling_w: float | None = None


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


class SinceByCharger(Mapping[str, float]):
    """A ``RotationState`` mapping kept as the allocator made it: one time per charger of the
    site (``ids``, site order) in an array, NaN where the charger is not in the mapping. The
    next call reads the array as it is; the dict is built only if someone reads the mapping
    (an answer for 10,000 chargers spent ~1 ms building dicts that the next call turned back
    into arrays). Equal to any mapping with the same items."""

    __slots__ = ("_dict", "ids", "since")

    def __init__(self, ids: tuple[str, ...], since: npt.NDArray[np.float64]) -> None:
        if len(ids) != len(since):
            raise ValueError("SinceByCharger: one time per charger")
        self.ids = ids
        self.since = since
        self._dict: dict[str, float] | None = None

    def _items(self) -> dict[str, float]:
        if self._dict is None:
            at = np.flatnonzero(~np.isnan(self.since)).tolist()
            times = self.since[at].tolist()
            self._dict = dict(zip([self.ids[i] for i in at], times, strict=True))
        return self._dict

    def __getitem__(self, key: str) -> float:
        return self._items()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.since)))

    def __bool__(self) -> bool:
        return len(self) > 0

    def __repr__(self) -> str:
        return f"SinceByCharger({self._items()!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationState:
    """Memory the allocator keeps between calls so that paused cars rotate fairly.

    ``paused_since_s``: charger id -> when the allocator paused it for lack of headroom;
    ``charging_since_s``: charger id -> when it was last (re)started. Opaque to callers: pass the
    previous ``Allocation.rotation`` back in.
    """

    paused_since_s: Mapping[str, float] = field(default_factory=_empty)
    charging_since_s: Mapping[str, float] = field(default_factory=_empty)

    def keeps_charging(self, charger_id: str) -> bool:
        """The charger was started and not paused since: a car the allocator does not stop
        while it has its minimum (``_policies.charging_now`` is the same over a site's array)."""
        return charger_id in self.charging_since_s and charger_id not in self.paused_since_s


@dataclass(frozen=True, slots=True, kw_only=True)
class AllocationInput:
    """Everything ``allocate`` looks at.

    ``sessions`` are the cars plugged in (one per charger); ``charger_states`` their last
    reports (measured current feeds the "measured total minus measured EV" headroom);
    ``caps_a`` temporary per-charger caps from the controller (reclaim of unused current,
    ramp limits), ``cap_reasons`` why, where the controller says (the reason of a car a cap
    pauses); ``fixed_loads`` chargers counted at a fixed worst case.
    """

    site: Site
    now_s: float
    sessions: tuple[Session, ...]
    charger_states: tuple[ChargerState, ...] = ()
    measurements: tuple[NodeMeasurement, ...] = ()
    external_caps: tuple[ExternalCap, ...] = ()
    fixed_loads: tuple[FixedLoad, ...] = ()
    caps_a: Mapping[str, float] = field(default_factory=_empty)
    cap_reasons: Mapping[str, Reason] = field(default_factory=_no_reasons)
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
    CAR_FULL = "car_full"  # paused by the controller: the car takes no current (SuspendedEV)
    POLICY_SHARE = "policy_share"  # got its share; others had priority
    STATIC_SHARE = "static_share"
    PLAN_TARGET = "plan_target"
    PLAN_PEAK = "plan_peak"  # ``planned``: more would raise the site's demand peak the plan holds
    NO_SESSION = "no_session"
    PAUSED_ROTATION = "paused_rotation"  # paused so that others get their minimum; will rotate
    PAUSED_PLAN = "paused_plan"  # ``planned``: waits while cars leaving sooner take its room
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


class _BuiltOnRead(Sequence[_T]):
    """A sequence of frozen values held as columns: ``_build`` makes the values all at once
    the first time anyone reads the sequence itself. Equal to any sequence of the same
    values. Subclasses set ``_items`` (None, or the values when made from them)."""

    __slots__ = ("_items",)
    _items: tuple[_T, ...] | None

    @abstractmethod
    def _build(self) -> tuple[_T, ...]:
        """The values, from the columns."""

    def _built(self) -> tuple[_T, ...]:
        items = self._items
        if items is None:
            items = self._items = self._build()
        return items

    @overload
    def __getitem__(self, i: int) -> _T: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[_T, ...]: ...
    def __getitem__(self, i: int | slice) -> _T | tuple[_T, ...]:
        return self._built()[i]

    def __iter__(self) -> Iterator[_T]:
        return iter(self._built())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _BuiltOnRead):
            return self._built() == other._built()
        if isinstance(other, Sequence):
            return self._built() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._built())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self._built())!r})"


class ChargerLimits(_BuiltOnRead[ChargerLimit]):
    """Every charger's ``ChargerLimit``, in site order, held as columns.

    The allocator answers in columns (``charger_ids``, ``limit_a``, ``phases``, ``reasons``,
    ``power_w``; ``power_w`` is None when no charger takes watts) and the controller reads
    them as such; the frozen ``ChargerLimit`` values are built all at once the first time
    anyone reads the sequence itself (an answer for 10,000 chargers spent ~10 ms building
    values most cycles never read). Equal to any sequence of the same ``ChargerLimit`` values.
    """

    __slots__ = ("charger_ids", "limit_a", "phases", "power_w", "reasons")

    def __init__(
        self,
        charger_ids: Sequence[str],
        limit_a: Sequence[float],
        phases: Sequence[int],
        reasons: Sequence[Reason],
        power_w: Sequence[float | None] | None = None,
    ) -> None:
        n = len(charger_ids)
        if not len(limit_a) == len(phases) == len(reasons) == n or (
            power_w is not None and len(power_w) != n
        ):
            raise ValueError("ChargerLimits: every column needs one value per charger")
        self.charger_ids = charger_ids
        self.limit_a = limit_a
        self.phases = phases
        self.reasons = reasons
        self.power_w = power_w
        self._items: tuple[ChargerLimit, ...] | None = None

    @classmethod
    def of(cls, limits: Iterable[ChargerLimit]) -> ChargerLimits:
        """Columns from ``ChargerLimit`` values (baselines, tests)."""
        items = tuple(limits)
        powers = [lim.power_w for lim in items]
        out = cls(
            [lim.charger_id for lim in items],
            [lim.limit_a for lim in items],
            [lim.phases for lim in items],
            [lim.reason for lim in items],
            None if all(p is None for p in powers) else powers,
        )
        out._items = items
        return out

    def _build(self) -> tuple[ChargerLimit, ...]:
        powers = self.power_w if self.power_w is not None else [None] * len(self)
        return tuple(
            _build_limits(self.charger_ids, self.limit_a, self.phases, self.reasons, powers)
        )

    def __len__(self) -> int:
        return len(self.charger_ids)


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


_Rows = Sequence[Sequence[float]] | npt.NDArray[np.float64]
_Flags = Sequence[bool] | npt.NDArray[np.bool_]


def site_import_kw(site: Site, headroom: Iterable[NodeHeadroom]) -> float | None:
    """Site import a step's allocation implies: the root's non-EV load (as a meter saw it)
    plus the current allocated to the chargers (what they may draw, so never below what
    they did), at the line-to-neutral voltage. None when the root is not metered freshly."""
    for h in headroom:
        if h.node_id != site.root.id:
            continue
        if not h.measured or h.stale:
            return None
        amps = sum(h.other_load_a) + sum(h.ev_load_a)
        if not math.isfinite(amps):
            return None
        return float(amps * site.voltage.line_to_neutral_v / 1000.0)
    return None


class NodeHeadrooms(_BuiltOnRead[NodeHeadroom]):
    """Every node's ``NodeHeadroom``, in site order, held as columns (rows of three floats
    per line, or numpy arrays of shape (m, 3) and (m,)); the frozen values are built the
    first time anyone reads the sequence itself.
    The controller reads only ``left_by_node`` and ``any_by_node`` (when an increase must
    fit) and ``short`` (nodes below zero), so most cycles build none (111 values took ~0.4 ms
    a call). Equal to any sequence of the same ``NodeHeadroom`` values.

    ``any_a`` (m,), when known: how many amperes, summed over the chargers below each node,
    may still be drawn beyond their limits before a column other than the node's three lines
    (a transformer primary line, power, the sum of lines) is over; inf where none limits."""

    __slots__ = (
        "_by_node",
        "any_a",
        "ev_load_a",
        "headroom_a",
        "limit_a",
        "measured",
        "node_ids",
        "other_load_a",
        "stale",
    )

    def __init__(  # noqa: PLR0917 - one argument per column
        self,
        node_ids: Sequence[str],
        limit_a: _Rows,
        other_load_a: _Rows,
        ev_load_a: _Rows,
        headroom_a: _Rows,
        measured: _Flags,
        stale: _Flags,
        *,
        any_a: Sequence[float] | npt.NDArray[np.float64] | None = None,
    ) -> None:
        n = len(node_ids)
        cols = (limit_a, other_load_a, ev_load_a, headroom_a, measured, stale)
        if any(len(c) != n for c in cols):
            raise ValueError("NodeHeadrooms: every column needs one value per node")
        self.node_ids = node_ids
        self.limit_a = limit_a
        self.other_load_a = other_load_a
        self.ev_load_a = ev_load_a
        self.headroom_a = headroom_a
        self.measured = measured
        self.stale = stale
        if any_a is not None and len(any_a) != n:
            raise ValueError("NodeHeadrooms: any_a needs one value per node")
        self.any_a = any_a
        self._items: tuple[NodeHeadroom, ...] | None = None
        self._by_node: Mapping[str, PerLine] | None = None

    @classmethod
    def of(cls, items: Iterable[NodeHeadroom]) -> NodeHeadrooms:
        """Columns from ``NodeHeadroom`` values (baselines, tests)."""
        rows = tuple(items)
        out = cls(
            [h.node_id for h in rows],
            [h.limit_a for h in rows],
            [h.other_load_a for h in rows],
            [h.ev_load_a for h in rows],
            [h.headroom_a for h in rows],
            [h.measured for h in rows],
            [h.stale for h in rows],
        )
        out._items = rows
        return out

    def left_by_node(self) -> Mapping[str, PerLine]:
        """Headroom per line by node id (built once)."""
        if self._by_node is None:
            rows = _rows(self.headroom_a)
            self._by_node = MappingProxyType(
                {nid: _t3(row) for nid, row in zip(self.node_ids, rows, strict=True)}
            )
        return self._by_node

    def any_by_node(self) -> Mapping[str, float]:
        """``any_a`` by node id, for the nodes where it limits (empty when not known)."""
        if self.any_a is None:
            return MappingProxyType({})
        values = [float(a) for a in self.any_a]
        return MappingProxyType(
            {nid: a for nid, a in zip(self.node_ids, values, strict=True) if a != math.inf}
        )

    def short(self, tol: float = 1e-6) -> list[int]:
        """Positions of the nodes with a line's headroom below ``-tol``."""
        return [i for i, row in enumerate(_rows(self.headroom_a)) if min(row) < -tol]

    def _build(self) -> tuple[NodeHeadroom, ...]:
        return tuple(
            _build_rooms(
                self.node_ids,
                map(_t3, _rows(self.limit_a)),
                map(_t3, _rows(self.other_load_a)),
                map(_t3, _rows(self.ev_load_a)),
                map(_t3, _rows(self.headroom_a)),
                _rows(self.measured),
                _rows(self.stale),
            )
        )

    def __len__(self) -> int:
        return len(self.node_ids)


def _t3(row: Sequence[float]) -> PerLine:
    return (row[0], row[1], row[2])


def _rows(col: Sequence[Any] | npt.NDArray[Any]) -> Sequence[Any]:
    """A column as Python values: the allocator hands numpy arrays (converted only when
    read), tests and baselines hand sequences."""
    if isinstance(col, np.ndarray):
        out: list[Any] = col.tolist()
        return out
    return col


@dataclass(frozen=True, slots=True, kw_only=True)
class Allocation:
    """``headroom`` given as any sequence of ``NodeHeadroom`` is kept as ``NodeHeadrooms``."""

    limits: ChargerLimits
    headroom: NodeHeadrooms
    rotation: RotationState

    def __post_init__(self) -> None:
        if not isinstance(self.headroom, NodeHeadrooms):
            object.__setattr__(self, "headroom", NodeHeadrooms.of(self.headroom))


_build_limits = bulk_builder(
    ChargerLimit, ("charger_id", "limit_a", "phases", "reason", "power_w")
)
_build_rooms = bulk_builder(
    NodeHeadroom,
    ("node_id", "limit_a", "other_load_a", "ev_load_a", "headroom_a", "measured", "stale"),
)
