"""Safety, floor, determinism, work conservation, monotonicity and fairness as properties.

Examples here add up to 2,100; ``bench/allocate_properties.py`` runs the same
properties with many more.
"""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ampshare.core.allocate import allocate
from ampshare.core.allocation import Allocation, AllocationInput, PolicyName, ReasonKind
from ampshare.core.electrical import charger_power_w, connection_phasors
from test_allocate_strategies import TOL, Judge, cases

ALL = ["equal", "fcfs", "priority", "deadline", "planned"]


def cfg(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _bounds(inp: AllocationInput) -> dict[str, tuple[float, float]]:
    out = {}
    sess = {s.charger_id: s for s in inp.sessions}
    for c in inp.site.chargers:
        lo = (
            min(a for a in c.allowed_currents_a if a >= c.min_current_a)
            if (c.allowed_currents_a)
            else c.min_current_a
        )
        vmax = sess[c.id].vehicle_max_current_a if c.id in sess else None
        hi = max(min(c.max_current_a, max(vmax, lo) if vmax is not None else math.inf), lo)
        if c.allowed_currents_a:
            hi = max(a for a in c.allowed_currents_a if a <= hi + TOL)
        out[c.id] = (lo, hi)
    return out


def _step(inp: AllocationInput, cid: str, x: float) -> float:
    c = inp.site.charger(cid)
    if c.allowed_currents_a:
        up = [a for a in c.allowed_currents_a if a > x + 1e-9]
        return min(up) - x if up else math.inf
    return c.resolution_a


@cfg(700)
@given(cases(ALL))
def test_every_node_line_primary_power_within_headroom_and_floor_respected(
    inp: AllocationInput,
) -> None:
    alloc = allocate(inp)
    judge = Judge(inp)
    cur, ph = judge.currents(alloc)
    assert judge.violations(cur, ph) == []
    bounds = _bounds(inp)
    for lim in alloc.limits:
        lo, hi = bounds[lim.charger_id]
        assert lim.limit_a == 0 or lo - TOL <= lim.limit_a <= hi + TOL, (lim, lo, hi)
        if lim.limit_a == 0:
            assert lim.reason.kind in {
                ReasonKind.NO_SESSION,
                ReasonKind.PAUSED_ROTATION,
                ReasonKind.PAUSED_PLAN,
                ReasonKind.PAUSED_NO_HEADROOM,
            }
        c = inp.site.charger(lim.charger_id)
        if c.allowed_currents_a and lim.limit_a:
            assert lim.limit_a in c.allowed_currents_a


@cfg(250)
@given(cases(ALL))
def test_deterministic(inp: AllocationInput) -> None:
    assert allocate(inp) == allocate(inp)


@cfg(450)
@given(cases(ALL))
def test_work_conserving_up_to_one_step(inp: AllocationInput) -> None:
    # A step "would fit" only with room to spare (tolerance -1e-6): a step that lands exactly
    # on a limit up to float noise is one the allocator may rightly refuse.
    alloc = allocate(inp)
    judge = Judge(inp)
    cur, ph = judge.currents(alloc)
    bounds = _bounds(inp)
    before = set(judge.violations(cur, ph, sum_bound=True))
    for lim in alloc.limits:
        _, hi = bounds[lim.charger_id]
        if lim.limit_a == 0 or lim.limit_a >= hi - TOL:
            continue
        nxt = lim.limit_a + _step(inp, lim.charger_id, lim.limit_a)
        if nxt > hi + TOL:
            continue  # the next value the charger accepts is above its maximum
        trial = dict(cur)
        trial[lim.charger_id] = nxt
        assert set(judge.violations(trial, ph, sum_bound=True, tol=-TOL, tol_w=-TOL)) - before, (
            f"{lim.charger_id} at {lim.limit_a} could take one more step ({lim.reason.text})"
        )


def _total_w(inp: AllocationInput, alloc: Allocation) -> float:
    site = inp.site
    return sum(
        charger_power_w(site, site.charger(lim.charger_id), lim.limit_a, lim.phases)
        for lim in alloc.limits
    )


@cfg(350)
@given(cases(["equal"], primary=False), st.floats(1.0, 3.0))
def test_more_headroom_never_lowers_the_total(inp: AllocationInput, factor: float) -> None:
    # Scaling every limit up (and keeping loads) gives at least the same total power, up to
    # one resolution step per charger. Power, not the sum of per-phase limits: with more room a
    # switchable car may charge on three phases at 9 A instead of one phase at 16 A.
    site = inp.site
    bigger = replace(
        site,
        nodes=tuple(
            replace(
                n,
                line_limit_a=tuple(v * factor for v in n.line_limit_a),  # type: ignore[arg-type]
                max_power_w=None if n.max_power_w is None else n.max_power_w * factor,
                max_line_sum_a=None if n.max_line_sum_a is None else n.max_line_sum_a * factor,
            )
            for n in site.nodes
        ),
    )
    small = _total_w(inp, allocate(inp))
    big = _total_w(inp, allocate(replace(inp, site=bigger)))
    volt = site.voltage.line_to_line_v or site.voltage.line_to_neutral_v
    slack = sum(c.resolution_a for c in site.chargers) * volt * 3
    assert big >= small - slack - TOL


def _finite_step(inp: AllocationInput, cid: str, x: float) -> float:
    step = _step(inp, cid, x)
    return step if math.isfinite(step) else 0.0


@cfg(350)
@given(cases(["equal"], primary=False, power=False))
def test_equal_is_max_min_fair(inp: AllocationInput) -> None:
    # Every car below its maximum has a (nearly) full row on which no other charging car with
    # the same weight gets more, except by its own minimum (the floor) and the rounding
    # remainder of that row (under one grid step per car there, handed out in whole steps).
    inp = replace(inp, sessions=tuple(replace(s, weight=1.0) for s in inp.sessions))
    alloc = allocate(inp)
    judge = Judge(inp)
    cur, ph = judge.currents(alloc)
    bounds = _bounds(inp)
    site = inp.site
    for lim in alloc.limits:
        _, hi = bounds[lim.charger_id]
        if lim.limit_a == 0 or lim.limit_a >= hi - TOL:
            continue
        me = site.charger(lim.charger_id)
        # Rows within the site's rounding remainder of full: rounding others down can leave a
        # car's true bottleneck a few steps short of full while a row it shares elsewhere fills.
        remainder = sum(_finite_step(inp, s.charger_id, cur[s.charger_id]) for s in inp.sessions)
        trial = dict(cur)
        trial[me.id] = lim.limit_a + max(_step(inp, me.id, lim.limit_a), remainder)
        full = set(judge.violations(trial, ph)) - set(judge.violations(cur, ph))
        ok = False
        for row in full:
            node, line = row.split()[0], int(row.split()[1][1].rstrip(":")) - 1
            sharing = [
                c
                for c in site.chargers
                if node in site.ancestors(c.node_id)
                and cur[c.id] > 0
                and abs(connection_phasors(site, c, ph[c.id])[line])
            ]
            plugged = {s.charger_id for s in inp.sessions}
            coarse = sum(
                _finite_step(inp, c.id, cur[c.id])
                for c in site.chargers
                if c.id in plugged
                and node in site.ancestors(c.node_id)
                and abs(connection_phasors(site, c, ph[c.id])[line])
            )
            mine = lim.limit_a + _finite_step(inp, me.id, lim.limit_a)
            if all(cur[c.id] <= max(mine, bounds[c.id][0]) + coarse + TOL for c in sharing):
                ok = True
        assert ok, (lim, full)


def test_policy_names_all_run() -> None:
    assert {p.value for p in PolicyName} >= set(ALL)


@cfg(300)
@given(cases([*ALL, "static"]), st.data())
def test_any_room_bounds_the_other_columns(inp: AllocationInput, data: st.DataObject) -> None:
    """``NodeHeadrooms.any_a`` (what the controller lets decreases in flight use): chargers
    below a node drawing up to that many amperes in all beyond their limits, split any way,
    keep the node's primary lines, power and line sum within their limits. (The lines have
    their own per-line headroom; they are not judged here.)"""
    alloc = allocate(inp)
    judge = Judge(inp)
    cur, ph = judge.currents(alloc)
    rooms = alloc.headroom.any_by_node()
    if not rooms:
        return
    nid = data.draw(st.sampled_from(sorted(rooms)))
    site = inp.site
    below = [c.id for c in site.chargers if nid in site.ancestors(c.node_id) and cur[c.id] > 0]
    if not below:
        return
    share = st.floats(0.0, 1.0, allow_subnormal=False)
    shares = data.draw(st.lists(share, min_size=len(below), max_size=len(below)))
    total = sum(shares) or 1.0
    more = dict(cur)
    for cid, part in zip(below, shares, strict=True):
        more[cid] += rooms[nid] * (part / total)  # the fraction first: no rounding up
    before = {v for v in judge.violations(cur, ph) if v.startswith(f"{nid} ")}
    after = {v for v in judge.violations(more, ph) if v.startswith(f"{nid} ")}
    new = {v for v in after - before if not v.split(" ")[1].startswith("L")}
    assert not new, (nid, rooms[nid], new)


def _import_w(judge: Judge, alloc: Allocation) -> float:
    """Site import by the judge's own accounting: the root's non-EV load plus every charger."""
    site = judge.inp.site
    cur, ph = judge.currents(alloc)
    cars = sum(charger_power_w(site, c, cur[c.id], ph[c.id]) for c in site.chargers)
    return judge.other()[site.root.id][3] + cars


@cfg(300)
@given(cases(["planned"]), st.floats(0.0, 1.2))
def test_a_plan_peak_stops_only_current_beyond_the_targets(
    inp: AllocationInput, frac: float
) -> None:
    free = allocate(inp)
    ceiling = frac * _import_w(Judge(inp), free)
    held_inp = replace(inp, policy=replace(inp.policy, planned_ceiling_w=ceiling))
    held = allocate(held_inp)
    judge = Judge(held_inp)
    cur, ph = judge.currents(held)
    assert judge.violations(cur, ph) == []
    bounds = _bounds(inp)
    target_of = {s.charger_id: inp.policy.planned_targets_a[s.session_id] for s in inp.sessions}
    site = inp.site
    stage1_w = judge.other()[site.root.id][3]
    for h, f in zip(held.limits, free.limits, strict=True):
        cid = h.charger_id
        wanted = max(target_of.get(cid, 0.0), bounds[cid][0])
        step = _step(inp, cid, h.limit_a)
        # The same cars charge (who charges is decided before the ceiling; a charger whose
        # minimum is 0 A may round a trickle target down to nothing) ...
        if bounds[cid][0] > 0:
            assert (h.limit_a > 0) == (f.limit_a > 0), (cid, h.limit_a, f.limit_a)
        # ... and one that gets less than without the ceiling, and less than its target, says
        # the plan's peak stopped it (the ceiling keeps room for the targets as the fill
        # reached them; rounding remainders of other cars may be what is missing).
        if f.limit_a > 0 and h.limit_a < min(f.limit_a, wanted) - step - TOL:
            assert h.reason.kind is ReasonKind.PLAN_PEAK, (cid, h.reason.text)
        if cid in target_of and (f.limit_a > 0 or bounds[cid][0] == 0):
            # What the targets take (each car's target, as far as it got without the ceiling,
            # which rounded down by less than a step; a car with a 0 A minimum may have had a
            # trickle that rounded to nothing) bounds the import the ceiling lets through.
            reach = min(wanted, f.limit_a + (step if math.isfinite(step) else 0.0))
            stage1_w += charger_power_w(site, site.charger(cid), reach, ph[cid])
    root_fresh = all(
        not m.stale and m.current_a is not None
        for m in inp.measurements
        if m.node_id == site.root.id
    )
    if root_fresh:  # the judge reads a stale root's load its own way
        assert _import_w(judge, held) <= max(ceiling, stage1_w) + 1.0 + 1e-3
