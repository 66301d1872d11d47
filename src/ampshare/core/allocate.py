"""``allocate``: the pure function that shares headroom among chargers.

One call: compile the site (cached), work out every node's headroom (``_headroom``), decide
who charges at all (the minimum-current floor, ``_floor``), raise the charging cars along
their policy's profiles until a node, line, primary, power or line-sum limit or their own
maximum stops them (``_waterfill.fill``), round down to what each charger accepts, hand the
rounding remainders out again in policy order, and explain every limit.

Decisions worth knowing (README "Allocation" has the user's view):

* A charger without a session gets 0 A (``NO_SESSION``): no car, nothing to share.
* A controller cap below the charger's minimum pauses the car (``CONTROLLER_CAP``): the car
  cannot charge between 0 and its minimum, and the controller asked for less.
* A vehicle maximum below the charger minimum does not pause: the car is offered the minimum
  and simply draws less (counted at the minimum, the pessimistic side).
* ``zero_pauses=False`` chargers cannot be paused: they are counted at their minimum even when
  that does not fit, and the reason says so.
* A three-phase charger whose car declares ``vehicle_phases == 1`` is counted on one phase; one
  with ``can_switch_phases`` is switched to one phase when three phases at the minimum do not
  fit but one phase does.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt

from ampshare.core import _baselines, _floor, _reasons
from ampshare.core._compiled import (
    COL_POWER,
    CompiledSite,
    active_columns,
    can_cancel,
    compile_site,
    site_pair_coefficients,
)
from ampshare.core._grid import Grid, make_grid
from ampshare.core._headroom import Headroom, headroom
from ampshare.core._policies import Cars, charging_now, keep_order, planned_targets_a, profiles
from ampshare.core._sessions import session_facts
from ampshare.core._waterfill import (
    can_bind,
    fill,
    node_sums,
    prefix_accept,
    slack_only,
    violations,
)
from ampshare.core.allocation import (
    Allocation,
    AllocationInput,
    PolicyName,
)

__all__ = ["allocate"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
C128 = npt.NDArray[np.complex128]
B = npt.NDArray[np.bool_]

_TOPUP_ROUNDS = 64


def allocate(inp: AllocationInput) -> Allocation:
    """Decide every charger's limit for this instant (see ``ampshare.core.allocation``)."""
    cs = compile_site(inp.site)
    hr = headroom(cs, inp)
    facts = session_facts(cs, inp.sessions)
    if inp.policy.name in (PolicyName.STATIC, PolicyName.UNCONTROLLED):
        return _baselines.baseline(cs, inp, hr, facts.sessions)
    grid = make_grid(cs, inp, facts)
    cars = Cars(lo=grid.lo, hi=grid.hi, volt=grid.volt, facts=facts)
    cand = np.flatnonzero(grid.candidate)
    order = keep_order(inp, cars, cs, cand)
    cols = active_columns(hr.available)
    avail = hr.available[:, cols]
    if inp.policy.name is PolicyName.PLANNED:
        floor = _planned_floor(
            inp=inp, cs=cs, grid=grid, cars=cars, avail=avail, order=order, cols=cols
        )
    else:
        floor = _floor.decide(cs, grid, avail, order, cols)
    if inp.policy.name is PolicyName.PLANNED and inp.policy.planned_ceiling_w is not None:
        hr = _hold_plan_peak(
            inp=inp,
            cs=cs,
            hr=hr,
            avail=avail,
            cols=cols,
            grid=grid,
            cars=cars,
            floor=floor,
            order=order,
        )
        cols = active_columns(hr.available)
        avail = hr.available[:, cols]
    hi = grid.hi_for(floor.one_phase)
    pcoef = site_pair_coefficients(cs, floor.one_phase, cols)
    grid = replace(grid, hi=hi)
    x = np.where(floor.running, hi, 0.0)
    v = v_hi = node_sums(cs, pcoef, x)
    loud = can_bind(v_hi, avail, cols)
    if violations(v_hi, avail).any():
        # Not everyone fits at their maximum: share (most cycles of a site with spare
        # capacity skip this; the maxima are on each charger's grid already).
        cars = Cars(lo=grid.lo, hi=hi, volt=grid.volt_for(floor.one_phase), facts=facts)
        prof = profiles(inp, cars, order)
        x, _, _ = fill(
            cs, pcoef, avail, np.zeros(len(cs.charger_ids)), floor.running, prof=prof, cols=cols
        )
        level = facts.weight if inp.policy.name is PolicyName.EQUAL else None
        x, v = _round_and_top_up(
            cs=cs,
            grid=grid,
            pcoef=pcoef,
            avail=avail,
            x=x,
            floor=floor,
            order=order,
            level=level,
            cols=cols,
            loud=loud,
        )
    return _reasons.explain(
        avail=avail,
        cols=cols,
        cs=cs,
        inp=inp,
        hr=hr,
        grid=grid,
        floor=floor,
        pcoef=pcoef,
        x=x,
        loud=loud,
        v=v,
    )


