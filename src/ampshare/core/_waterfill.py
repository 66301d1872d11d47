"""Vectorised progressive filling over the compiled site (see ``_compiled``).

Every controlled charger follows a *profile*: ``x_i(t) = base_i + sum_g clip(slope_g (t -
start_g), 0, len_g)``, a nondecreasing piecewise-linear function of one shared level ``t``.
Policies differ only in their profiles (equal: everyone ``max(min, w t)``; priority: tiers
offset along ``t``; …). Between two profile breakpoints every column sum is linear in ``t``,
``S(t) = V + sigma (t - t_e)``, so the first ``t`` at which ``|S(t)|`` reaches the column's
limit is the root of a quadratic — exact for phasor sums, no bisection. All (node, column)
rows are solved at once with numpy; the earliest crossings in disjoint subtrees are accepted
together, the chargers loading them freeze, and the rest keep rising.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ampshare.core._compiled import (
    COL_PRIMARY,
    EPS_COEF,
    CompiledSite,
    PairClasses,
    pair_classes,
    summing_matrix,
)
from ampshare.core._rows import row_any, row_argmin, row_min, row_sum

__all__ = [
    "Profiles",
    "alone_slack",
    "can_bind",
    "fill",
    "node_sums",
    "prefix_accept",
    "slack_only",
    "violations",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
C128 = npt.NDArray[np.complex128]
B = npt.NDArray[np.bool_]

BIG_LIMIT = 1e12  # stands in for an infinite limit (keeps the quadratics finite)
TOL_A = 1e-6  # feasibility tolerance in amperes (float noise only)
EPS_SLOPE = 1e-9  # below this a cumulative slope is float residue of cancelled events


@dataclass(frozen=True, slots=True, kw_only=True)
class Profiles:
    """Per charger (n,) ``base`` and per segment (n, G) ``start``, ``slope``, ``length``."""

    base: F64
    start: F64
    slope: F64
    length: F64

    def at(self, t: float, idx: I64) -> F64:
        """``x_i(t)`` for the chargers ``idx``."""
        s, sl, ln = self.start[idx], self.slope[idx], self.length[idx]
        rise = np.clip(sl * (t - s), 0.0, ln)
        return np.asarray(self.base[idx] + row_sum(rise), dtype=np.float64)

    def at_levels(self, t: F64, idx: I64) -> F64:
        """``x_i(t_i)`` for the chargers ``idx``, each at its own level ``t``."""
        s, sl, ln = self.start[idx], self.slope[idx], self.length[idx]
        rise = np.clip(sl * (t[:, None] - s), 0.0, ln)
        return np.asarray(self.base[idx] + row_sum(rise), dtype=np.float64)

    def end(self) -> F64:
        return np.asarray(self.base + row_sum(self.length), dtype=np.float64)


def node_sums(cs: CompiledSite, pcoef: C128, x: F64) -> C128:
    """Column sums at every node for charger currents ``x`` (m, K)."""
    mat = summing_matrix(cs, pcoef)
    if mat is not None:
        return np.asarray(mat @ x, dtype=np.complex128).reshape(len(cs.node_ids), pcoef.shape[1])
    acc = _cum(pcoef * x[cs.pair_c][:, None])
    return np.asarray(acc[cs.group_start[1:]] - acc[cs.group_start[:-1]], dtype=np.complex128)


def _cum(vals: C128) -> C128:
    """Running sums with a leading zero row: row ``r`` holds the sum of ``vals[:r]``."""
    acc = np.zeros((vals.shape[0] + 1, vals.shape[1]), dtype=np.complex128)
    np.cumsum(vals, axis=0, out=acc[1:])
    return acc


def violations(v: C128, limit: F64) -> B:
    """Rows (m, K) over their limit."""
    return np.asarray(np.abs(v) > limit + TOL_A, dtype=np.bool_)


def _max_step(vv: C128, c: C128, lim: F64) -> F64:
    """Largest d >= 0 with |vv + c d| <= lim, elementwise (inf where c is 0)."""
    lim = np.where(np.isfinite(lim), lim, BIG_LIMIT)
    cr, ci, vr, vi = c.real, c.imag, vv.real, vv.imag
    a = cr * cr + ci * ci
    b = vr * cr + vi * ci
    cc = vr * vr + vi * vi - lim * lim
    safe_a = np.where(a > EPS_COEF, a, 1.0)
    disc = np.maximum(b * b - a * cc, 0.0)
    root = (-b + np.sqrt(disc)) / safe_a
    # Already over, or a negative limit (other load alone exceeds it: no current fits, however
    # small |vv + c d| gets — the quadratic alone would read -L as +L).
    root = np.where((cc > 0) | (lim < 0), 0.0, np.maximum(root, 0.0))
    return np.asarray(np.where(a > EPS_COEF, root, np.inf), dtype=np.float64)


def alone_slack(
    cs: CompiledSite, pcoef: C128, v: C128, limit: F64, idx: B, *, nodes: B | None = None
) -> tuple[F64, I64, I64]:
    """For chargers in ``idx``: how far each alone could rise with everything else fixed, and
    the (node, column) that stops it (-1 where nothing does; on a tie the node nearest the
    root, then the lowest column). Shapes (n,). ``nodes``: only these nodes' rows."""
    n = len(cs.charger_ids)
    if not idx.any():
        return np.full(n, np.inf), np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
    cl = pair_classes(cs, pcoef)
    if cl is not None and cs.pair_rows.shape[1]:
        return _alone_by_class(cl, v, limit, idx, nodes)
    node = np.full(n, -1, dtype=np.int64)
    column = np.full(n, -1, dtype=np.int64)
    sel = idx[cs.pair_c] if nodes is None else idx[cs.pair_c] & nodes[cs.pair_n]
    if n == 0 or not sel.any():
        return np.full(n, np.inf), node, column
    pn = cs.pair_n[sel]
    steps = _max_step(v[pn], pcoef[sel], limit[pn])
    col = row_argmin(steps)
    best = np.full(len(sel), np.inf)
    best[sel] = steps[np.arange(len(pn)), col]
    best_col = np.zeros(len(sel), dtype=np.int64)
    best_col[sel] = col
    byc = best[cs.by_charger]
    slack = np.minimum.reduceat(byc, cs.charger_start[:-1])
    owner = cs.pair_c[cs.by_charger]
    hit = np.flatnonzero((byc == slack[owner]) & np.isfinite(byc))
    who = owner[hit]
    first = np.ones(len(hit), dtype=np.bool_)
    first[1:] = who[1:] != who[:-1]
    pair = cs.by_charger[hit[first]]
    node[who[first]] = cs.pair_n[pair]
    column[who[first]] = best_col[pair]
    return np.asarray(slack, dtype=np.float64), node, column


