"""Turn the numbers into the answer: every limit with the reason that bound it, every node's
headroom, and the rotation memory for the next call."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ampshare.core._compiled import (
    COL_POWER,
    COL_PRIMARY,
    COL_SUM,
    CompiledSite,
    K,
    freeze,
    node_column_reach,
    site_pair_coefficients,
)
from ampshare.core._floor import Floor
from ampshare.core._grid import MAX_KINDS, Grid
from ampshare.core._headroom import Headroom
from ampshare.core._policies import rotation_memory
from ampshare.core._waterfill import alone_slack, node_sums
from ampshare.core.allocation import (
    Allocation,
    AllocationInput,
    ChargerLimits,
    NodeHeadrooms,
    Reason,
    ReasonKind,
    RotationState,
    SinceByCharger,
)
from ampshare.core.electrical import line_of

__all__ = ["PLAN_PEAK_SOURCE", "explain", "node_headroom", "row_reason"]

# The cap source that marks the site power row lowered to the plan's demand peak
# (``allocate._hold_plan_peak``): its reason is ``plan_peak``, not an outside cap.
PLAN_PEAK_SOURCE = "the plan's demand peak"

F64 = npt.NDArray[np.float64]
C128 = npt.NDArray[np.complex128]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


def row_reason(cs: CompiledSite, hr: Headroom, j: int, k: int, detail: str = "") -> Reason:
    """The reason naming row ``k`` of node ``j``."""
    nid = cs.node_ids[j]
    src = hr.cap_source[j][k]
    if k < COL_PRIMARY:
        if src:
            return Reason(
                kind=ReasonKind.EXTERNAL_CAP,
                node_id=nid,
                line=line_of(k),
                detail=_join(src, detail),
            )
        return Reason(kind=ReasonKind.NODE_LINE, node_id=nid, line=line_of(k), detail=detail)
    if k < COL_POWER:
        return Reason(
            kind=ReasonKind.TRANSFORMER_PRIMARY,
            node_id=nid,
            line=line_of(k - COL_PRIMARY),
            detail=detail,
        )
    if k == COL_POWER:
        if src == PLAN_PEAK_SOURCE:
            return Reason(kind=ReasonKind.PLAN_PEAK, node_id=nid, detail=detail)
        if src:
            return Reason(
                kind=ReasonKind.EXTERNAL_CAP, node_id=nid, detail=_join(f"{src}, power", detail)
            )
        return Reason(kind=ReasonKind.NODE_POWER, node_id=nid, detail=detail)
    assert k == COL_SUM
    return Reason(kind=ReasonKind.NODE_LINE_SUM, node_id=nid, detail=detail)


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a and b else a or b


def node_headroom(
    cs: CompiledSite,
    hr: Headroom,
    v3: C128,
    rest: tuple[I64, F64, C128] | None = None,
) -> NodeHeadrooms:
    """Per node; ``v3`` holds the EV line phasor sums (m, 3). ``rest``: the active columns,
    their availability and EV sums (``cols``, ``avail``, ``v`` as the allocation has them), for
    ``NodeHeadrooms.any_a`` (without it, none is known)."""
    ev = np.abs(v3)
    lim, other = hr.limit[:, :3], hr.other[:, :3]
    return NodeHeadrooms(
        cs.node_ids,
        lim,
        other,
        ev,
        lim - other - ev,
        hr.measured,
        hr.stale,
        any_a=None if rest is None else _any_room(cs, *rest),
    )


def _any_room(cs: CompiledSite, cols: I64, avail: F64, v: C128) -> F64:
    """Per node: how many amperes, summed over the chargers below it, may still be drawn
    beyond their allocated limits before a column other than the node's three lines (a
    transformer primary line, power, the sum of lines) is over. One ampere of a charger adds at
    most ``node_column_reach`` to a column, so ``sum * reach <= left`` keeps every one of them
    (the triangle inequality for phasor columns). inf where no such column limits the node."""
    rest = cols >= 3
    if not rest.any():
        return np.full(len(cs.node_ids), np.inf)
    reach = node_column_reach(cs)[:, cols[rest]]
    left = np.maximum(avail[:, rest] - np.abs(v[:, rest]), 0.0)
    room = np.full(reach.shape, np.inf)
    np.divide(left, reach, out=room, where=reach > 1e-12)
    out: F64 = room.min(axis=1)
    return out


def _phases(cs: CompiledSite, one: B) -> list[int]:
    lines = np.where(one, cs.lines1, cs.lines3)
    out: list[int] = np.where(cs.line_to_line | (lines < 3), 1, 3).tolist()
    return out


def explain(
    *,
    cs: CompiledSite,
    inp: AllocationInput,
    hr: Headroom,
    grid: Grid,
    floor: Floor,
    pcoef: C128,
    x: F64,
    avail: F64,
    cols: I64,
    loud: B,
    v: C128 | None = None,
) -> Allocation:
    """``pcoef`` and ``avail`` carry only the columns ``cols``; only the rows of ``loud``
    nodes can have stopped a car below its maximum (``_waterfill.can_bind``). ``v``: the
    rows' sums for ``x`` (``node_sums(cs, pcoef, x)``) if the caller has them."""
    charging = floor.running & (x > 0)
    paused = grid.candidate & ~charging
    if v is None:
        v = node_sums(cs, pcoef, x)
    keys = _keys(
        cs=cs, grid=grid, floor=floor, pcoef=pcoef, x=x, avail=avail, cols=cols, loud=loud, v=v
    )
    reasons = _reasons(cs, hr, keys)
    xs = x.tolist()
    fixed = {fl.charger_id: fl for fl in inp.fixed_loads}
    for i in np.flatnonzero(grid.fixed | grid.cap_paused).tolist():
        cid = cs.charger_ids[i]
        if cid in fixed:
            reasons[i] = Reason(kind=ReasonKind.FIXED, detail=fixed[cid].reason)
            xs[i] = max(fixed[cid].current_a)
        elif grid.has_session[i]:
            given = inp.cap_reasons.get(cid)
            if given is None:
                detail = f"cap {inp.caps_a[cid]:g} A is below the minimum {float(grid.lo[i]):g} A"
                given = Reason(kind=ReasonKind.CONTROLLER_CAP, detail=detail)
            reasons[i] = given
    powers: list[float | None] | None = None
    if cs.static.is_w.any():
        powers = [None] * len(xs)
        volts = grid.volt_for(floor.one_phase).tolist()
        for i in np.flatnonzero(cs.static.is_w).tolist():
            powers[i] = round(xs[i] * volts[i], 3)
    # columns; the frozen ``ChargerLimit`` values are built when someone reads them
    limits = ChargerLimits(cs.charger_ids, xs, _phases(cs, floor.one_phase), reasons, powers)
    lines = site_pair_coefficients(cs, floor.one_phase, np.arange(3, dtype=np.int64))
    v3 = v if lines is pcoef else node_sums(cs, lines, x)
    return Allocation(
        limits=limits,
        headroom=node_headroom(cs, hr, v3, (cols, avail, v)),
        rotation=_rotation(
            cs, inp, charging, paused | (grid.cap_paused & grid.has_session), grid.fixed
        ),
    )


