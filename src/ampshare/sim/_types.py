"""Values at the replay's boundary: EV options, the planner hook, and what a replay produced."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ampshare.core.allocation import RotationState
from ampshare.core.site import Site
from ampshare.core.snapshot import ChargerState, Session
from ampshare.sim._compiled import CompiledSite
from ampshare.sim.data import SessionRecord

__all__ = ["EvOptions", "PlanProvider", "PlanView", "Replay"]

FloatArray = npt.NDArray[np.float64]


class PlanProvider(Protocol):
    """The hook for the planner: per-session target currents for the ``planned`` policy.

    Called every ``replan_s`` and whenever a car arrives or leaves; the targets go into
    ``Policy.planned_targets_a`` until the next call. ``sessions`` carry only what the
    controller may know (declared departure and energy, energy delivered so far); ``states``
    what the chargers with a car report (status, offered and measured current), as a live
    controller sees them — how a planner tells a full car from one that was not offered
    current — and ``rotation``, the controller's memory of who it keeps charging (what the
    ``planned`` allocator will not stop; ``core.planner.charging_sessions``). It returns the
    targets, or a ``PlanView`` that also holds a demand peak. With a simulated battery it is
    also told the battery's state (``BatteryState``).
    """

    def __call__(
        self,
        now_s: float,
        site: Site,
        sessions: tuple[Session, ...],
        states: tuple[ChargerState, ...],
        *,
        rotation: RotationState,
        battery: BatteryState | None = None,
    ) -> Mapping[str, float] | PlanView: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BatteryState:
    """A simulated battery as a plan provider is told of it: its charge now and the net energy
    it took at its terminals since the replay began (charged minus discharged), which the
    site's import carried."""

    soc_wh: float
    net_wh: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanView:
    """What a ``PlanProvider`` hands the ``planned`` policy until its next call: the target
    current per session id, the site import to hold (``Policy.planned_ceiling_w``) and, with a
    battery, its planned power per slot."""

    targets_a: Mapping[str, float]
    ceiling_w: float | None = None
    # the plan's battery power per slot (kW, charge positive) from ``battery_start_s``
    battery_start_s: float = 0.0
    battery_slot_s: float = 900.0
    battery_kw: tuple[float, ...] = ()

    def battery_w(self, now_s: float) -> float | None:
        """The plan's battery power for the slot holding ``now_s`` [W]; None outside it."""
        if not self.battery_kw or now_s < self.battery_start_s:
            return None
        k = int((now_s - self.battery_start_s) // self.battery_slot_s)
        return self.battery_kw[k] * 1000.0 if k < len(self.battery_kw) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class EvOptions:
    """How simulated cars behave. ``max_current_a`` None: the charger's maximum; ``phases``
    None: all phases of the charger (1 on single-phase and line-to-line chargers).
    ``capacity_wh``: usable battery; a car arrives so that its demand ends at
    ``target_soc`` (taper applies in the last part), or with a bigger battery if it wants more.
    ``basic`` is the ideal battery (no taper)."""

    max_current_a: float | None = None
    phases: int | None = None
    capacity_wh: float = 60_000.0
    target_soc: float = 0.9
    reaction_s: float = 5.0
    basic: bool = False


@dataclass(slots=True)
class Replay:
    """What a replay produced, for metrics, trace and report.

    Segment arrays: ``seg_t_s`` start, ``seg_dt_s`` length, ``seg_rows_a`` line current of
    every limited row (see ``CompiledSite.labels``), ``seg_site_kw`` root power (building + EV
    − PV), ``seg_building_kw`` building − PV at the root, ``seg_ev_a`` (optional) per-charger
    current per phase. Per session: ``delivered_wh``, ``charger_of`` (-1: no free charger).
    """

    compiled: CompiledSite
    records: tuple[SessionRecord, ...]
    seg_t_s: FloatArray
    seg_dt_s: FloatArray
    seg_rows_a: FloatArray
    seg_site_kw: FloatArray
    seg_building_kw: FloatArray
    seg_building_a: FloatArray
    seg_ev_a: FloatArray | None
    seg_single: npt.NDArray[np.bool_] | None
    delivered_wh: FloatArray
    charger_of: npt.NDArray[np.int64]
    start_stop_events: int
    steps: int
    decisions: int
    wall_s: float
    battery_kwh: tuple[float, float] | None = None  # a simulated battery's (charged, discharged)
    seg_battery_kw: FloatArray | None = None  # its mean power per segment (charge positive)
    seg_battery_soc_kwh: FloatArray | None = None  # its stored energy at each segment's end
