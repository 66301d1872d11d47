"""Values that flow through the decision step: inputs, per-charger memory, commands, events.

All frozen. The controller's memory between steps is one ``ControllerState``; the step never
mutates it, it returns a new one (so the simulator can keep, compare or replay states). Inside
a step the per-charger memory is kept as columns (``_table``), handed out as ``ChargerTrack``
values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from ampshare.control._index import SiteIndex
from ampshare.core._bulk import replacer
from ampshare.core.allocation import Allocation, RotationState
from ampshare.core.site import Site
from ampshare.core.snapshot import ChargerState, ExternalCap, MeterReading, Session

__all__ = [
    "ChargerTrack",
    "Command",
    "CommandAck",
    "ControlInputs",
    "ControllerState",
    "Event",
    "EventKind",
    "InstallFallback",
    "MeterTrack",
    "SetLimit",
    "Severity",
    "StepResult",
]

PerLine = tuple[float, float, float]


def _empty_map() -> Mapping[str, object]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class SetLimit:
    """Tell a charger its limit: ``limit_a`` per phase on ``phases`` phases (0 pauses it),
    ``power_w`` the same in watts for chargers that take W, valid until ``lease_until_s``
    (after that the charger falls back to its installed fallback). ``reason`` says what bound
    it ("circuit garage-B, line L2")."""

    charger_id: str
    limit_a: float
    phases: int
    lease_until_s: float
    reason: str
    power_w: float | None = None

    @property
    def is_pause(self) -> bool:
        return self.limit_a <= 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallFallback:
    """Install the charger's safe default (OCPP TxDefaultProfile on connector/EVSE 0): the
    limit it applies when no lease is in force, chosen so that every charger at its fallback
    keeps every node within limits."""

    charger_id: str
    limit_a: float
    phases: int


Command = SetLimit | InstallFallback


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandAck:
    """A charger's answer to a command sent at or before ``t_s``: ``accepted`` false when it
    rejected it (OCPP ``Rejected`` or a CallError). ``fallback`` marks an InstallFallback.
    ``lease_until_s`` is the lease of the command answered (``SetLimit.lease_until_s``); when
    None, an answer arriving after the latest send is taken to answer that send."""

    charger_id: str
    t_s: float
    limit_a: float
    accepted: bool = True
    fallback: bool = False
    lease_until_s: float | None = None


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ALERT = "alert"  # someone should look: a device misbehaves or safety margins are in use


class EventKind(StrEnum):
    STARTED = "started"
    RESTARTED = "restarted"
    METER_STALE = "meter_stale"
    METER_RECOVERED = "meter_recovered"
    CHARGER_OFFLINE = "charger_offline"
    CHARGER_ONLINE = "charger_online"
    NONCOMPLIANT = "noncompliant"
    COMPLIANT_AGAIN = "compliant_again"
    RECLAIMED = "reclaimed"
    PROBE = "probe"
    PAUSED = "paused"
    RESUMED = "resumed"
    COMMAND_REJECTED = "command_rejected"
    FALLBACK_ZERO = "fallback_zero"
    OVERLOAD = "overload"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something worth telling the operator, with its reason in ``message``."""

    t_s: float
    kind: EventKind
    severity: Severity
    subject: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlInputs:
    """What arrived since the previous step.

    ``readings``, ``charger_states`` and ``acks`` are new items only (the state keeps the
    latest of each). ``sessions`` and ``external_caps`` are the full current sets, or None
    when unchanged.
    """

    readings: tuple[MeterReading, ...] = ()
    charger_states: tuple[ChargerState, ...] = ()
    sessions: tuple[Session, ...] | None = None
    external_caps: tuple[ExternalCap, ...] | None = None
    acks: tuple[CommandAck, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerTrack:
    """What the controller remembers about one charger.

    ``limit_a`` is the last limit sent (None: none since start); ``high_a`` the most it may be
    drawing now per phase: the higher of the old and new limit while a decrease is not yet
    confirmed (decrease-before-increase counts it so). ``raised_s`` when a higher limit was last
    sent; ``acked_s`` when the charger accepted the last command; ``lease_until_s`` when the
    last limit runs out; ``held_until_s`` until
    when an *acknowledged* lease is known to be in force (after it the charger may be back at
    its fallback). ``measured_a`` is the highest line current it last reported,
    ``measured_line_a`` per site line. ``joined``: seen online since the controller started
    (or restarted), or reported missing once ``startup_grace_s`` was over; until then an
    offline report is "not connected yet" (counted as pessimistically, without an alert).
    ``cap_a`` caps a car that leaves current unused (in force while ``cap_set_s`` is set;
    lifted for a probe it stays in ``cap_a`` with ``cap_set_s`` None until the probe ends);
    ``probe_misses`` counts the probes in a row after which the car took no more.

    What a report may be credited against a meter reading taken at another time
    (``control._credit``): ``prior_s`` is the time of a report taken at or before a meter
    reading (the newest such one known when a later report came; None: none known), and
    ``prior_line_a`` per site line the least the charger reported from that report up to, not
    including, its latest one (lowered further by a dip, below). ``dip_a`` is the limit the
    car was last raised from (the lowest, raised again before a report showed it): until a
    report taken from ``dip_seen_s`` on shows the car, it may have drawn no more than that
    when a meter read, whatever its older reports say (-inf: no such raise).
    """

    charger_id: str
    limit_a: float | None = None
    high_a: float = 0.0
    phases: int = 3
    reason: str = ""
    sent_s: float | None = None
    raised_s: float | None = None
    acked_s: float | None = None
    lease_until_s: float = float("-inf")
    held_until_s: float = float("-inf")
    online: bool = True
    joined: bool = False
    report_s: float | None = None
    measured_a: float = 0.0
    measured_line_a: PerLine = (0.0, 0.0, 0.0)
    prior_line_a: PerLine | None = None
    prior_s: float | None = None
    dip_a: float = 0.0
    dip_seen_s: float = float("-inf")
    over_since_s: float | None = None
    noncompliant: bool = False
    compliant_since_s: float | None = None
    under_since_s: float | None = None
    cap_a: float | None = None
    cap_set_s: float | None = None
    probe_misses: int = 0
    paused_since_s: float | None = None
    charging_since_s: float | None = None
    fallback_a: float = 0.0
    fallback_acked: bool = False
    fallback_sent: bool = False

    @property
    def pending(self) -> bool:
        """A decrease is in flight: the charger may still draw more than its new limit."""
        return self.limit_a is not None and self.high_a > self.limit_a + 1e-9


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterTrack:
    """A meter's latest reading and whether it is trusted (``stale`` until it has been fresh
    for ``meter_recover_s``, once it has been trusted before); ``max_line_a`` is the highest
    total per line seen so far."""

    meter_id: str
    last: MeterReading | None = None
    stale: bool = True
    fresh_since_s: float | None = None
    max_line_a: PerLine = (0.0, 0.0, 0.0)
    was_trusted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerState:
    """The controller's whole memory between steps (see ``step``).

    ``tracks`` from a step is a read-only mapping over the step's per-charger columns
    (``control._table.TrackView``): a charger's ``ChargerTrack`` is built when first read.
    Any mapping of charger id -> ``ChargerTrack`` is accepted as input."""

    tracks: Mapping[str, ChargerTrack] = field(default_factory=_empty_map)  # type: ignore[arg-type]
    meters: Mapping[str, MeterTrack] = field(default_factory=_empty_map)  # type: ignore[arg-type]
    charger_states: Mapping[str, ChargerState] = field(default_factory=_empty_map)  # type: ignore[arg-type]
    sessions: tuple[Session, ...] = ()
    # ``charger_states`` as the tuple the last allocation read, handed to the next one while
    # no charger reported (so ``allocate`` can reuse what it read from it).
    charger_state_values: tuple[ChargerState, ...] | None = field(
        default=None, compare=False, repr=False
    )
    # the chargers of ``sessions``, kept with them while the sessions do not change
    session_chargers: frozenset[str] | None = field(default=None, compare=False, repr=False)
    external_caps: tuple[ExternalCap, ...] = ()
    rotation: RotationState = field(default_factory=RotationState)
    recent_events: tuple[Event, ...] = ()
    last_step_s: float | None = None
    started_s: float | None = None
    overloaded_nodes: frozenset[str] = frozenset()
    # Of those, the nodes whose flow is above the rating itself, not only inside the margin
    # (an episode that climbs from the margin past the rating is alerted again).
    over_rating_nodes: frozenset[str] = frozenset()
    # The site the last step ran on and its lookups, reused while the Site object is the same
    # (a new Site, such as a reloaded config, is indexed afresh).
    site_index: tuple[Site, SiteIndex] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    """What one step decided: the new state, the commands to send now (decreases first), the
    events it raised, when it wants to run again at the latest, and the allocation it used."""

    state: ControllerState
    commands: tuple[Command, ...]
    events: tuple[Event, ...]
    next_wakeup_s: float
    allocation: Allocation | None = None


#: ``evolve(track, limit_a=..., ...)``: a copy of ``track`` with the given fields changed
#: (``dataclasses.replace`` for tracks, without its introspection: the decision step rewrites
#: up to one track per charger per step; pinned to ``replace`` by a test).
evolve: Callable[..., ChargerTrack] = replacer(ChargerTrack)


def _make_new_set_limit() -> Any:
    """``new_set_limit(charger_id, limit_a, phases, lease_until_s, reason, power_w)``: the
    same ``SetLimit`` as the keyword constructor (pinned by a test), built through each
    slot's own setter: the frozen dataclass ``__init__`` goes through ``object.__setattr__``
    per field, ~2.5x slower, and the step builds one per commanded charger."""
    names = [f.name for f in fields(SetLimit)]
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": SetLimit}
    for n in names:
        scope[f"_s_{n}"] = SetLimit.__dict__[n].__set__
    body = "".join(f"    _s_{n}(new, {n})\n" for n in names)
    src = f"def new_set_limit({', '.join(names)}):\n    new = _new(_cls)\n{body}    return new\n"
    exec(src, scope)
    return scope["new_set_limit"]


#: ``new_set_limit(charger_id, limit_a, phases, lease_until_s, reason, power_w)`` (positional)
new_set_limit: Any = _make_new_set_limit()