def slack_only(
    cs: CompiledSite, pcoef: C128, v: C128, limit: F64, idx: B, *, nodes: B | None = None
) -> F64:
    """``alone_slack``'s first answer alone (no search for the row that binds): the top-up
    and the floor ask only how far each car could rise. ``nodes``: only these nodes' rows
    (``can_bind``: the others cannot stop a car below its maximum)."""
    n = len(cs.charger_ids)
    if not idx.any():
        return np.full(n, np.inf)
    cl = pair_classes(cs, pcoef)
    if cl is not None and cs.pair_rows.shape[1]:
        steps = row_min(_class_steps(cl, v, limit, nodes))
        per = _gather_min(np.append(steps, np.inf), cl.rows)
        return np.asarray(np.where(idx, per, np.inf), dtype=np.float64)
    sel = idx[cs.pair_c] if nodes is None else idx[cs.pair_c] & nodes[cs.pair_n]
    if n == 0 or not sel.any():
        return np.full(n, np.inf)
    pn = cs.pair_n[sel]
    best = np.full(len(sel), np.inf)
    best[sel] = row_min(_max_step(v[pn], pcoef[sel], limit[pn]))
    return np.asarray(np.minimum.reduceat(best[cs.by_charger], cs.charger_start[:-1]))


def _gather_min(values: F64, rows: I64) -> F64:
    """``values[rows].min(axis=1)`` one column of ``rows`` at a time (see ``_rows``)."""
    out = values[rows[:, 0]]
    for d in range(1, rows.shape[1]):
        np.minimum(out, values[rows[:, d]], out=out)
    return out