# Reason categories, in precedence order; FIXED and CAP carry per-charger text and are filled
# in by ``explain`` itself.
_NONE, _FIXED, _CAP, _NO_HEADROOM, _PLAN, _ROTATION, _MAX, _ROW, _SHARE = range(9)


def _keys(
    *,
    cs: CompiledSite,
    grid: Grid,
    floor: Floor,
    pcoef: C128,
    x: F64,
    avail: F64,
    cols: I64,
    loud: B,
    v: C128,
) -> I64:
    """One integer per charger naming its reason: (category, node or kind, column, detail)
    packed, so that equal reasons are found at once (``_reasons``) instead of in a loop; ``v``
    the rows' sums for ``x``."""
    charging = floor.running & (x > 0)
    paused = grid.candidate & ~charging
    at_max = charging & (x >= grid.hi_for(floor.one_phase) - 1e-6)
    # A charging car below its maximum was stopped by a row of a ``loud`` node; a paused car
    # (not among the cars ``loud`` was judged with) may be kept out by any row.
    _, bnode, bcol = alone_slack(cs, pcoef, v, avail, charging & ~at_max, nodes=loud)
    if paused.any():
        _, pnode, pcol = alone_slack(cs, pcoef, v, avail, paused)
        bnode, bcol = np.where(paused, pnode, bnode), np.where(paused, pcol, bcol)
        v_forced = node_sums(cs, pcoef, np.where(floor.forced, grid.lo, 0.0))
        alone, anode, acol = alone_slack(cs, pcoef, v_forced, avail, paused)
    else:  # nobody paused: nothing to explain about a pause
        alone, anode, acol = alone_slack(cs, pcoef, v, avail, paused)
    bcol = np.where(bcol >= 0, cols[np.maximum(bcol, 0)], -1)
    acol = np.where(acol >= 0, cols[np.maximum(acol, 0)], -1)
    no_room = paused & (alone < grid.lo - 1e-9) & (anode >= 0)
    plan = np.zeros_like(paused) if floor.plan_held is None else paused & floor.plan_held
    conds = [
        ~grid.has_session & ~grid.fixed,
        grid.fixed,
        grid.cap_paused,
        no_room,
        plan,
        paused,
        at_max,
        bnode >= 0,
    ]
    # ``np.select`` in precedence order, as a chain of ``where`` from the lowest precedence up
    # (several times cheaper for the few dozen chargers of most sites).
    cat = np.full(len(at_max), _SHARE, dtype=np.int64)
    cats = (_NONE, _FIXED, _CAP, _NO_HEADROOM, _PLAN, _ROTATION, _MAX, _ROW)
    for cond, value in zip(conds[::-1], cats[::-1], strict=True):
        cat = np.where(cond, value, cat)
    node = np.where(
        cat == _NO_HEADROOM, anode, np.where(cat == _MAX, grid.kind_for(floor.one_phase), bnode)
    )
    col = np.where(cat == _NO_HEADROOM, acol, bcol)
    detail = np.where(floor.switched, 1, np.where(floor.forced, 2, 0))
    detail = np.where(cat >= _MAX, detail, 0)
    node = np.where((cat >= _NO_HEADROOM) & (cat != _SHARE), node, -1)
    paused_cat = (cat == _NO_HEADROOM) | (cat == _PLAN) | (cat == _ROTATION)
    col = np.where(paused_cat | (cat == _ROW), col, -1)
    m = _base(cs)
    return np.asarray(
        (((cat * (m + 1) + node + 1) * (K + 1) + col + 1) * 3) + detail, dtype=np.int64
    )


