"""A site compiled into arrays for the allocator: rows, coefficients and the tree as indices.

Every node has ``K = 8`` constraint columns: lines L1..L3, transformer primary lines P1..P3,
total power and the sum of line currents. A charger adds ``c * I`` to each column of each node
above it; ``c`` is complex for the line and primary columns (phasors, see
``ampshare.core.electrical``) and real for power (W per A) and line sum (lines loaded).

Compiling costs a few milliseconds for thousands of chargers, so it is cached per ``Site``
object (sites are immutable; the cache holds the object itself so its id cannot be reused).
What else depends on the site only is memoised on the compiled site too: pair coefficients
per phase choice and columns, and the sparse matrices that turn charger currents into node
sums (``summing_matrix``, ``incidence``) — a cycle then pays for arithmetic, not set-up.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import sparse

from ampshare.core.electrical import (
    charger_voltage_v,
    connection_phasors,
    primary_matrix,
)
from ampshare.core.site import Connection, LimitUnit, Site

__all__ = [
    "COL_POWER",
    "COL_SUM",
    "CompiledSite",
    "K",
    "PairClasses",
    "active_columns",
    "can_cancel",
    "compile_site",
    "freeze",
    "last_read",
    "node_column_reach",
    "pair_classes",
    "pair_coefficients",
    "site_pair_coefficients",
    "summing_matrix",
]

K = 8
COL_PRIMARY = 3
COL_POWER = 6
COL_SUM = 7
EPS_COEF = 1e-12  # a coefficient below this is no coefficient (a charger not on that row)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
C128 = npt.NDArray[np.complex128]
B = npt.NDArray[np.bool_]
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledSite:
    """Index arrays of one site. ``n``: chargers, ``m``: nodes, ``p``: (charger, ancestor)
    pairs sorted by node. ``coef3``/``coef1``: per-ampere line phasors with the charger's own
    connection and in one-phase mode; ``volt3``/``volt1``: W per A; ``lines3``/``lines1``:
    lines loaded."""

    site: Site
    node_ids: tuple[str, ...]
    node_index: dict[str, int]
    parent: I64
    ancestors: tuple[tuple[int, ...], ...]
    charger_ids: tuple[str, ...]
    charger_index: dict[str, int]
    leaf: I64
    coef3: C128
    coef1: C128
    volt3: F64
    volt1: F64
    lines3: F64
    lines1: F64
    pair_c: I64
    pair_n: I64
    group_start: I64
    by_charger: I64
    charger_start: I64
    # Each charger's pairs as one row (n, D), nearest-the-root node first, padded with the
    # index p (one past the last pair) where a charger has fewer than D ancestors.
    pair_rows: I64
    incidence: Any  # scipy CSR (m, n): 1 where the node is the charger's leaf or above it
    unit3: C128  # per charger and line: the direction of a measured current (n, 3)
    prim: C128
    base_limit: F64
    margin: F64
    line_to_line: npt.NDArray[np.bool_]
    static: ChargerStatics
    # Pair coefficients by (phase choice, columns): they depend on the site only, and most
    # cycles ask for the same few (everyone on its own connection; lines only for headroom).
    memo: dict[bytes, C128] = field(default_factory=dict, compare=False, repr=False)
    # The sparse (node, column) x charger matrix of each memoised pair-coefficient array, keyed
    # by the array's id (the entry holds the array, so the id cannot be reused meanwhile).
    sum_memo: dict[int, tuple[C128, Any]] = field(default_factory=dict, compare=False, repr=False)
    # ``pair_classes`` of each memoised pair-coefficient array, keyed like ``sum_memo``.
    class_memo: dict[int, tuple[C128, PairClasses]] = field(
        default_factory=dict, compare=False, repr=False
    )
    # What was read from the last call's inputs, by name: (the input object, what was read).
    # A controller passes the very same sessions / charger-state tuples while they are
    # unchanged (a meter reading alone triggered the cycle), and reading 1,000 frozen objects
    # costs more than the arithmetic that follows (``last_read``).
    last: dict[str, tuple[object, Any]] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerStatics:
    """The chargers' own settings as arrays (n,), so a cycle does not walk the objects."""

    min_a: F64
    max_a: F64
    res_a: F64
    max_power_w: F64
    is_w: npt.NDArray[np.bool_]
    zero_pauses: npt.NDArray[np.bool_]
    can_switch: npt.NDArray[np.bool_]
    three_phase: npt.NDArray[np.bool_]
    # the chargers with a pilot set (k,) and their sets (k, P), NaN-padded: what a cycle
    # snaps onto the sets, as arrays
    pilot_at: I64
    pilot_sets: F64


