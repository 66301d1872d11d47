"""What ``allocate`` may subtract of each charger's report from its meters' readings.

The allocator takes a metered node's non-EV load as its measured total minus the chargers'
reported currents below it. Meters read every second, chargers report every 10-60 s (or on
every change), so the two were taken at different times, and the subtraction is only safe
while no charger is credited with more than it drew when the meter read: current credited
above that makes the building look smaller by the difference, and the allocator gives it to
other cars (a real overload until the next reading and the cars' reaction).

So each report is credited, per site line, at no more than:

* what its charger may draw now (``high_a``): a report older than a confirmed decrease;
* for a report newer than the oldest fresh meter reading above its charger: the least the
  charger reported from its last report at or before that reading on (``prior_line_a``),
  and 0 when no report at or before it is known (its first report came after the reading):
  a car that started or rose after the meter read is not subtracted from a total that does
  not hold it yet (one meter period of pessimism instead of an overload);
* until a report taken after the car's last raise is the one at or before the reading
  (``dip_seen_s``): the limit it was raised from (``dip_a``). A decrease confirmed by the EV
  reaction time leaves no report of the lower draw; raised again, the car is still low in
  the readings taken before it follows, while its last report, from before the decrease,
  says more. (A car under a meter is raised only once its own decrease is confirmed,
  ``_sequence``: raised back before, it could still follow the lower pilot and dip at a time
  nothing records.)

Chargers under no fresh meter need none of this (their nodes use configured limits, stale
meters their worst case), nor do offline and non-compliant ones (counted at their worst
case on top). The controller's state keeps every report as it came; only what ``allocate``
gets is lowered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from operator import gt

from ampshare.control._index import SiteIndex
from ampshare.control._settings import ControlSettings
from ampshare.control._table import TrackTable
from ampshare.control._types import MeterTrack, PerLine
from ampshare.control._watch import meter_deadline_s
from ampshare.core._bulk import replacer
from ampshare.core.site import Site
from ampshare.core.snapshot import ChargerState

__all__ = ["MeterTimes", "credited", "meter_times"]

INF = float("inf")
NO_DIP = float("-inf")


@dataclass(frozen=True, slots=True)
class MeterTimes:
    """Per meter set of ``SiteIndex.meter_sets``: ``trusted``, when the oldest reading that
    ``allocate`` subtracts reports from was taken (inf when none of the set's meters is
    trusted: their nodes count at their worst case); ``pairable``, the same over every
    meter whose reading is within its timeout, trusted or not yet trusted again: a reading
    that may be subtracted from once its meter is trusted, which reports newer than it must
    not be taken for (``ChargerTrack.prior_s``)."""

    trusted: list[float]
    pairable: list[float]


def meter_times(
    site: Site,
    index: SiteIndex,
    meters: Mapping[str, MeterTrack],
    now_s: float,
    settings: ControlSettings,
) -> MeterTimes:
    """``MeterTimes`` of this step (after its readings and staleness were folded in)."""
    trusted: dict[str, float] = {}
    pairable: dict[str, float] = {}
    for spec in site.meters:
        m = meters[spec.id]
        if m.last is None:
            continue
        if not m.stale:
            trusted[spec.id] = m.last.t_s
        if now_s <= meter_deadline_s(settings, spec, m):
            pairable[spec.id] = m.last.t_s
    return MeterTimes(
        trusted=[
            min((trusted.get(mid, INF) for mid in ids), default=INF) for ids in index.meter_sets
        ],
        pairable=[
            min((pairable.get(mid, INF) for mid in ids), default=INF) for ids in index.meter_sets
        ],
    )


def _newest_report(report_s: list[float | None]) -> float:
    """The newest report time (``NO_DIP`` when none has reported). ``max`` over the column
    first: the common case has every charger reported; a ``None`` among several fails the
    comparison, but a lone ``None`` (one charger, not reported yet) comes back as itself."""
    try:
        newest = max(report_s)  # type: ignore[type-var]  # None: not reported yet
    except (TypeError, ValueError):
        return max((r for r in report_s if r is not None), default=NO_DIP)
    return NO_DIP if newest is None else newest


def _candidates(table: TrackTable, times: list[float]) -> set[int]:
    """Rows whose report may need lowering, found with whole-column checks first (the
    common case: every report older than the meter readings, no dip, nothing over
    ``high_a``)."""
    measured, high = table.measured_a, table.high_a
    rows: set[int] = set()
    if any(map(gt, measured, high)):
        rows.update(i for i, (m, h) in enumerate(zip(measured, high, strict=True)) if m > h)
    oldest = min(times, default=INF)
    if oldest == INF:
        return rows
    report_s = table.report_s
    if _newest_report(report_s) > oldest:
        rows.update(i for i, r in enumerate(report_s) if r is not None and r > oldest)
    dips = table.dip_seen_s
    if max(dips, default=NO_DIP) != NO_DIP:
        rows.update(i for i, d in enumerate(dips) if d != NO_DIP)
    return rows


def _cap(table: TrackTable, i: int, meter_s: float) -> PerLine:
    """Per site line, the most row ``i``'s report may be credited against a meter reading
    taken at ``meter_s`` (inf: no fresh meter above it)."""
    top = table.high_a[i]
    cap: PerLine = (INF, INF, INF) if table.measured_a[i] <= top + 1e-9 else (top, top, top)
    if meter_s == INF:
        return cap
    latest = table.report_s[i]
    base: float | None = latest
    if latest is not None and latest > meter_s:
        prior, base = table.prior_line_a[i], table.prior_s[i]
        if prior is None or base is None or base > meter_s:
            return (0.0, 0.0, 0.0)  # nothing known at or before the reading
        cap = (min(cap[0], prior[0]), min(cap[1], prior[1]), min(cap[2], prior[2]))
    seen = table.dip_seen_s[i]
    if seen != NO_DIP and (base is None or base < seen):
        dip = table.dip_a[i]
        cap = (min(cap[0], dip), min(cap[1], dip), min(cap[2], dip))
    return cap


#: a copy of a ``ChargerState`` with some fields changed (``dataclasses.replace`` took longer
#: than the rest of the work here)
_relabel = replacer(ChargerState)


def _lowered(s: ChargerState, cap: PerLine) -> ChargerState:
    cur = s.measured_current_a
    if cur is None:
        return s
    a, b, c = cur
    lines = (
        None if a is None else min(a, cap[0]),
        None if b is None else min(b, cap[1]),
        None if c is None else min(c, cap[2]),
    )
    if lines == cur:
        return s
    power = s.power_w
    if power is not None:
        was = sum(v for v in cur if v is not None)
        now = sum(v for v in lines if v is not None)
        power = power * now / was if was > 0 else 0.0
    low: ChargerState = _relabel(s, measured_current_a=lines, power_w=power)
    return low


def credited(
    values: tuple[ChargerState, ...],
    table: TrackTable,
    index: SiteIndex,
    meter_times: MeterTimes,
) -> tuple[ChargerState, ...]:
    """The charger reports as ``allocate`` subtracts them from their meters' totals (see the
    module docstring; ``meter_times`` of this step). ``values`` comes back as it is when no
    report needs lowering."""
    times = meter_times.trusted
    rows = _candidates(table, times)
    if not rows:
        return values
    ids, online, over = table.ids, table.online, table.over_since_s
    sets = index.meter_set
    caps: dict[str, PerLine] = {}
    for i in rows:
        if not online[i] or table.noncompliant[i] or over[i] is not None:
            continue  # counted at its worst case on top (a fixed load)
        k = sets.get(ids[i])
        caps[ids[i]] = _cap(table, i, INF if k is None else times[k])
    if not caps:
        return values
    out = list(values)
    changed = False
    for k, s in enumerate(values):
        cap = caps.get(s.charger_id)
        if cap is not None and (low := _lowered(s, cap)) is not s:
            out[k] = low
            changed = True
    return tuple(out) if changed else values