def _base(cs: CompiledSite) -> int:
    """Radix of the node field of a key: node ids + 1 (-1 is "none") and ``MAX_KINDS`` indices."""
    return max(len(cs.node_ids), len(MAX_KINDS)) + 1


def _reasons(
    cs: CompiledSite, hr: Headroom, keys: I64, table_max: int = 1 << 20
) -> list[Reason]:
    """A reason per charger; chargers with equal keys share one (frozen) ``Reason``. The
    reasons are kept per site as an object array indexed by key where the site has at most
    ``table_max`` keys (243 per node: categories x columns x details), else in a dict."""
    m = _base(cs)
    known = _known_reasons(cs, hr, m, table_max)
    if len(keys) == 0:
        return []
    if known.have is not None:
        uniq = _present(keys, len(known.have))
        for key in uniq[~known.have[uniq]].tolist():
            known.table[key] = _key_reason(cs, hr, m, key)
            known.have[key] = True
        # an object array hands every charger its shared reason without a Python loop
        out: list[Reason] = known.table[keys].tolist()
        return out
    made = known.made
    uniq, inverse = np.unique(keys, return_inverse=True)
    table = np.empty(len(uniq), dtype=object)
    table[:] = [
        made[k] if k in made else made.setdefault(k, _key_reason(cs, hr, m, k))
        for k in uniq.tolist()
    ]
    shared: list[Reason] = table[inverse.ravel()].tolist()
    return shared


def _key_reason(cs: CompiledSite, hr: Headroom, m: int, key: int) -> Reason:
    """The reason a packed key (``_keys``) stands for."""
    rest, detail = divmod(key, 3)
    rest, col = divmod(rest, K + 1)
    cat, node = divmod(rest, m + 1)
    return _make(cs, hr, cat=cat, node=node - 1, col=col - 1, detail=_DETAILS[detail])


def _present(keys: I64, top: int) -> I64:
    """The distinct ``keys`` (all below ``top``), ascending, by a presence table."""
    present = np.zeros(top, dtype=np.bool_)
    present[keys] = True
    return np.flatnonzero(present)


class _Known:
    """The reasons made for one site so far, by key: an object array indexed by key
    (``table``, ``have`` marks the keys made) where the site's keys are few enough, else a
    dict (``made``; ``have`` is None)."""

    __slots__ = ("have", "made", "table")

    def __init__(self, top: int, small: bool) -> None:
        self.made: dict[int, Reason] = {}
        self.table = np.empty(top if small else 0, dtype=object)
        self.have: B | None = np.zeros(top, dtype=np.bool_) if small else None