def _statics(site: Site) -> ChargerStatics:
    cs = site.chargers

    def arr(vals: list[float]) -> F64:
        return np.asarray(vals, dtype=np.float64)

    def flag(vals: list[bool]) -> npt.NDArray[np.bool_]:
        return np.asarray(vals, dtype=np.bool_)

    pilot = [i for i, c in enumerate(cs) if c.allowed_currents_a]
    width = max((len(cs[i].allowed_currents_a) for i in pilot), default=0)
    sets = np.full((len(pilot), width), np.nan)
    for row, i in enumerate(pilot):
        allowed = cs[i].allowed_currents_a
        sets[row, : len(allowed)] = allowed

    return ChargerStatics(
        min_a=arr([c.min_current_a for c in cs]),
        max_a=arr([c.max_current_a for c in cs]),
        res_a=arr([c.resolution_a if c.resolution_a > 0 else 0.1 for c in cs]),
        max_power_w=arr([np.inf if c.max_power_w is None else c.max_power_w for c in cs]),
        is_w=flag([c.limit_unit is LimitUnit.WATT for c in cs]),
        zero_pauses=flag([c.zero_pauses for c in cs]),
        can_switch=flag([c.can_switch_phases for c in cs]),
        three_phase=flag([c.connection is Connection.THREE_PHASE for c in cs]),
        pilot_at=np.asarray(pilot, dtype=np.int64),
        pilot_sets=sets,
    )


def _node_limits(site: Site) -> tuple[F64, F64, C128]:
    m = len(site.nodes)
    lim = np.full((m, K), np.inf)
    margin = np.zeros((m, K))
    prim = np.zeros((m, 3, 3), dtype=np.complex128)
    present = [line.index for line in site.voltage.lines]
    v_ln = site.voltage.line_to_neutral_v
    for j, node in enumerate(site.nodes):
        for k in present:
            lim[j, k] = node.line_limit_a[k]
            margin[j, k] = node.margin_a
        if node.primary is not None:
            prim[j] = primary_matrix(node.primary)
            lim[j, COL_PRIMARY : COL_PRIMARY + 3] = node.primary.line_limit_a
            margin[j, COL_PRIMARY : COL_PRIMARY + 3] = node.margin_a / node.primary.winding_ratio
        if node.max_power_w is not None:
            lim[j, COL_POWER] = node.max_power_w
            margin[j, COL_POWER] = node.margin_a * v_ln * len(present)
        if node.max_line_sum_a is not None:
            lim[j, COL_SUM] = node.max_line_sum_a
            margin[j, COL_SUM] = node.margin_a * len(present)
    return lim, margin, prim


