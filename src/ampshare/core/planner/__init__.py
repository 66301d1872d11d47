"""The planner: departure- and cost-aware schedules for the whole site (pure; numpy/scipy).

``plan(PlanInput) -> Plan`` solves one linear program over a horizon of slots for every
plugged-in session at once. Objectives, in this order (lexicographic weights): energy
delivered by each declared departure (weighted by priority tier), a lower demand-charge peak,
lower energy cost, more PV self-consumption. Constraints: per-slot node and line capacity minus
the forecast building load — phasor magnitudes linearised with an inscribed polygon so that a
feasible plan never exceeds a limit — charger and vehicle maxima, each session's request, an
optional stationary battery, contracted capacity.

``RecedingHorizonPlanner`` re-plans every few minutes and on arrivals and departures;
``targets_at``/``policy_at`` turn a plan into the live allocator's ``planned`` policy (which
stays within instantaneous headroom); a late or failed solve yields the ``deadline`` policy.
``planning_lp`` gives the LP unsolved (for callers that extend it);
``forecast_profile`` forecasts building load from history (same weekday and time, safety
quantile); ``DriverHistory`` learns default stays and energies and how long drivers
really stay against what they declared; ``full_sessions``/``without_full`` take full cars
(SuspendedEV) out of the plan.
"""

from ampshare.core.planner._battery import (
    MIN_COMMAND_W,
    BatteryCommand,
    BatteryDriver,
    battery_command,
    ev_gap_w,
    planned_battery_w,
    spare_power_w,
    uncredited,
)
from ampshare.core.planner._learn import DriverHistory
from ampshare.core.planner._lp import LpMatrices
from ampshare.core.planner._mpc import (
    RecedingHorizonPlanner,
    SessionDefaults,
    apply_defaults,
    charging_sessions,
    full_sessions,
    learn_defaults,
    without_full,
)
from ampshare.core.planner._peak import PeakSoFar, peak_so_far
from ampshare.core.planner._plan import ceiling_w, plan, planning_lp, policy_at, targets_at
from ampshare.core.planner._polygon import cone_arc, facets
from ampshare.core.planner._types import (
    Battery,
    EnergyPriority,
    Linearisation,
    Plan,
    PlanInput,
    PlanStatus,
    Prefer,
    SessionPlan,
    SiteForecast,
)
from ampshare.core.planner.forecast import PvProfile, forecast_profile

__all__ = [
    "MIN_COMMAND_W",
    "Battery",
    "BatteryCommand",
    "BatteryDriver",
    "DriverHistory",
    "EnergyPriority",
    "Linearisation",
    "LpMatrices",
    "PeakSoFar",
    "Plan",
    "PlanInput",
    "PlanStatus",
    "Prefer",
    "PvProfile",
    "RecedingHorizonPlanner",
    "SessionDefaults",
    "SessionPlan",
    "SiteForecast",
    "apply_defaults",
    "battery_command",
    "ceiling_w",
    "charging_sessions",
    "cone_arc",
    "ev_gap_w",
    "facets",
    "forecast_profile",
    "full_sessions",
    "learn_defaults",
    "peak_so_far",
    "plan",
    "planned_battery_w",
    "planning_lp",
    "policy_at",
    "spare_power_w",
    "targets_at",
    "uncredited",
    "without_full",
]