def _known_reasons(cs: CompiledSite, hr: Headroom, m: int, table_max: int) -> _Known:
    """The reasons made for this site so far: a key's reason depends only on the site and on
    which external caps set which rows (``cap_source``), so they are kept until the caps
    change (a site has at most a few thousand keys in use; building them took ~0.5 ms a
    call at 10,000 chargers)."""
    top = ((_SHARE + 1) * (m + 1) * (K + 1)) * 3  # above every key (see ``_keys``)
    small = top <= table_max
    hit = cs.last.get("reasons")
    if hit is not None and hit[0] == (hr.cap_source, small):
        known: _Known = hit[1]
        return known
    known = _Known(top, small)
    cs.last["reasons"] = (([list(row) for row in hr.cap_source], small), known)
    return known


_DETAILS = (
    "",
    "1 phase: 3 phases at the minimum did not fit",
    "cannot be paused (zero_pauses is false): counted at least at its minimum",
)


def _make(cs: CompiledSite, hr: Headroom, *, cat: int, node: int, col: int, detail: str) -> Reason:
    """Build the reason a key stands for (many chargers share one)."""
    if cat == _NONE:
        return Reason(kind=ReasonKind.NO_SESSION)
    if cat in (_FIXED, _CAP):  # a stand-in: ``explain`` replaces it with the charger's own
        return Reason(kind=ReasonKind.FIXED if cat == _FIXED else ReasonKind.CONTROLLER_CAP)
    if cat == _NO_HEADROOM:
        return _paused(cs, hr, ReasonKind.PAUSED_NO_HEADROOM, node, col)
    if cat == _PLAN:
        return _paused(cs, hr, ReasonKind.PAUSED_PLAN, node, col)
    if cat == _ROTATION:
        return _paused(cs, hr, ReasonKind.PAUSED_ROTATION, node, col)
    if cat == _MAX:
        return Reason(kind=MAX_KINDS[node], detail=detail)
    if cat == _ROW:
        return row_reason(cs, hr, node, col, detail)
    return Reason(kind=ReasonKind.POLICY_SHARE, detail=detail)


def _paused(cs: CompiledSite, hr: Headroom, kind: ReasonKind, j: int, k: int) -> Reason:
    if j < 0:
        return Reason(kind=kind)
    base = row_reason(cs, hr, j, k)
    return Reason(
        kind=kind,
        node_id=base.node_id,
        line=base.line,
        detail=f"{base.kind.value.replace('_', ' ')} full",
    )


def _rotation(
    cs: CompiledSite, inp: AllocationInput, charging: B, paused: B, fixed: B
) -> RotationState:
    """A car keeps its pause start while paused and its charging start while charging; the
    clock of a newly paused car starts now (``RotationState``: when the allocator paused it).

    ``paused`` includes cars a controller cap holds below their minimum (the controller's
    minimum pause after the allocator paused them): their pause clock keeps running. Were
    they forgotten, a car would come back from its minimum pause keyed by its arrival, as if
    it had waited a whole rotation interval, and push the next car out at once: cars paused
    and resumed every ``min_pause_s`` instead of every ``rotation_interval_s``. A ``fixed``
    charger (offline, non-compliant) is not decided this cycle: its memory is kept as it was.
    """
    prev, now = inp.rotation, inp.now_s
    if not prev.paused_since_s and not paused.any() and _same_charging(cs, prev, charging):
        # nobody paused before or now, the same cars charging: the memory is unchanged (a
        # busy site's usual cycle; a fixed charger is never in ``charging``, so its memory,
        # were it charging before, would make the masks differ)
        return prev
    was_charging, was_paused = rotation_memory(cs, prev)  # NaN: not in the memory
    known_paused = ~np.isnan(was_paused)
    pz = np.where(paused, np.where(known_paused, was_paused, now), np.nan)
    keep = charging & ~np.isnan(was_charging) & ~known_paused
    ch = np.where(charging, np.where(keep, was_charging, now), np.nan)
    held = fixed & known_paused
    pz = np.where(held, was_paused, pz)
    held = fixed & ~np.isnan(was_charging)
    ch = np.where(held, was_charging, ch)
    freeze(pz, ch)
    ids = cs.charger_ids
    return RotationState(
        paused_since_s=SinceByCharger(ids, pz), charging_since_s=SinceByCharger(ids, ch)
    )

def _same_charging(cs: CompiledSite, rot: RotationState, charging: B) -> bool:
    """Whether exactly the cars ``charging`` are the ones ``rot`` remembers as charging (the
    memory as arrays is kept per state object, ``rotation_memory``; an id the site does not
    have makes them differ)."""
    since, _ = rotation_memory(cs, rot)
    known = ~np.isnan(since)
    return bool(np.array_equal(known, charging)) and int(known.sum()) == len(rot.charging_since_s)