def _compile(site: Site) -> CompiledSite:
    node_ids = tuple(n.id for n in site.nodes)
    node_index = {nid: j for j, nid in enumerate(node_ids)}
    parent = np.array(
        [-1 if n.parent_id is None else node_index[n.parent_id] for n in site.nodes],
        dtype=np.int64,
    )
    ancestors: list[tuple[int, ...]] = []
    for j in range(len(node_ids)):
        p = int(parent[j])
        ancestors.append((j, *ancestors[p]) if p >= 0 else (j,))
    chargers = site.chargers
    n = len(chargers)
    coef3 = np.zeros((n, 3), dtype=np.complex128)
    coef1 = np.zeros((n, 3), dtype=np.complex128)
    volt3, volt1 = np.zeros(n), np.zeros(n)
    for i, c in enumerate(chargers):
        coef3[i] = connection_phasors(site, c)
        coef1[i] = connection_phasors(site, c, 1)
        volt3[i] = charger_voltage_v(site, c)
        volt1[i] = charger_voltage_v(site, c, 1)
    leaf = np.array([node_index[c.node_id] for c in chargers], dtype=np.int64)
    pc = [i for i in range(n) for _ in ancestors[int(leaf[i])]]
    pn = [a for i in range(n) for a in ancestors[int(leaf[i])]]
    order = np.lexsort((np.array(pc, dtype=np.int64), np.array(pn, dtype=np.int64)))
    pair_c = np.array(pc, dtype=np.int64)[order]
    pair_n = np.array(pn, dtype=np.int64)[order]
    group_start = np.searchsorted(pair_n, np.arange(len(node_ids) + 1)).astype(np.int64)
    # The same pairs grouped by charger (nearest-the-root node first within a charger), for
    # per-charger minima with one reduceat instead of a sort every call.
    by_charger = np.lexsort((pair_n, pair_c)).astype(np.int64)
    charger_start = np.searchsorted(pair_c[by_charger], np.arange(n + 1)).astype(np.int64)
    depth = np.diff(charger_start)
    pair_rows = np.full((n, int(depth.max(initial=0))), len(pair_c), dtype=np.int64)
    pair_rows[np.repeat(np.arange(n), depth), _ranks(depth)] = by_charger
    lim, margin, prim = _node_limits(site)
    mag = np.abs(coef3)
    live = mag > 1e-12
    return CompiledSite(
        site=site,
        node_ids=node_ids,
        node_index=node_index,
        parent=parent,
        ancestors=tuple(ancestors),
        charger_ids=tuple(c.id for c in chargers),
        charger_index={c.id: i for i, c in enumerate(chargers)},
        leaf=leaf,
        coef3=coef3,
        coef1=coef1,
        volt3=volt3,
        volt1=volt1,
        lines3=(np.abs(coef3) > 1e-12).sum(axis=1).astype(np.float64),
        lines1=(np.abs(coef1) > 1e-12).sum(axis=1).astype(np.float64),
        pair_c=pair_c,
        pair_n=pair_n,
        group_start=group_start,
        by_charger=by_charger,
        charger_start=charger_start,
        pair_rows=pair_rows,
        incidence=sparse.csr_array(
            (np.ones(len(pair_c)), (pair_n, pair_c)), shape=(len(node_ids), n)
        ),
        unit3=np.where(live, coef3 / np.where(live, mag, 1.0), 1.0),
        prim=prim,
        base_limit=lim,
        margin=margin,
        line_to_line=np.array([c.connection.is_line_to_line for c in chargers], dtype=np.bool_),
        static=_statics(site),
    )


def _ranks(counts: I64) -> I64:
    """0, 1, ..., c - 1 for every count c, concatenated."""
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(int(counts.sum()), dtype=np.int64) - starts


_CACHE: OrderedDict[int, CompiledSite] = OrderedDict()
_CACHE_SIZE = 16


def compile_site(site: Site) -> CompiledSite:
    """The compiled form of ``site`` (cached by object identity; a small LRU)."""
    hit = _CACHE.get(id(site))
    if hit is not None and hit.site is site:
        _CACHE.move_to_end(id(site))
        return hit
    out = _compile(site)
    _CACHE[id(site)] = out
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out


def charger_coefficients(cs: CompiledSite, one_phase: npt.NDArray[np.bool_]) -> C128:
    """Per-charger coefficients over the K columns, before the primary transform (n, K)."""
    n = len(cs.charger_ids)
    out = np.zeros((n, K), dtype=np.complex128)
    out[:, :3] = np.where(one_phase[:, None], cs.coef1, cs.coef3)
    out[:, COL_POWER] = np.where(one_phase, cs.volt1, cs.volt3)
    out[:, COL_SUM] = np.where(one_phase, cs.lines1, cs.lines3)
    return out