def _class_steps(cl: PairClasses, v: C128, limit: F64, nodes: B | None) -> F64:
    """``_max_step`` per pair class and column (q, c); inf for classes of nodes not in
    ``nodes``. A pair's steps are its class's: the same numbers the pair would give."""
    # ``_max_step`` with the class constants precomputed and the per-node terms worked out
    # per node before the gather (the same operations in the same order: equal results)
    lim = np.where(np.isfinite(limit), limit, BIG_LIMIT)
    vr, vi = v.real, v.imag
    cc = vr * vr + vi * vi - lim * lim
    dead = (cc > 0) | (lim < 0)
    node = cl.node
    b = vr[node] * cl.re + vi[node] * cl.im
    disc = np.maximum(b * b - cl.a * cc[node], 0.0)
    root = (-b + np.sqrt(disc)) / cl.a
    steps = np.where(dead[node], 0.0, np.maximum(root, 0.0))
    steps[cl.zero] = np.inf
    if nodes is not None:
        steps[~nodes[node]] = np.inf
    return np.asarray(steps, dtype=np.float64)


def _alone_by_class(
    cl: PairClasses, v: C128, limit: F64, idx: B, nodes: B | None
) -> tuple[F64, I64, I64]:
    """``alone_slack`` through the pair classes: per class the step and the column that
    stops it (the lowest on a tie), then per charger the first of its pairs (nearest the
    root) with the smallest step."""
    steps = _class_steps(cl, v, limit, nodes)
    q = len(cl.node)
    col = row_argmin(steps)
    step = np.append(steps[np.arange(q), col], np.inf)
    per = step[cl.rows]  # (n, D)
    first = row_argmin(per)
    n = len(first)
    slack = per[np.arange(n), first]
    cls = cl.rows[np.arange(n), first]
    bound = idx & np.isfinite(slack)
    node = np.where(bound, np.append(cl.node, -1)[cls], -1)
    column = np.where(bound, np.append(col, -1)[cls], -1)
    return (
        np.asarray(np.where(idx, slack, np.inf), dtype=np.float64),
        np.asarray(node, dtype=np.int64),
        np.asarray(column, dtype=np.int64),
    )


