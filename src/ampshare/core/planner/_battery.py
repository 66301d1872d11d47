"""Driving a stationary battery live from the plan, pure.

The plan gives the battery a power per slot (``Plan.battery_kw``, charge positive). Live, that
power is a wish that the instant may not allow, so ``battery_command`` bounds it:

* charging only into headroom the site has: what the root's lines have left after the cars'
  allocation (``spare_power_w``), plus what the battery already draws (the meter counted it as
  building load, so it is in use, not spare), plus what the cars draw beyond their plan targets
  (the plan gave that to the battery; the caller takes it back from them before the battery
  rises, ``app._battery``), less what the cars lack of their own targets (``ev_gap_w``: a
  charging battery gives way to them, energy by departure comes first); and never above the
  top state of charge;
* discharging only up to what the site draws (no export: the battery shaves import, it does
  not feed the grid), never below the bottom state of charge;
* nothing without a usable plan for now, or while the battery's own reading is not fresh.

Discharging is never credited against a limit (``Battery``'s rule in the plan, and
``uncredited`` live): a battery may trip or stop at its bottom charge at any moment, and the
cars must not be drawing current that only its discharge made room for. So the root meter's
readings reach the controller with the battery's discharge added back as load.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ampshare.core.allocation import ChargerLimits, NodeHeadroom
from ampshare.core.planner._types import Battery, Plan
from ampshare.core.site import Site
from ampshare.core.snapshot import MeterReading

__all__ = [
    "BatteryCommand",
    "battery_command",
    "ev_gap_w",
    "planned_battery_w",
    "spare_power_w",
    "uncredited",
]

# Below this a command is no command: inverters do not resolve a few watts, and a setpoint
# that flips between +3 W and -3 W would only wear the relays.
MIN_COMMAND_W = 50.0


@dataclass(frozen=True, slots=True, kw_only=True)
class BatteryCommand:
    """The power to ask of the battery (W, charge positive, 0 idle) and why, in words."""

    power_w: float
    reason: str


def planned_battery_w(plan: Plan | None, now_s: float) -> float | None:
    """The plan's battery power [W] for the slot holding ``now_s``; None without a usable plan
    covering it."""
    if plan is None or not plan.status.usable or not plan.start_s <= now_s < plan.end_s:
        return None
    k = min(plan.n_slots - 1, math.floor((now_s - plan.start_s) / plan.slot_s))
    return float(plan.battery_kw[k]) * 1000.0


def spare_power_w(site: Site, headroom: Iterable[NodeHeadroom]) -> float:
    """What a balanced load at the root could still draw [W]: the smallest headroom of the
    root's lines after the cars' allocation, on every line. 0 when the root is not metered
    freshly (unknown means no room)."""
    lines = site.voltage.lines
    for h in headroom:
        if h.node_id != site.root.id:
            continue
        if not h.measured or h.stale:
            return 0.0
        room = [h.headroom_a[line.index] for line in lines]
        if any(r is None for r in room):
            return 0.0
        least = min(float(r) for r in room if r is not None)
        return max(0.0, least) * len(lines) * site.voltage.line_to_neutral_v
    return 0.0


def ev_gap_w(
    limits: ChargerLimits,
    targets_a: Mapping[str, float],
    charger_of: Mapping[str, str],
    v_ln: float,
) -> tuple[float, float]:
    """How the cars' limits stand against their plan targets [W]: ``(shortfall, extra)``,
    per session with a target (``targets_a``, session id -> A per phase) on a charger
    (``charger_of``), the target above the charger's limit and the limit above the target, on
    each phase it charges with. The extra is "use every amp" current beyond the plan, which a
    planned charge of the battery may take back."""
    index = {cid: i for i, cid in enumerate(limits.charger_ids)}
    short = extra = 0.0
    for sid, target in targets_a.items():
        i = index.get(charger_of.get(sid, ""))
        if i is None:
            continue
        per_a = limits.phases[i] * v_ln
        short += max(0.0, target - limits.limit_a[i]) * per_a
        extra += max(0.0, limits.limit_a[i] - target) * per_a
    return short, extra


def battery_command(
    *,
    planned_w: float | None,
    battery: Battery,
    soc_wh: float | None,
    power_w: float | None,
    spare_w: float,
    import_w: float | None,
    shortfall_w: float = 0.0,
    extra_w: float = 0.0,
) -> BatteryCommand:
    """What to ask of the battery now.

    ``planned_w``: the plan's power for this slot (``planned_battery_w``); ``soc_wh`` and
    ``power_w``: the battery's fresh reading (None: not fresh); ``spare_w``: the root's
    headroom after the cars (``spare_power_w``); ``import_w``: the site's import now (None:
    not known); ``shortfall_w`` and ``extra_w``: what the cars lack of their plan targets and
    draw beyond them (``ev_gap_w``)."""
    if soc_wh is None or power_w is None:
        return BatteryCommand(power_w=0.0, reason="battery not read: idle")
    if planned_w is None:
        return BatteryCommand(power_w=0.0, reason="no plan: idle")
    top = battery.capacity_wh if battery.max_soc_wh is None else battery.max_soc_wh
    if planned_w >= MIN_COMMAND_W:
        if soc_wh >= top:
            return BatteryCommand(power_w=0.0, reason="full (top state of charge): idle")
        room = spare_w + extra_w + max(0.0, power_w) - shortfall_w
        want = min(planned_w, battery.max_charge_w)
        got = min(want, room)
        if got < MIN_COMMAND_W:
            why = "the cars need the headroom" if shortfall_w > 0 else "no headroom at the root"
            return BatteryCommand(power_w=0.0, reason=f"{why}: idle")
        why = "charging as planned" if got >= want else "charging, held to the root's headroom"
        return BatteryCommand(power_w=got, reason=why)
    if planned_w <= -MIN_COMMAND_W:
        if soc_wh <= battery.min_soc_wh:
            return BatteryCommand(power_w=0.0, reason="empty (bottom state of charge): idle")
        if import_w is None:
            return BatteryCommand(power_w=0.0, reason="site import not known: idle")
        draws = import_w + max(0.0, -power_w)  # what the site would import without it
        want = min(-planned_w, battery.max_discharge_w)
        got = min(want, draws)
        if got < MIN_COMMAND_W:
            return BatteryCommand(power_w=0.0, reason="nothing to shave: idle")
        why = "discharging as planned" if got >= want else "discharging, held to the site's import"
        return BatteryCommand(power_w=-got, reason=why)
    return BatteryCommand(power_w=0.0, reason="planned idle")


def uncredited(reading: MeterReading, discharge_w: float, v_ln: float) -> MeterReading:
    """The root meter's reading as if the battery did not discharge: ``discharge_w`` added back
    as a balanced load on the lines the reading has (see the module docstring)."""
    if discharge_w <= 0.0:
        return reading
    cur = reading.current_a
    n = sum(1 for a in cur or () if a is not None) or 3
    per_line_w = discharge_w / n
    add_a = per_line_w / v_ln
    return replace(
        reading,
        current_a=None
        if cur is None
        else (_plus(cur[0], add_a), _plus(cur[1], add_a), _plus(cur[2], add_a)),
        power_w=None if reading.power_w is None else reading.power_w + discharge_w,
        power_per_line_w=None
        if reading.power_per_line_w is None
        else (
            _plus(reading.power_per_line_w[0], per_line_w),
            _plus(reading.power_per_line_w[1], per_line_w),
            _plus(reading.power_per_line_w[2], per_line_w),
        ),
    )


def _plus(x: float | None, add: float) -> float | None:
    return None if x is None else x + add
