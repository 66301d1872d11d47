"""The scenario file format (see docs/scenarios.md): a site, a start, timed events, checks.

Validated with pydantic (``extra="forbid"``) after the file and its ``base`` chain are merged;
every problem is reported with its file, key path and line.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "EvDecl",
    "Expectation",
    "PhysicsDecl",
    "ScenarioDecl",
    "ScenarioEvent",
]

PerLineDecl = float | tuple[float, float, float]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvDecl(_Strict):
    """A car: on which charger, how much it wants, and how it charges."""

    charger: str
    wanted_kwh: float = Field(default=30.0, ge=0, description="energy it wants [kWh]")
    departure_s: float | None = Field(default=None, description="declared departure, scenario s")
    max_a: float = Field(default=16.0, gt=0, le=500, description="onboard limit per phase [A]")
    phases: Literal[1, 3] = 3
    capacity_kwh: float = Field(default=60.0, gt=0)
    soc: float = Field(default=0.3, ge=0, le=1, description="state of charge at arrival (0..1)")
    reaction_s: float | None = Field(default=None, ge=0, le=30, description="default: physics")
    taper_start: float = Field(default=0.8, ge=0, le=1)
    basic: bool = Field(default=False, description="ideal battery: no taper")
    priority: int = 0


class PhysicsDecl(_Strict):
    """How the simulated world around the controller behaves."""

    command_latency_s: float = Field(default=0.2, ge=0, le=30, description="command -> applied")
    charger_report_s: float = Field(default=1.0, gt=0, le=300, description="MeterValues period")
    charger_report_offset_s: float = Field(
        default=0.0, ge=0, le=300, description="the chargers' first report, scenario s"
    )
    charger_report_stagger: bool = Field(
        default=False, description="spread the chargers' reports evenly over the period"
    )
    charger_report_on_change: bool = Field(
        default=False, description="a charger also reports at once when its car's draw changes"
    )
    ev_reaction_s: float = Field(default=3.0, ge=0, le=30, description="EV obeys a pilot after")


class _Repeat(_Strict):
    every_s: float = Field(gt=0)
    times: int = Field(ge=1, le=10_000)


class MeterReadingDecl(_Strict):
    """An injected reading; ``null`` for a line the frame did not carry."""

    meter: str
    current_a: float | tuple[float | None, float | None, float | None]


class ExternalCapDecl(_Strict):
    node: str
    line_a: PerLineDecl
    source: str = "grid operator"
    until_s: float | None = None


ACTIONS = (
    "building_a",
    "charger_offline",
    "charger_online",
    "ev_arrives",
    "ev_leaves",
    "charger_ignores_limit",
    "charger_obeys_limit",
    "meter_stops",
    "meter_resumes",
    "meter_reading",
    "controller_restart",
    "external_cap",
)


class ScenarioEvent(_Strict):
    """One timed event: ``at_s`` plus exactly one action; ``repeat`` replays it."""

    at_s: float = Field(ge=0)
    repeat: _Repeat | None = None
    building_a: dict[str, PerLineDecl] | None = Field(
        default=None, description="node -> building load per line from now on [A]"
    )
    charger_offline: str | None = None
    charger_online: str | None = None
    ev_arrives: EvDecl | None = None
    ev_leaves: str | None = None
    charger_ignores_limit: str | None = None
    charger_obeys_limit: str | None = None
    meter_stops: str | None = None
    meter_resumes: str | None = None
    meter_reading: MeterReadingDecl | None = None
    controller_restart: bool | None = None
    external_cap: ExternalCapDecl | None = None

    @model_validator(mode="after")
    def _one_action(self) -> ScenarioEvent:
        given = [a for a in ACTIONS if getattr(self, a) is not None]
        if len(given) != 1:
            raise ValueError(
                f"an event needs exactly one action, got {given or 'none'}; "
                f"choose one of: {', '.join(ACTIONS)}"
            )
        return self

    @property
    def action(self) -> str:
        return next(a for a in ACTIONS if getattr(self, a) is not None)


class NeverAbove(_Strict):
    """No node line above its limit minus margin (and external caps), except
    ``allow_excess_s`` at a time (physics: load step larger than the EV current to shed)."""

    allow_excess_s: float = Field(default=0.0, ge=0)
    nodes: list[str] | None = None


class LimitAtMost(_Strict):
    charger: str
    limit_a: float = Field(ge=0)
    at_s: float = Field(ge=0)


class LimitAtLeast(_Strict):
    charger: str
    limit_a: float = Field(ge=0)
    at_s: float = Field(ge=0)


class AllChargingBy(_Strict):
    at_s: float = Field(ge=0)


class EventRaised(_Strict):
    kind: str
    subject: str | None = None
    by_s: float = Field(ge=0)


class StopsAtMost(_Strict):
    """No car (of ``chargers``, default all) stopped charging more than ``stops`` times:
    start/stop hysteresis spares contactors."""

    stops: int = Field(ge=0)
    chargers: list[str] | None = None


class LimitChangesAtMost(_Strict):
    """The limit the charger enforces changed at most ``changes`` times between ``from_s``
    and the end (charger flash is written on every change)."""

    charger: str
    changes: int = Field(ge=0)
    from_s: float = Field(default=0.0, ge=0)


class Expectation(_Strict):
    """One check, exactly one key."""

    never_above_limit: NeverAbove | None = None
    limit_at_most: LimitAtMost | None = None
    limit_at_least: LimitAtLeast | None = None
    all_charging_by: AllChargingBy | None = None
    event_raised: EventRaised | None = None
    stops_at_most: StopsAtMost | None = None
    limit_changes_at_most: LimitChangesAtMost | None = None

    @model_validator(mode="after")
    def _one(self) -> Expectation:
        n = sum(getattr(self, k) is not None for k in type(self).model_fields)
        if n != 1:
            raise ValueError(
                "an expectation needs exactly one of: " + ", ".join(type(self).model_fields)
            )
        return self


class ScenarioDecl(_Strict):
    """A whole scenario after its ``base`` chain is merged."""

    name: str
    description: str = ""
    site: str | dict[str, Any]
    duration_s: float = Field(gt=0, le=7 * 86400)
    tick_s: float = Field(default=0.1, gt=0, le=60)
    start_s: float = Field(default=1_700_000_000.0, description="epoch of scenario t=0")
    control: dict[str, Any] = Field(default_factory=dict, description="ControlSection overrides")
    policy: dict[str, Any] = Field(default_factory=dict, description="PolicySection overrides")
    physics: PhysicsDecl = Field(default_factory=PhysicsDecl)
    building_a: dict[str, PerLineDecl] = Field(default_factory=dict)
    evs: list[EvDecl] = Field(default_factory=list)
    events: list[ScenarioEvent] = Field(default_factory=list)
    expect: list[Expectation] = Field(default_factory=list)
