"""Values going into and out of the planner (units in the names; arrays are per slot)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from ampshare.core.site import Site
from ampshare.core.snapshot import Session

__all__ = [
    "Battery",
    "Linearisation",
    "Plan",
    "PlanInput",
    "PlanStatus",
    "SessionPlan",
    "SiteForecast",
]

FloatArray = npt.NDArray[np.float64]


class Linearisation(StrEnum):
    """How ``|sum c_i I_i| <= L`` (a second-order cone) becomes linear rows.

    ``INSCRIBED`` polygon: every plan it allows is within the circle (conservative; the
    planner uses it). ``CIRCUMSCRIBED`` polygon: it allows every point of the circle and a
    little more (a relaxation; the offline optimum uses it, so it is a true upper bound).
    """

    INSCRIBED = "inscribed"
    CIRCUMSCRIBED = "circumscribed"


class Prefer(StrEnum):
    """What the plan serves first among plans that deliver (nearly) the same energy.

    ``ENERGY``: no preference beyond the earliest departure (the most energy over time).
    ``READY``: the cars closest to what they asked for, so that more cars leave with their
    request met, for a little less energy over time where the site is tight (Caltech fall 2019
    at 50 kVA: demands met 57.4 -> 64.0 %, energy 94.5 -> 93.4 % of the optimum; README
    "Planner benchmarks").
    """

    ENERGY = "energy"
    READY = "ready"


class EnergyPriority(StrEnum):
    """How far energy comes before the demand-charge peak and the price.

    ``STRICT``: every kWh a car may still take comes first, however unlikely it is that the
    car is still there to take it (down to the least stay probability the plan counts): a kWh
    with a 2 % chance of delivery may raise the month's peak. ``EXPECTED``: a kWh is worth its
    chance of delivery, so only a kWh of a car sure to be there is worth more than any peak or
    price it adds; an unlikely one waits where it would raise the peak (Caltech fall 2019 at
    150 kVA: demand charge -8 %, energy -0.07 %; README "Planner benchmarks").
    """

    STRICT = "strict"
    EXPECTED = "expected"


class PlanStatus(StrEnum):
    OPTIMAL = "optimal"
    TIME_LIMIT = "time_limit"  # the solver ran out of its time budget: fall back to deadline
    INFEASIBLE = "infeasible"
    FAILED = "failed"  # numerical trouble or another solver failure

    @property
    def usable(self) -> bool:
        return self is PlanStatus.OPTIMAL


@dataclass(frozen=True, slots=True, kw_only=True)
class Battery:
    """A stationary battery at the site's root node (for peak shaving and cheap energy).

    Charging counts against the root node's line limits as a balanced load; discharging is
    never credited against a limit (the battery may trip), only against cost and peak.
    """

    capacity_wh: float
    max_charge_w: float
    max_discharge_w: float
    soc_wh: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    min_soc_wh: float = 0.0
    max_soc_wh: float | None = None  # None: capacity


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class SiteForecast:
    """Forecast of what is not an EV, per planner slot.

    ``building_line_a``: node id -> (n_slots, 3) non-EV current magnitude per line at that
    node (nodes left out carry none); ``building_power_w`` (n_slots,) at the root, for cost and
    contracted capacity; ``pv_power_w`` (n_slots,) behind the root meter (reduces import only).
    """

    building_line_a: Mapping[str, FloatArray] = field(default_factory=lambda: MappingProxyType({}))
    building_power_w: FloatArray | None = None
    pv_power_w: FloatArray | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class PlanInput:
    """One planning problem: slots ``[start_s + k*slot_s, start_s + (k+1)*slot_s)``.

    Sessions are planned between ``max(arrival_s, start_s)`` and their declared ``departure_s``
    (``default_dwell_s`` after arrival when undeclared). ``energy_wanted_wh`` minus
    ``energy_delivered_wh`` is what each still wants (None: as much as it can take).
    ``prices_per_kwh`` (n_slots,) and ``demand_charge_per_kw`` drive cost; a demand peak below
    ``peak_so_far_kw`` (already set this billing period) is free.

    ``stay_samples``: (declared stay [s], true stay / declared stay) of past sessions. Declared
    departures are noisy (ACN: 30 % leave more than 15 min early), so a kWh planned for a
    slot is worth the probability that the car is still there then, given it is there now;
    this makes the plan front-load energy as much as the uncertainty warrants. Each session
    reads that probability from the past sessions that declared a stay most like its own
    (drivers who declare two hours mostly stay longer, those who declare eight mostly leave
    on time). Empty: trust the declarations.

    ``floor_first_slot``: plan the first slot with every car that still wants energy at its
    charger's minimum current (when all minima fit), as the live allocator will run it; the
    receding-horizon planner sets it, the offline optimum does not.
    ``floor_sessions``: with ``floor_first_slot``, only these sessions get the floor (the cars
    charging now, which the ``planned`` allocator never stops; a car not charging starts only
    where the plan wants it at its minimum). None: every session.
    ``prefer``: what the plan serves first among (nearly) equal plans (``Prefer``).
    ``energy_priority``: how far energy comes before the peak and the price
    (``EnergyPriority``).
    """

    site: Site
    start_s: float
    slot_s: float
    n_slots: int
    sessions: tuple[Session, ...]
    forecast: SiteForecast = field(default_factory=SiteForecast)
    prices_per_kwh: FloatArray | None = None
    demand_charge_per_kw: float = 0.0
    peak_so_far_kw: float = 0.0
    peak_window_s: float = 900.0
    contracted_capacity_w: float | None = None
    battery: Battery | None = None
    default_dwell_s: float = 8 * 3600.0
    linearisation: Linearisation = Linearisation.INSCRIBED
    max_facet_deg: float = 10.0
    priority_factor: float = 4.0
    time_limit_s: float | None = None
    stay_samples: tuple[tuple[float, float], ...] = ()
    floor_first_slot: bool = False
    floor_sessions: frozenset[str] | None = None
    prefer: Prefer = Prefer.ENERGY
    energy_priority: EnergyPriority = EnergyPriority.STRICT


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionPlan:
    """What the plan promises one session: expected energy by its declared departure.

    ``will_not_be_ready`` is true when the departure lies within the horizon and the expected
    energy falls short of the request (by more than 1 % or 50 Wh).
    """

    session_id: str
    charger_id: str
    departure_s: float
    requested_wh: float | None
    expected_wh: float
    will_not_be_ready: bool
    departure_in_horizon: bool


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Plan:
    """The planner's answer. ``current_a[i, k]`` is session ``session_ids[i]``'s target [A per
    phase] in slot ``k``; ``grid_kw``/``battery_kw`` (charge positive) per slot.

    When ``status`` is not usable, the arrays are zeros and the caller falls back to the
    ``deadline`` policy.
    """

    status: PlanStatus
    start_s: float
    slot_s: float
    n_slots: int
    session_ids: tuple[str, ...]
    current_a: FloatArray
    sessions: tuple[SessionPlan, ...]
    grid_kw: FloatArray
    battery_kw: FloatArray
    peak_kw: float
    message: str = ""
    peak_charged: bool = False  # the input had a demand charge: ``peak_kw`` was minimised
    stays_known: bool = False  # the input had stay samples (how drivers keep declarations)

    @property
    def end_s(self) -> float:
        return self.start_s + self.slot_s * self.n_slots

    @property
    def warnings(self) -> tuple[SessionPlan, ...]:
        """Sessions that will not get what they asked for by their departure."""
        return tuple(s for s in self.sessions if s.will_not_be_ready)
