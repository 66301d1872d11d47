"""Driving a stationary battery live from the plan, pure.

The plan gives the battery a power per slot (``Plan.battery_kw``, charge positive). Live, that
power is a wish that the instant may not allow, so ``battery_command`` bounds it:

* charging only into headroom the site has: what the root's lines (and its primary, power and
  line-sum limits) have left after the cars' allocation (``spare_power_w``), plus what the
  battery already draws (counted as building load, so in use, not spare), plus what the cars
  draw beyond their plan targets (the plan gave that to the battery; a rise is reserved as
  load first so that the controller takes it back from them, ``BatteryDriver``), less what
  the cars lack of their own targets (``ev_gap_w``: energy by departure comes first), under
  the plan's held demand peak, and never above the top state of charge;
* discharging only up to what the site would import without it (no export: the battery
  shaves import, it does not feed the grid), never below the bottom state of charge; above
  the held demand peak, as much as brings the import back to it, whatever the plan said;
* nothing without a usable plan for now, or while the battery's own reading is not fresh.

``BatteryDriver`` keeps what these rules need between steps (the last reading, what was sent,
the charge reserved ahead of sending it); the live loop (``app._battery``) and the replay
(``sim.engine``) each drive one.

Discharging is never credited against a limit (``Battery``'s rule in the plan, and
``uncredited`` live): a battery may trip or stop at its bottom charge at any moment, and the
cars must not be drawing current that only its discharge made room for. So the root meter's
readings reach the controller with the battery's discharge added back as load.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ampshare.core.allocation import (
    Allocation,
    ChargerLimits,
    NodeHeadroom,
    NodeHeadrooms,
    site_import_kw,
)
from ampshare.core.planner._types import Battery, Plan
from ampshare.core.site import Site
from ampshare.core.snapshot import BatteryReading, MeterReading

__all__ = [
    "BatteryCommand",
    "BatteryDriver",
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
    root's lines after the cars' allocation, on every line, and no more than the root's other
    columns (transformer primary lines, power, sum of lines) leave (``NodeHeadrooms.any_a``,
    counted as if the load were that many amperes on each line). 0 when the root is not
    metered freshly, or has such columns and the allocation does not say what they leave
    (unknown means no room)."""
    lines = site.voltage.lines
    root = site.root
    for h in headroom:
        if h.node_id != root.id:
            continue
        if not h.measured or h.stale:
            return 0.0
        room = [h.headroom_a[line.index] for line in lines]
        if any(r is None for r in room):
            return 0.0
        least = min(float(r) for r in room if r is not None)
        others = (
            root.primary is not None
            or root.max_power_w is not None
            or (root.max_line_sum_a is not None)
        )
        if others:
            if not isinstance(headroom, NodeHeadrooms) or headroom.any_a is None:
                return 0.0
            least = min(least, headroom.any_by_node().get(root.id, math.inf) / len(lines))
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
    ceiling_room_w: float | None = None,
    over_peak_w: float | None = None,
) -> BatteryCommand:
    """What to ask of the battery now.

    ``planned_w``: the plan's power for this slot (``planned_battery_w``); ``soc_wh`` and
    ``power_w``: the battery's fresh reading (None: not fresh); ``spare_w``: the root's
    headroom after the cars (``spare_power_w``); ``import_w``: the site's import now (None:
    not known); ``shortfall_w`` and ``extra_w``: what the cars lack of their plan targets and
    draw beyond them (``ev_gap_w``); ``ceiling_room_w``: with the plan's demand peak held,
    what the battery may draw under it (None: no peak held); ``over_peak_w``: how far the
    site would import above that peak without the battery (None: no peak held).

    Above the held peak the battery discharges to bring the import back to it, whatever the
    plan said for this slot: a peak the plan did not foresee (cars it did not know of) is
    what a battery is for, and the next plan starts from the charge that is left."""
    if soc_wh is None or power_w is None:
        return BatteryCommand(power_w=0.0, reason="battery not read: idle")
    if planned_w is None:
        return BatteryCommand(power_w=0.0, reason="no plan: idle")
    over_w = over_peak_w if over_peak_w is not None else 0.0
    shave = over_w >= MIN_COMMAND_W  # above the held peak: never charge
    if not shave and planned_w >= MIN_COMMAND_W:
        room = spare_w + extra_w + max(0.0, power_w) - shortfall_w
        peak_room = math.inf if ceiling_room_w is None else max(0.0, ceiling_room_w)
        return _charge(
            battery,
            soc_wh=soc_wh,
            planned_w=planned_w,
            room_w=room,
            peak_room_w=peak_room,
            shortfall_w=shortfall_w,
        )
    if not shave and planned_w > -MIN_COMMAND_W:
        return BatteryCommand(power_w=0.0, reason="planned idle")
    if shave:  # discharge what brings the import back to the peak
        done = "discharging to hold the demand peak"
        want, reasons = min(max(over_w, -planned_w), battery.max_discharge_w), (done, done)
    else:
        want = min(-planned_w, battery.max_discharge_w)
        reasons = ("discharging as planned", "discharging, held to the site's import")
    return _discharge(
        battery, soc_wh=soc_wh, power_w=power_w, import_w=import_w, want_w=want, reasons=reasons
    )