def pair_coefficients(cs: CompiledSite, coef: C128, cols: I64 | None = None) -> C128:
    """Coefficients of every (charger, ancestor) pair over the columns ``cols`` (default all
    K): shape (p, len(cols)). Only columns some node limits are worth carrying."""
    cols = np.arange(K, dtype=np.int64) if cols is None else cols
    per_pair = coef[cs.pair_c]
    out = per_pair[:, cols]
    prim = (cols >= COL_PRIMARY) & (cols < COL_PRIMARY + 3)
    if prim.any():
        full = np.einsum("pij,pj->pi", cs.prim[cs.pair_n], per_pair[:, :3])
        out[:, prim] = full[:, cols[prim] - COL_PRIMARY]
    return np.asarray(out, dtype=np.complex128)


_MEMO_SIZE = 4


def site_pair_coefficients(
    cs: CompiledSite, one_phase: npt.NDArray[np.bool_], cols: I64 | None = None
) -> C128:
    """``pair_coefficients`` of ``charger_coefficients(cs, one_phase)``, memoised on ``cs``.
    The array is shared between calls and therefore read-only."""
    cols = np.arange(K, dtype=np.int64) if cols is None else np.asarray(cols, dtype=np.int64)
    key = np.asarray(one_phase, dtype=np.bool_).tobytes() + b"|" + cols.tobytes()
    hit = cs.memo.get(key)
    if hit is not None:
        return hit
    out = pair_coefficients(cs, charger_coefficients(cs, one_phase), cols)
    out.flags.writeable = False
    if len(cs.memo) >= _MEMO_SIZE:
        del cs.memo[next(iter(cs.memo))]
    cs.memo[key] = out
    return out


def node_column_reach(cs: CompiledSite) -> npt.NDArray[np.float64]:
    """(m, K): per node and column, the most that one ampere of any charger below the node can
    add to the column's magnitude, whichever phases its car uses (``|c|`` of the pair
    coefficients, the larger of the one- and three-phase choice; 0 for a node without
    chargers). Depends on the site alone; read-only, computed once per compiled site."""

    def build() -> npt.NDArray[np.float64]:
        n = len(cs.charger_ids)
        one = np.abs(site_pair_coefficients(cs, np.ones(n, dtype=np.bool_)))
        three = np.abs(site_pair_coefficients(cs, np.zeros(n, dtype=np.bool_)))
        per_pair = np.maximum(one, three)
        out = np.zeros((len(cs.node_ids), K))
        starts = cs.group_start[:-1]
        busy = starts < cs.group_start[1:]
        if busy.any():
            out[busy] = np.maximum.reduceat(per_pair, starts[busy], axis=0)
        freeze(out)
        return out

    return last_read(cs, "column_reach", cs, build)


def summing_matrix(cs: CompiledSite, pcoef: C128) -> Any | None:
    """For a memoised (read-only) ``pcoef``: the sparse matrix whose product with the charger
    currents gives every node's column sums, flattened (m * c,). A sparse product is several
    times faster than running sums over the pairs, and the matrix depends only on the site and
    the phase choice. None for any other array (building it would cost more than it saves)."""
    if pcoef.flags.writeable:
        return None
    return _memo_by_array(cs.sum_memo, pcoef, lambda: _summing(cs, pcoef))


def _summing(cs: CompiledSite, pcoef: C128) -> Any:
    c = pcoef.shape[1]
    rows = (cs.pair_n[:, None] * c + np.arange(c)[None, :]).ravel()
    mat = sparse.csr_array(
        (pcoef.ravel(), (rows, np.repeat(cs.pair_c, c))),
        shape=(len(cs.node_ids) * c, len(cs.charger_ids)),
    )
    # a one-phase charger has no coefficient on two of three line columns: without the
    # stored zeros the product does ~40 % less work (same sums: only + 0 terms go)
    mat.eliminate_zeros()
    return mat