def _planned_floor(
    *,
    inp: AllocationInput,
    cs: CompiledSite,
    grid: Grid,
    cars: Cars,
    avail: F64,
    order: I64,
    cols: I64,
) -> _floor.Floor:
    """Who charges under ``planned``: first the cars already charging and those the plan
    wants at least at their minimum now; then, in keep order, the cars the plan wants below
    it (a trickle, or nothing: a car that stays long can wait for the evening), only where
    their minimum fits beside what the first cars' targets take (stage 1 of the policy, as
    far as the limits let it rise).

    Admitting every car that fits at its minimum, as the other policies do, spends on long
    stays the capacity the plan keeps for cars that leave soon: at 50 kVA on Caltech's
    2019-10-07..10, handed the offline optimum's own schedule as targets, the replay delivered
    93.0 % of the optimum that way and 96.5 % this way. The plan only holds a car back from
    starting and never stops one that charges: letting it stop them too reached 98.8 % with
    that perfect schedule, but the live plan changes its mind between re-plans, and on its
    targets it then started and stopped cars 31 times as often, met fewer demands, and
    delivered no more energy."""
    target = planned_targets_a(inp, cars)
    first_in = (target >= grid.lo - 1e-9) | charging_now(cs, inp.rotation)
    first = _floor.decide(cs, grid, avail, order[first_in[order]], cols)
    rest = order[~first_in[order]]
    if len(rest) == 0:
        return first
    # Stage 1 alone (every car's maximum cut to its target) for the cars admitted so far.
    hi = np.clip(target, grid.lo, grid.hi_for(first.one_phase))
    upto = Cars(lo=grid.lo, hi=hi, volt=grid.volt_for(first.one_phase), facts=cars.facts)
    pcoef = site_pair_coefficients(cs, first.one_phase, cols)
    zero = np.zeros(len(cs.charger_ids))
    held, _, _ = fill(
        cs, pcoef, avail, zero, first.running, prof=profiles(inp, upto, order), cols=cols
    )
    out = _floor.decide(cs, grid, avail, rest, cols, after=first, held=held)
    waits = np.zeros(len(cs.charger_ids), dtype=np.bool_)
    waits[rest] = True
    return replace(out, plan_held=waits & ~out.running)


def _hold_plan_peak(
    *,
    inp: AllocationInput,
    cs: CompiledSite,
    hr: Headroom,
    avail: F64,
    cols: I64,
    grid: Grid,
    cars: Cars,
    floor: _floor.Floor,
    order: I64,
) -> Headroom:
    """``hr`` with the site's power limit lowered to the plan's ceiling
    (``Policy.planned_ceiling_w``), but never below what the building and the cars' targets
    take (stage 1 of the policy, as far as the other limits let it rise): the ceiling only
    stops the current the plan did not ask for. Who charges at all is decided before it.
    ``avail``/``cols``: ``hr``'s headroom of its active columns, as the floor saw it."""
    assert inp.policy.planned_ceiling_w is not None
    root = cs.node_index[cs.site.root.id]
    one = floor.one_phase
    pcoef = site_pair_coefficients(cs, one, cols)
    hi = np.clip(planned_targets_a(inp, cars), grid.lo, grid.hi_for(one))
    upto = Cars(lo=grid.lo, hi=hi, volt=grid.volt_for(one), facts=cars.facts)
    zero = np.zeros(len(cs.charger_ids))
    stage1, _, _ = fill(
        cs, pcoef, avail, zero, floor.running, prof=profiles(inp, upto, order), cols=cols
    )
    stage1_w = float(np.dot(np.where(floor.running, stage1, 0.0), upto.volt))
    # The targets' own power, plus a watt of slack so floating-point rounding in the fill
    # cannot stop stage 1 a hair short of where it got alone.
    room_w = max(inp.policy.planned_ceiling_w, hr.other[root, COL_POWER] + stage1_w + 1.0)
    if room_w >= hr.limit[root, COL_POWER]:
        return hr
    limit = hr.limit.copy()
    limit[root, COL_POWER] = room_w
    source = [list(row) for row in hr.cap_source]
    source[root][COL_POWER] = _reasons.PLAN_PEAK_SOURCE
    return replace(hr, limit=limit, cap_source=source)