def _charge(
    battery: Battery,
    *,
    soc_wh: float,
    planned_w: float,
    room_w: float,
    peak_room_w: float,
    shortfall_w: float,
) -> BatteryCommand:
    """Charge at the plan's power, held to the root's headroom ``room_w`` (after the cars and
    what they lack of their targets) and to ``peak_room_w`` under the held demand peak."""
    top = battery.capacity_wh if battery.max_soc_wh is None else battery.max_soc_wh
    if soc_wh >= top:
        return BatteryCommand(power_w=0.0, reason="full (top state of charge): idle")
    want = min(planned_w, battery.max_charge_w)
    got = min(want, room_w, peak_room_w)
    held_by_peak = peak_room_w < room_w
    if got < MIN_COMMAND_W:
        if shortfall_w > 0:
            why = "the cars need the headroom"
        elif held_by_peak:
            why = "holding the site's demand peak"
        else:
            why = "no headroom at the root"
        return BatteryCommand(power_w=0.0, reason=f"{why}: idle")
    if got >= want:
        why = "charging as planned"
    elif held_by_peak:
        why = "charging, held to the site's demand peak"
    else:
        why = "charging, held to the root's headroom"
    return BatteryCommand(power_w=got, reason=why)


def _discharge(
    battery: Battery,
    *,
    soc_wh: float,
    power_w: float,
    import_w: float | None,
    want_w: float,
    reasons: tuple[str, str],
) -> BatteryCommand:
    """Discharge ``want_w``, never more than the site would import without the battery (no
    export); ``reasons``: (all of it, held to the import)."""
    if soc_wh <= battery.min_soc_wh:
        return BatteryCommand(power_w=0.0, reason="empty (bottom state of charge): idle")
    if import_w is None:
        return BatteryCommand(power_w=0.0, reason="site import not known: idle")
    draws = import_w - power_w  # what the site would import without the battery
    got = min(want_w, draws)
    if got < MIN_COMMAND_W:
        return BatteryCommand(power_w=0.0, reason="nothing to shave: idle")
    return BatteryCommand(power_w=-got, reason=reasons[0] if got >= want_w else reasons[1])


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