def _memo_by_array(memo: dict[int, tuple[C128, T]], key: C128, build: Callable[[], T]) -> T:
    """What ``build()`` makes for the array ``key``, kept in ``memo`` by the array's id (the
    entry holds the array, so the id cannot be reused meanwhile); oldest out past
    ``_MEMO_SIZE``."""
    hit = memo.get(id(key))
    if hit is not None and hit[0] is key:
        return hit[1]
    value = build()
    if len(memo) >= _MEMO_SIZE:
        del memo[next(iter(memo))]
    memo[id(key)] = (key, value)
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class PairClasses:
    """The (charger, ancestor) pairs of one pair-coefficient array grouped into classes of
    equal node and equal coefficients: a site has few kinds of connection, so a node's pairs
    share a handful of coefficient rows, and what depends only on (node, coefficients) — how
    far a charger alone could rise on that node's rows — is worked out once per class (q,)
    instead of once per pair. ``rows`` (n, D): each charger's pair classes as
    ``CompiledSite.pair_rows`` lays out its pairs, padding = q."""

    node: I64
    coef: C128
    rows: I64
    # per class and column, for ``_waterfill._class_steps``: the coefficients' real and
    # imaginary parts, |c|^2 (1 where c is 0) and where c is 0
    re: F64
    im: F64
    a: F64
    zero: B
    # classes are sorted by node: where each node's classes start (m',), and the (m', q)
    # sparse 0/1 matrix that adds a node's classes up (``_waterfill._ClassBreaks``)
    node_start: I64
    by_node: Any


def pair_classes(cs: CompiledSite, pcoef: C128) -> PairClasses | None:
    """For a memoised (read-only) ``pcoef``: its pair classes (see ``PairClasses``); None for
    any other array, as ``summing_matrix``."""
    if pcoef.flags.writeable:
        return None
    return _memo_by_array(cs.class_memo, pcoef, lambda: _classes(cs, pcoef))


def _classes(cs: CompiledSite, pcoef: C128) -> PairClasses:
    c = pcoef.shape[1]
    key = np.zeros(len(cs.pair_n), dtype=[("n", np.int64), ("c", np.complex128, (c,))])
    key["n"] = cs.pair_n
    key["c"] = pcoef
    uniq, inverse = np.unique(key, return_inverse=True)
    q = len(uniq)
    padded = np.append(inverse.ravel().astype(np.int64), q)
    coef = np.ascontiguousarray(uniq["c"], dtype=np.complex128).reshape(q, c)
    re, im = np.ascontiguousarray(coef.real), np.ascontiguousarray(coef.imag)
    a = re * re + im * im
    zero = a <= EPS_COEF
    node = np.ascontiguousarray(uniq["n"], dtype=np.int64)
    new_node = np.diff(node, prepend=-1) != 0
    node_start = np.flatnonzero(new_node)
    by_node = sparse.csr_array(
        (np.ones(q), (np.cumsum(new_node) - 1, np.arange(q))), shape=(len(node_start), q)
    )
    out = PairClasses(
        node=node,
        coef=coef,
        rows=padded[cs.pair_rows],
        re=re,
        im=im,
        a=np.where(zero, 1.0, a),
        zero=zero,
        node_start=node_start,
        by_node=by_node,
    )
    freeze(out.node, out.coef, out.rows, out.re, out.im, out.a, out.zero, out.node_start)
    return out


def last_read(cs: CompiledSite, name: str, source: object, read: Callable[[], T]) -> T:
    """``read()``, or what it returned last time for the very same ``source`` object (the
    entry keeps ``source`` alive, so its identity cannot be reused meanwhile). Arrays in the
    result must not be written to by callers; ``freeze`` makes that an error."""
    hit = cs.last.get(name)
    if hit is not None and hit[0] is source:
        out: T = hit[1]
        return out
    value = read()
    cs.last[name] = (source, value)
    return value


def freeze(*arrays: npt.NDArray[Any]) -> None:
    """Make arrays that are shared between calls read-only."""
    for a in arrays:
        a.flags.writeable = False


def can_cancel(cols: I64) -> bool:
    """Whether some row among ``cols`` can shrink when a charger rises: only transformer
    primary rows (phasors of lines 120 degrees apart). Line, power and line-sum rows grow with
    every charger (``_waterfill._rows_that_can_bind`` says why), so greedy checks on them are
    exact and need no repair pass."""
    return bool(((cols >= COL_PRIMARY) & (cols < COL_PRIMARY + 3)).any())


def active_columns(limit: F64) -> I64:
    """Columns that some node actually limits (the others can never bind)."""
    cols = np.flatnonzero(np.isfinite(limit).any(axis=0)).astype(np.int64)
    return cols if len(cols) else np.array([0], dtype=np.int64)