def prefix_accept(
    cs: CompiledSite,
    pcoef: C128,
    v: C128,
    limit: F64,
    order: I64,
    *,
    delta: F64,
    nodes: B | None = None,
) -> B:
    """Which chargers of ``order`` (best first) can add ``delta`` each, taken greedily in that
    order per node: a charger is accepted when every prefix up to it fits at every node above
    it. Exact for rows whose load only grows with each charger; rows where phasors can cancel
    (transformer primaries) are re-checked by the caller. ``nodes``: only these nodes are
    checked (``can_bind``, for steps that end at or below every car's maximum)."""
    n = len(cs.charger_ids)
    pos = np.full(n, -1, dtype=np.int64)
    pos[order] = np.arange(len(order))
    at = _pairs_by_node_then_position(cs, order, nodes)
    pc, pn = cs.pair_c[at], cs.pair_n[at]
    inc = pcoef[at] * delta[pc][:, None]
    acc = _cum(inc)
    starts = np.searchsorted(pn, np.arange(len(cs.node_ids) + 1))
    prefix = acc[1:] - acc[starts[pn]] + v[pn]
    bad = row_any(np.abs(prefix) > limit[pn] + TOL_A)
    cut = np.full(len(cs.node_ids), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(cut, pn[bad], pos[pc][bad])
    blocked = np.zeros(n, dtype=np.int64)
    np.add.at(blocked, pc, (pos[pc] >= cut[pn]).astype(np.int64))
    out = np.zeros(n, dtype=np.bool_)
    out[order] = blocked[order] == 0
    return out


def _pairs_by_node_then_position(cs: CompiledSite, order: I64, nodes: B | None) -> I64:
    """The pairs of the chargers ``order`` (at the ``nodes`` only), sorted by node, then by
    the charger's position in ``order``: the pairs in charger order (``pair_rows``), then a
    stable sort by node, a radix sort for 16-bit node numbers."""
    flat = cs.pair_rows[order].ravel()
    at = flat[flat < len(cs.pair_c)]  # one past the last pair pads the rows
    if nodes is not None:
        at = at[nodes[cs.pair_n[at]]]
    pn = cs.pair_n[at]
    small = len(cs.node_ids) < np.iinfo(np.int16).max
    return np.asarray(
        at[np.argsort(pn.astype(np.int16) if small else pn, kind="stable")], dtype=np.int64
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Breaks:
    """Every (charger, ancestor) slope change, sorted by node and level: what the merged
    segments are rebuilt from when chargers freeze."""

    node: I64
    t: F64
    charger: I64
    d: C128


@dataclass(frozen=True, slots=True, kw_only=True)
class _Events:
    """Segments per node: one event per distinct (node, level), ``d`` the summed slope change
    there, ``dt`` the length of the segment it opens."""

    node: I64
    t: F64
    dt: F64
    d: C128
    start: I64


def _events(cs: CompiledSite, pcoef: C128, active: B, prof: Profiles, nodes_on: B) -> _Breaks:
    at = np.flatnonzero(active[cs.pair_c] & nodes_on[cs.pair_n])
    pc, pn = cs.pair_c[at], cs.pair_n[at]
    nodes, times, pairs, weights = [], [], [], []
    for g in range(prof.start.shape[1]):
        s, sl, ln = prof.start[pc, g], prof.slope[pc, g], prof.length[pc, g]
        ok = (ln > 0) & (sl > 0)
        end = s + np.where(ok, ln / np.where(ok, sl, 1.0), 0.0)
        for tt, sign in ((s, 1.0), (end, -1.0)):
            nodes.append(pn[ok])
            times.append(tt[ok])
            pairs.append(at[ok])
            weights.append(sign * sl[ok])
    node = np.concatenate(nodes)
    t = np.concatenate(times)
    order = _by_node_then_level(node, t)
    pair = np.concatenate(pairs)[order]
    # the slope changes as phasors only once sorted: one gather of the coefficients
    return _Breaks(
        node=node[order],
        t=t[order],
        charger=cs.pair_c[pair],
        d=np.concatenate(weights)[order][:, None] * pcoef[pair],
    )


def _by_node_then_level(node: I64, t: F64) -> I64:
    """Indices that sort by node, then by level ``t`` (np.lexsort((t, node)) but for the order
    among exact ties, which ``_merged`` adds up anyway): the levels by quicksort, then the
    nodes by a stable sort, a radix sort for 16-bit keys (~5x faster than lexsort)."""
    if len(node) == 0 or node.max(initial=0) >= np.iinfo(np.int16).max:
        return np.asarray(np.lexsort((t, node)), dtype=np.int64)
    by_t = np.argsort(t)
    return np.asarray(by_t[np.argsort(node[by_t].astype(np.int16), kind="stable")], dtype=np.int64)


def _merged(m: int, br: _Breaks) -> _Events:
    """Breakpoints at the same node and level add up into one segment boundary. Policies
    whose cars share breakpoints (equal: everyone starts at min/w and stops at max/w) then
    leave a handful of segments per node instead of one per car."""
    node, t, d = br.node, br.t, br.d
    if len(t):
        new = np.ones(len(t), dtype=np.bool_)
        new[1:] = (node[1:] != node[:-1]) | (t[1:] != t[:-1])
        first = np.flatnonzero(new)
        node, t, d = node[first], t[first], np.add.reduceat(d, first, axis=0)
    return _segments(m, node, t, d)


def _segments(m: int, node: I64, t: F64, d: C128) -> _Events:
    """Events sorted by node, then level, one per (node, level), as segments."""
    start = np.searchsorted(node, np.arange(m + 1)).astype(np.int64)
    dt = np.full(len(t), np.inf)
    same = node[1:] == node[:-1]
    dt[:-1] = np.where(same, t[1:] - t[:-1], np.inf)
    return _Events(node=node, t=t, dt=dt, d=np.asarray(d, dtype=np.complex128), start=start)


class _ClassBreaks:
    """The breakpoints as a dense (pair class, level) table: with ``equal`` (and any policy
    whose cars share levels) 10,000 chargers have a handful of distinct levels, so the
    30,000 (charger, ancestor) breakpoints fall into a few thousand cells. The table holds
    each cell's summed slope change and its number of breakpoints; when chargers freeze,
    only their own breakpoints are taken out (stored by charger, ``offsets``), instead of
    sorting and filtering every breakpoint each round. A breakpoint counts at each ancestor
    whose node may bind (``on``): cell = class of (charger, ancestor) * levels + level.
    Local to one ``fill``."""

    __slots__ = (
        "by_node",
        "charger",
        "coef",
        "count",
        "done",
        "first",
        "level",
        "levels",
        "m",
        "nodes",
        "offsets",
        "on",
        "rows",
        "table",
        "w",
    )

    def __init__(
        self,
        *,
        cl: PairClasses,
        on: B,
        levels: F64,
        charger: I64,
        level: I64,
        w: F64,
        offsets: I64,
        m: int,
    ) -> None:
        self.levels, self.offsets, self.m = levels, offsets, m
        # per ancestor column, contiguous (a cycle gathers from them by charger); a column
        # whose nodes may not bind anywhere is left out, one where all may is not filtered
        self.rows, self.on = [], []
        for d in range(cl.rows.shape[1]):
            use = on[:, d]
            if use.any():
                self.rows.append(np.ascontiguousarray(cl.rows[:, d]))
                self.on.append(None if use.all() else np.ascontiguousarray(use))
        self.coef = cl.coef
        self.charger, self.level, self.w = charger, level, w
        self.first = cl.node_start
        self.nodes = cl.node[cl.node_start]
        # adds a node's classes up in one sparse product (faster than reduceat over the
        # 3-d table)
        self.by_node = cl.by_node
        size = len(cl.node) * len(levels)
        self.table = np.zeros(size)
        self.count = np.zeros(size, dtype=np.int64)
        self._add(charger, level, w, 1)
        self.done = np.zeros(len(offsets) - 1, dtype=np.bool_)

    def _add(self, c: I64, lv: I64, w: F64, sign: int) -> None:
        """Add (sign 1) or take out (-1) breakpoints (charger, level index, slope change) at
        every ancestor whose node may bind."""
        size, nt = len(self.table), len(self.levels)
        for rows, on in zip(self.rows, self.on, strict=True):
            if on is None:
                cell, ws = rows[c] * nt + lv, w
            else:
                use = on[c]
                cell, ws = rows[c[use]] * nt + lv[use], w[use]
            self.table += sign * np.bincount(cell, weights=ws, minlength=size)
            self.count += sign * np.bincount(cell, minlength=size)

    def merged(self, frozen: B) -> _Events:
        """``_merged`` of the breakpoints of the chargers not ``frozen``."""
        new = np.flatnonzero(frozen & ~self.done)
        if len(new):
            self.done[new] = True
            at = _ranges(self.offsets[new], self.offsets[new + 1])
            self._add(self.charger[at], self.level[at], self.w[at], -1)
            self.table[self.count == 0] = 0.0  # no residue of float cancellation
        nt = len(self.levels)
        table = self.table.reshape(-1, nt)
        q, k = self.coef.shape
        per_class = (table[:, :, None] * self.coef[:, None, :]).reshape(q, nt * k)
        d = (self.by_node @ per_class).reshape(-1, nt, k)  # (nodes with classes, levels, k)
        seen = np.add.reduceat(self.count.reshape(-1, nt), self.first, axis=0) > 0
        j, lv = np.nonzero(seen)  # row-major: by node, then level
        return _segments(self.m, self.nodes[j], self.levels[lv], d[j, lv])


def _ranges(lo: I64, hi: I64) -> I64:
    """The concatenated index ranges [lo_i, hi_i)."""
    lens = hi - lo
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lens)
    shift = np.repeat(lo - (ends - lens), lens)
    return np.asarray(np.arange(total, dtype=np.int64) + shift, dtype=np.int64)


def _class_breaks(
    cs: CompiledSite,
    pcoef: C128,
    prof: Profiles,
    nodes_on: B,
    active: B,
    *,
    min_pairs: int = 1000,
) -> _ClassBreaks | None:
    """``_ClassBreaks`` of the ``active`` chargers when the pair classes are known, the site
    has at least ``min_pairs`` (charger, ancestor) pairs (below that, sorting the few
    breakpoints costs less than building the table) and the table stays small (few
    distinct levels); None otherwise (``_events`` then sorts every breakpoint)."""
    cl = pair_classes(cs, pcoef)
    if cl is None or cs.pair_rows.shape[1] == 0 or len(cs.pair_c) < min_pairs:
        return None
    q, n = len(cl.node), len(cs.charger_ids)
    s, sl, ln = prof.start, prof.slope, prof.length
    ok = (ln > 0) & (sl > 0) & active[:, None]
    charger, g = np.nonzero(ok)  # by charger
    if len(charger) == 0:
        return None
    start, slope = s[charger, g], sl[charger, g]
    end = start + ln[charger, g] / slope
    # each segment's start, then its end: a charger's breakpoints stay together
    t = np.stack([start, end], axis=1).ravel()
    levels = np.unique(t)
    if q * len(levels) > 4 * len(cs.pair_c) + 4096:
        return None
    level = np.searchsorted(levels, t)  # (``unique``'s inverse costs a second sort)
    # (n, D): the ancestors whose node may bind (the padding class q never does)
    on = np.append(nodes_on[cl.node], False)[cl.rows]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(2 * np.bincount(charger, minlength=n), out=offsets[1:])
    charger = np.repeat(charger, 2)
    return _ClassBreaks(
        cl=cl,
        on=on,
        levels=levels,
        charger=charger,
        level=level.astype(np.int64),
        w=np.stack([slope, -slope], axis=1).ravel(),
        offsets=offsets,
        m=len(cs.node_ids),
    )


def _drop_frozen(br: _Breaks, frozen: B) -> _Breaks:
    """Forget the breakpoints of frozen chargers: their slope changes are gone for good, so the
    segments around them merge; every later round works on fewer events."""
    keep = ~frozen[br.charger]
    return _Breaks(node=br.node[keep], t=br.t[keep], charger=br.charger[keep], d=br.d[keep])


def _crossings(ev: _Events, v0: C128, limit: F64) -> F64:
    """Earliest level t at which each row (m, K) reaches its limit (inf: never)."""
    m = len(ev.start) - 1
    acc = _cum(ev.d)
    first = ev.start[ev.node]
    sigma = acc[1:] - acc[first]
    inc = sigma * np.where(np.isfinite(ev.dt), ev.dt, 0.0)[:, None]
    acc2 = _cum(inc)
    value = v0[ev.node] + acc2[:-1] - acc2[first]
    tau = _max_step(value, sigma, limit[ev.node])
    moving = np.abs(sigma) > EPS_SLOPE
    hit = moving & (tau <= ev.dt[:, None])
    tc = np.where(hit, ev.t[:, None] + tau, np.inf)
    out = np.full((m, v0.shape[1]), np.inf)
    nonempty = np.flatnonzero(ev.start[1:] > ev.start[:-1])
    if len(nonempty):
        out[nonempty] = np.minimum.reduceat(tc, ev.start[nonempty], axis=0)
    return out


def _independent_rows(cs: CompiledSite, tc: F64) -> list[tuple[int, int, float]]:
    """The earliest crossings that cannot influence each other (no shared chargers, and no
    earlier crossing above them that might bind first). Per node only its earliest column
    can be picked (on a tie the lowest column; ``cs.ancestors[j]`` starts with ``j``, so a
    later row of a taken node is blocked), so nodes are visited, not rows."""
    col = row_argmin(tc)
    first = tc[np.arange(len(tc)), col]
    nodes = np.flatnonzero(np.isfinite(first))
    if len(nodes) == 0:
        return []
    picked: list[tuple[int, int, float]] = []
    taken: set[int] = set()  # accepted or blocked nodes
    above_taken: set[int] = set()  # ancestors of accepted nodes
    times = first[nodes]
    for r in np.argsort(times, kind="stable").tolist():
        j = int(nodes[r])
        anc = cs.ancestors[j]
        if j in above_taken or not taken.isdisjoint(anc):
            taken.add(j)
            continue
        picked.append((j, int(col[j]), float(times[r])))
        taken.add(j)
        above_taken.update(anc)
    return picked


def can_bind(v_end: C128, lim: F64, cols: I64) -> B:
    """Nodes (m,) with a row that may reach its limit before every charger reaches its end,
    given the rows' sums ``v_end`` with everyone at the end (their maximum).

    Line, power and line-sum rows only grow as any charger rises (every contribution to a line
    lies within 30 degrees of that line's voltage, so no two are more than 60 degrees apart), so
    a row that fits with everyone at the end of their profile never binds: neither in the
    filling nor for a car that rises alone from below its end. Transformer primary rows mix
    lines 120 degrees apart and can dip on the way, so every limited one is always kept."""
    over = np.abs(v_end) > lim - TOL_A
    prim = (cols >= COL_PRIMARY) & (cols < COL_PRIMARY + 3)
    over[:, prim] |= lim[:, prim] < BIG_LIMIT
    return row_any(over)


def _freeze(
    cs: CompiledSite,
    pcoef: C128,
    picked: list[tuple[int, int, float]],
    prof: Profiles,
    *,
    x: F64,
    frozen: B,
    bind: tuple[I64, I64],
) -> None:
    """Freeze the chargers loading each picked row at their value at its crossing level (in
    place). Picked rows share no chargers, so all are evaluated in one batch."""
    m = len(cs.node_ids)
    rows = np.array([(j, k) for j, k, _ in picked], dtype=np.int64).reshape(-1, 2)
    levels = np.array([t for _, _, t in picked], dtype=np.float64)
    which = np.full(m, -1, dtype=np.int64)
    which[rows[:, 0]] = np.arange(len(picked))
    ids, pick = _loading(cs, pcoef, which, rows)
    live = ~frozen[ids]
    ids, pick = ids[live], pick[live]
    x[ids] = prof.at_levels(levels[pick], ids)
    frozen[ids] = True
    bind[0][ids], bind[1][ids] = rows[pick, 0], rows[pick, 1]


def _loading(cs: CompiledSite, pcoef: C128, which: I64, rows: I64) -> tuple[I64, I64]:
    """The chargers that load a picked row (``which``: node -> picked row or -1; ``rows``:
    (node, column) per picked row) and the row each loads; picked nodes are independent, so
    a charger loads at most one. Through the pair classes when known (a few hundred
    classes instead of every pair)."""
    cl = pair_classes(cs, pcoef)
    if cl is None or cs.pair_rows.shape[1] == 0:
        pairs = np.flatnonzero(which[cs.pair_n] >= 0)
        pick = which[cs.pair_n[pairs]]
        pairs = pairs[np.abs(pcoef[pairs, rows[pick, 1]]) > EPS_COEF]
        return cs.pair_c[pairs], which[cs.pair_n[pairs]]
    q = len(cl.node)
    at = np.flatnonzero(which[cl.node] >= 0)
    row = which[cl.node[at]]
    at_row = np.full(q + 1, -1, dtype=np.int64)  # the padding class q loads nothing
    loads = np.abs(cl.coef[at, rows[row, 1]]) > EPS_COEF
    at_row[at[loads]] = row[loads]
    # a charger's row of classes lists its ancestors from the root, so a node of depth d
    # (``ancestors`` holds the node and those above it) only appears in column d
    depths = sorted({len(cs.ancestors[j]) - 1 for j in rows[:, 0].tolist()})
    per = at_row[cl.rows[:, depths[0]]]
    for d in depths[1:]:
        np.maximum(per, at_row[cl.rows[:, d]], out=per)
    ids = np.flatnonzero(per >= 0)
    return ids, per[ids]


def fill(
    cs: CompiledSite,
    pcoef: C128,
    limit: F64,
    x_fixed: F64,
    active: B,
    *,
    prof: Profiles,
    cols: I64,
    min_pairs: int = 1000,
) -> tuple[F64, I64, I64]:
    """Raise the ``active`` chargers along their profiles as far as every row allows.

    ``x_fixed`` holds the currents of everything else; ``pcoef`` and ``limit`` carry the
    columns ``cols`` of the full K. Returns the currents and, per charger,
    the (node, column) row that froze it (-1: it reached the end of its profile).
    ``min_pairs``: from how many (charger, ancestor) pairs the breakpoints go through the
    class table (``_class_breaks``; the result is the same either way).
    """
    n = len(cs.charger_ids)
    lim = np.where(np.isfinite(limit), limit, BIG_LIMIT)
    x = np.where(active, prof.base, x_fixed)
    bind_node = np.full(n, -1, dtype=np.int64)
    bind_col = np.full(n, -1, dtype=np.int64)
    if not active.any():
        return x, bind_node, bind_col
    loud = can_bind(node_sums(cs, pcoef, np.where(active, prof.end(), x_fixed)), lim, cols)
    dense = _class_breaks(cs, pcoef, prof, loud, active, min_pairs=min_pairs)
    br = _events(cs, pcoef, active, prof, loud) if dense is None else None
    m = len(cs.node_ids)
    frozen = ~active
    for _ in range(len(cs.node_ids) * pcoef.shape[1] + 1):
        v0 = node_sums(cs, pcoef, x)
        ev = dense.merged(frozen) if dense is not None else _merged(m, br)  # type: ignore[arg-type]
        picked = _independent_rows(cs, _crossings(ev, v0, lim))
        if not picked:
            break
        _freeze(cs, pcoef, picked, prof, x=x, frozen=frozen, bind=(bind_node, bind_col))
        # The frozen values are now constants in v0; the others still sit at their base in x
        # and follow their unchanged profiles from t = 0 in the next round.
        if br is not None:
            br = _drop_frozen(br, frozen)
    rest = np.flatnonzero(~frozen)
    x[rest] = prof.end()[rest]
    return x, bind_node, bind_col