def _round_and_top_up(
    *,
    cs: CompiledSite,
    grid: Grid,
    pcoef: C128,
    avail: F64,
    x: F64,
    floor: _floor.Floor,
    order: I64,
    level: F64 | None,
    cols: I64,
    loud: B,
) -> tuple[F64, C128]:
    """Round down to each charger's grid, repair rows where phasors cancel (rounding one car
    down can raise a transformer primary row), then give remaining slack out in policy order
    in whole grid steps until no single car can take one more step. Only the rows of the
    ``loud`` nodes can stop a car below its maximum (``can_bind``). Returns the currents and
    the rows' sums for them."""
    running = floor.running
    one, step = floor.one_phase, grid.step_for(floor.one_phase)
    x = np.where(running, grid.down(x, one, step), 0.0)
    exact = not can_cancel(cols)  # rounding down and greedy prefixes cannot overshoot a row
    if not exact:
        x = _repair(cs=cs, grid=grid, pcoef=pcoef, avail=avail, x=x, floor=floor)
    v = node_sums(cs, pcoef, x)
    for rnd in range(_TOPUP_ROUNDS):
        open_ = running & (x < grid.hi - 1e-9)
        slack = slack_only(cs, pcoef, v, avail, open_, nodes=loud)
        reach = np.minimum(x + np.where(open_, slack, 0.0), grid.hi)
        if level is not None and rnd < _TOPUP_ROUNDS // 2:
            # equal: one step per car per round, so remainders spread instead of going to one
            reach = np.minimum(reach, grid.next_up(x, one, step))
        target = grid.down(reach, one, step)
        delta = np.where(open_, target - x, 0.0)
        want = delta > 1e-9
        if not want.any():
            break
        cand = order[want[order]]
        if level is not None:
            # equal: remainders go to the cars that are lowest now (max-min fair to a step)
            cand = cand[np.argsort(x[cand] / level[cand], kind="stable")]
        acc = prefix_accept(cs, pcoef, v, avail, cand, delta=delta, nodes=loud)
        trial = x + np.where(acc, delta, 0.0)
        v_trial = node_sums(cs, pcoef, trial)
        if not exact and (violations(v_trial, avail) & ~violations(v, avail)).any():
            acc = np.zeros_like(acc)
            acc[cand[0]] = True
            trial = x + np.where(acc, delta, 0.0)
            v_trial = node_sums(cs, pcoef, trial)
        if not acc.any():
            break
        x, v = trial, v_trial
    return x, v


def _repair(
    *, cs: CompiledSite, grid: Grid, pcoef: C128, avail: F64, x: F64, floor: _floor.Floor
) -> F64:
    """Step cars down on rows that rounding pushed over (only possible where phasors of
    different cars partly cancel); rows already over before (forced minimums) are left."""
    before = violations(node_sums(cs, pcoef, np.where(floor.forced, grid.lo, 0.0)), avail)
    for _ in range(10 * len(cs.charger_ids) + 10):
        v = node_sums(cs, pcoef, x)
        over = violations(v, avail) & ~before
        if not over.any():
            return x
        j, k = (int(a) for a in np.argwhere(over)[0])
        lo, hi = cs.group_start[j], cs.group_start[j + 1]
        ids = cs.pair_c[lo:hi]
        push = (pcoef[lo:hi, k] * np.conj(v[j, k])).real * (x[ids] > 0) * ~floor.forced[ids]
        if push.max(initial=0.0) <= 0:
            before[j, k] = True
            continue
        i = int(ids[int(np.argmax(push))])
        x[i] = grid.step_down(i, float(x[i]), bool(floor.one_phase[i]))
    return x