@dataclass(slots=True, kw_only=True)
class BatteryDriver:
    """A battery's decision state between steps, without I/O (the caller reads the battery
    into ``latest`` and writes what ``decide`` says when ``due``, then calls ``sent``).

    A rise in charge is sequenced like a car's increase: first *reserved* (``load_to_add_w``
    counts it as load, so the controller lowers the cars, decreases first) and released only
    once the reservation has stood ``hold_s`` (the cars' reaction time and a margin); a fall
    goes out at once. A battery not read within ``timeout_s`` is idled, and counted as the
    larger of its full discharge and the charge it was told (unknown means pessimistic)."""

    model: Battery
    site: Site
    timeout_s: float = 10.0
    hold_s: float = 7.0
    deadband_w: float = 200.0
    refresh_s: float = 30.0
    latest: BatteryReading | None = None
    command: BatteryCommand = BatteryCommand(power_w=0.0, reason="not started")
    sent_w: float | None = None  # the last setpoint the battery accepted
    sent_s: float = -math.inf
    reserved_w: float = 0.0  # charge counted as load ahead of sending it
    reserved_s: float = -math.inf

    # --- what is known --------------------------------------------------------------------
    def fresh(self, now_s: float) -> BatteryReading | None:
        r = self.latest
        return r if r is not None and now_s - r.t_s <= self.timeout_s else None

    def soc_wh(self, now_s: float) -> float | None:
        r = self.fresh(now_s)
        return None if r is None else r.soc_pct / 100.0 * self.model.capacity_wh

    def load_to_add_w(self, now_s: float) -> float:
        """What the controller adds to the root meter's readings [W]: the battery's discharge,
        and the charge it was told to take or has reserved beyond what it shows; while not read
        freshly, the larger of its full discharge and that charge."""
        r = self.fresh(now_s)
        if r is None:
            # Not known: it may be discharging at its most (the meter lower by that) or about
            # to take the charge it was told (not in the meter yet), never both at once.
            return max(self.model.max_discharge_w, self._charge_held_w())
        discharge = max(0.0, -r.power_w)
        return discharge + max(0.0, self._charge_held_w() - max(0.0, r.power_w))

    def _charge_held_w(self) -> float:
        """The charge the battery was told to take or has reserved, whichever is more."""
        return max(0.0, self.sent_w or 0.0, self.reserved_w)

    def planner_view(self, now_s: float) -> tuple[float | None, float]:
        """For a planner learning the building: what of the root's non-EV load (as the step
        counted it) is the battery's — its charge, or the charge it was told or reserved where
        more (None while not read freshly: nothing is known then); and what the step added to
        the site's import for it (``load_to_add_w``; 0 while not read freshly, so the peak so
        far is rather overstated)."""
        r = self.fresh(now_s)
        if r is None:
            return None, 0.0
        return max(0.0, r.power_w, self._charge_held_w()), self.load_to_add_w(now_s)

    # --- deciding -------------------------------------------------------------------------
    def decide(
        self,
        now_s: float,
        planned_w: float | None,
        allocation: Allocation | None,
        *,
        targets_a: Mapping[str, float] | None = None,
        charger_of: Mapping[str, str] | None = None,
        ceiling_w: float | None = None,
        metered_import_w: float | None = None,
    ) -> BatteryCommand:
        """The command for now (also kept as ``command``): ``battery_command`` on this step's
        allocation, then sequenced. ``metered_import_w``: the root meter's own reading of the
        site's import now (battery included), which bounds a discharge (no export); without it
        the allocation's count (the cars at their limits, so rather more than they draw).
        ``planned_w``: the plan's power for now
        (``planned_battery_w``); ``targets_a``: the plan's targets the step ran with (session
        id -> A); ``charger_of``: session id -> charger id; ``ceiling_w``: the site import
        the step held (``Policy.planned_ceiling_w``; the battery's charge stays under it too,
        or it would set the peak the plan kept the cars from setting)."""
        r = self.fresh(now_s)
        headroom = allocation.headroom if allocation is not None else ()
        imported = site_import_kw(self.site, headroom)
        shortfall = extra = 0.0
        if allocation is not None and targets_a:
            shortfall, extra = ev_gap_w(
                allocation.limits, targets_a, charger_of or {}, self.site.voltage.line_to_neutral_v
            )
        held = 0.0 if r is None else max(0.0, r.power_w, self._charge_held_w())
        spare = spare_power_w(self.site, headroom)
        # What the battery may draw now on every column: what the allocation left free, with
        # the battery's own counted charge (shown, told or reserved) given back to it.
        free = spare + held
        ceiling_room = over_peak = None
        if ceiling_w is not None and imported is not None:
            # the import the step counted holds the battery's charge (shown or held) and the
            # cars' extra, both of which are the battery's under the plan's peak
            ceiling_room = ceiling_w - imported * 1000.0 + held + extra - shortfall
            # (a discharge is counted back as load: the count is the import without it)
            over_peak = imported * 1000.0 - held - ceiling_w
        import_w = metered_import_w
        if import_w is None and imported is not None:
            # the step counted the discharge as load: what the site really imports is less
            import_w = imported * 1000.0 - self.load_to_add_w(now_s)
        wanted = battery_command(
            planned_w=planned_w,
            battery=self.model,
            soc_wh=self.soc_wh(now_s),
            power_w=None if r is None else r.power_w,
            # the charge reserved beyond what it shows was kept from the cars for it
            spare_w=spare + (0.0 if r is None else held - max(0.0, r.power_w)),
            import_w=import_w,
            shortfall_w=shortfall,
            extra_w=extra,
            ceiling_room_w=ceiling_room,
            over_peak_w=over_peak,
        )
        self.command = self._sequenced(now_s, wanted, free)
        return self.command

    def _sequenced(self, now_s: float, wanted: BatteryCommand, free_w: float) -> BatteryCommand:
        """A rise is reserved first (the controller counts it as load and makes room, every
        column exactly as the allocator does) and goes out after ``hold_s``, then only as far
        as the allocation that counted it left free (``free_w``); a fall goes out at once."""
        charge = max(0.0, wanted.power_w)
        if charge > self.reserved_w + 1e-9:
            self.reserved_s = now_s  # a higher reservation starts its hold again
        self.reserved_w = charge
        going = max(0.0, self.sent_w or 0.0)
        if charge <= going:
            return wanted
        if now_s - self.reserved_s < self.hold_s:
            return BatteryCommand(
                power_w=going,
                reason=f"{wanted.reason}: {charge:.0f} W reserved, the cars make room first",
            )
        send = min(charge, free_w)
        if send <= going + MIN_COMMAND_W:
            return BatteryCommand(
                power_w=going,
                reason=f"{wanted.reason}: {charge:.0f} W reserved, waiting for room",
            )
        if send < charge:
            return BatteryCommand(power_w=send, reason="charging, held to the root's headroom")
        return wanted

    def due(self, now_s: float, cmd: BatteryCommand) -> bool:
        """Send ``cmd`` now: nothing sent yet, a change beyond the deadband, a stop, or the
        refresh interval passed."""
        if self.sent_w is None or now_s - self.sent_s >= self.refresh_s:
            return True
        if cmd.power_w == 0.0:
            return self.sent_w != 0.0
        return abs(cmd.power_w - self.sent_w) >= self.deadband_w

    def sent(self, power_w: float, now_s: float) -> None:
        """The battery accepted ``power_w`` at ``now_s``."""
        self.sent_w = power_w
        self.sent_s = now_s
