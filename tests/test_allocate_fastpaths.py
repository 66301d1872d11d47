"""The allocator's fast paths agree with the plain ones they replace.

``allocate`` reads sessions and charger states in bulk (``_sessions``, ``_headroom``), sums
node columns with a sparse product memoised per site (``_compiled.summing_matrix``) and skips
the repair pass where no row can cancel. These tests pin the input semantics the bulk readers
must keep (the later of two sessions counts, unknown chargers are ignored, a line reported as
None counts as 0 A of EV current) and compare the sparse sums with the running-sum path.
"""

from __future__ import annotations

import random

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ampshare.core._compiled import compile_site, pair_classes, site_pair_coefficients
from ampshare.core._waterfill import (
    Profiles,
    _class_breaks,
    _drop_frozen,
    _events,
    _merged,
    alone_slack,
    fill,
    node_sums,
    slack_only,
)
from ampshare.core.allocate import allocate
from ampshare.core.allocation import AllocationInput, NodeMeasurement, Policy, PolicyName
from ampshare.core.site import (
    Charger,
    CircuitNode,
    Connection,
    NodeKind,
    PrimaryWinding,
    Site,
    TransformerPrimary,
    VoltageSystem,
)
from ampshare.core.snapshot import ChargerState, Session
from test_allocate_strategies import cases


def _site(n: int, limit_a: float = 1000.0) -> Site:
    main = CircuitNode(
        id="main",
        kind=NodeKind.TRANSFORMER,
        parent_id=None,
        line_limit_a=(limit_a,) * 3,
        primary=TransformerPrimary(
            winding=PrimaryWinding.DELTA, winding_ratio=4.0, line_limit_a=limit_a / 3
        ),
    )
    group = CircuitNode(id="g", kind=NodeKind.GROUP, parent_id="main", line_limit_a=(60.0,) * 3)
    conns = list(Connection)
    chargers = tuple(
        Charger(
            id=f"c{i}",
            node_id="g" if i % 2 else "main",
            connection=conns[i % len(conns)],
            max_current_a=32.0,
        )
        for i in range(n)
    )
    return Site(
        name="fast", voltage=VoltageSystem.US_120_208, nodes=(main, group), chargers=chargers
    )


def _session(cid: str, **kw: object) -> Session:
    return Session(session_id=f"s-{cid}", charger_id=cid, arrival_s=0.0, **kw)  # type: ignore[arg-type]


def test_the_later_of_two_sessions_for_one_charger_counts_and_unknown_chargers_are_ignored() -> (
    None
):
    site = _site(4)
    sessions = (
        _session("c1", vehicle_max_current_a=10.0),
        _session("ghost"),
        _session("c1", vehicle_max_current_a=20.0),
        _session("c2"),
    )
    out = {
        lim.charger_id: lim
        for lim in allocate(AllocationInput(site=site, now_s=0.0, sessions=sessions)).limits
    }
    assert out["c1"].limit_a == 20.0  # the later session's vehicle maximum, not the first one's
    assert out["c2"].limit_a > 0.0
    assert out["c0"].limit_a == 0.0
    assert "ghost" not in out


def test_a_line_reported_as_none_counts_as_no_ev_current() -> None:
    # The meter sees 50 A on L1 in all; the car reports 20 A on L1 and nothing on L2/L3. With
    # None read as 0 the building is 30 A; were None read as anything else it would shrink.
    site = Site(
        name="one",
        voltage=VoltageSystem.EU_230_400,
        nodes=(
            CircuitNode(id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(63.0,) * 3),
        ),
        chargers=(Charger(id="c0", node_id="main", connection=Connection.L1, max_current_a=32.0),),
    )
    state = ChargerState(charger_id="c0", t_s=0.0, measured_current_a=(20.0, None, None))
    inp = AllocationInput(
        site=site,
        now_s=0.0,
        sessions=(_session("c0"),),
        charger_states=(
            state,
            ChargerState(charger_id="ghost", t_s=0.0, measured_current_a=(9.0, 9.0, 9.0)),
        ),
        measurements=(NodeMeasurement(node_id="main", current_a=(50.0, 0.0, 0.0)),),
    )
    alloc = allocate(inp)
    assert alloc.headroom[0].other_load_a == (30.0, 0.0, 0.0)
    assert alloc.limits[0].limit_a == 32.0  # 63 - 30 = 33 A left, the charger stops at 32


def test_sparse_node_sums_equal_running_sums() -> None:
    rnd = random.Random(7)
    site = _site(60)
    cs = compile_site(site)
    one = np.array([rnd.random() < 0.3 for _ in range(60)], dtype=np.bool_)
    memo = site_pair_coefficients(cs, one)
    plain = memo.copy()  # writeable: takes the running-sum path
    assert plain.flags.writeable
    assert not memo.flags.writeable
    x = np.array([rnd.uniform(0.0, 32.0) for _ in range(60)])
    np.testing.assert_allclose(node_sums(cs, memo, x), node_sums(cs, plain, x), atol=1e-9)
    assert np.abs(node_sums(cs, memo, x)).max() > 1.0  # the sums are not trivially zero


def test_every_policy_repeated_calls_give_the_same_answer_with_the_memo_warm() -> None:
    site = _site(30, limit_a=150.0)
    sessions = tuple(_session(c.id, priority=i % 3) for i, c in enumerate(site.chargers))
    for name in (PolicyName.EQUAL, PolicyName.PRIORITY, PolicyName.FCFS, PolicyName.DEADLINE):
        inp = AllocationInput(site=site, now_s=0.0, sessions=sessions, policy=Policy(name=name))
        first = allocate(inp)
        assert allocate(inp) == first
        assert sum(lim.limit_a for lim in first.limits) > 0.0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(["equal"]), st.integers(0, 2**32 - 1))
def test_slack_by_pair_class_equals_slack_per_pair(inp: AllocationInput, seed: int) -> None:
    """``slack_only`` and ``alone_slack`` work per class of (node, coefficients) on memoised
    coefficients; on a writeable copy they take the per-pair path. Same numbers, same binding
    node and column (ties: the node nearest the root, then the lowest column), on random
    sites with every connection, primaries, power and line-sum rows."""
    rnd = np.random.default_rng(seed)
    cs = compile_site(inp.site)
    n, m = len(cs.charger_ids), len(cs.node_ids)
    if n == 0:
        return
    one = rnd.random(n) < 0.3
    cols = np.flatnonzero(rnd.random(8) < 0.6).astype(np.int64)
    cols = cols if len(cols) else np.array([0], dtype=np.int64)
    memo = site_pair_coefficients(cs, one, cols)
    plain = memo.copy()
    assert pair_classes(cs, memo) is not None
    assert pair_classes(cs, plain) is None
    x = rnd.uniform(0.0, 32.0, n)
    v = node_sums(cs, plain, x)
    # limits around the present sums: some rows tight, some over, some infinite
    limit = np.abs(v) * rnd.uniform(0.8, 1.6, v.shape)
    limit[rnd.random(v.shape) < 0.2] = np.inf
    idx = rnd.random(n) < 0.8
    nodes = rnd.random(m) < 0.7
    for only in (None, nodes):
        np.testing.assert_array_equal(
            slack_only(cs, memo, v, limit, idx, nodes=only),
            slack_only(cs, plain, v, limit, idx, nodes=only),
        )
        for got, want in zip(
            alone_slack(cs, memo, v, limit, idx, nodes=only),
            alone_slack(cs, plain, v, limit, idx, nodes=only),
            strict=True,
        ):
            np.testing.assert_array_equal(got, want)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(["equal"]), st.integers(0, 2**32 - 1))
def test_water_filling_by_class_table_equals_sorting_every_breakpoint(
    inp: AllocationInput, seed: int
) -> None:
    """On memoised coefficients the water-filling adds slope changes up per (pair class,
    level) cell; on a writeable copy it sorts every (charger, ancestor) breakpoint. Same
    segments for any set of frozen chargers, and the same filling, on random sites and
    profiles whose levels are often shared (as with ``equal``) or all distinct."""
    rnd = np.random.default_rng(seed)
    cs = compile_site(inp.site)
    n, m = len(cs.charger_ids), len(cs.node_ids)
    if n == 0:
        return
    cols = np.flatnonzero(rnd.random(8) < 0.6).astype(np.int64)
    cols = cols if len(cols) else np.array([0], dtype=np.int64)
    memo = site_pair_coefficients(cs, rnd.random(n) < 0.3, cols)
    plain = memo.copy()
    g = int(rnd.integers(1, 3))
    shared = rnd.random() < 0.7
    pick = (lambda *a: rnd.choice(a, size=(n, g))) if shared else None
    start = pick(0.0, 2.0, 5.0) if pick else rnd.uniform(0.0, 5.0, (n, g))
    slope = pick(0.0, 1.0, 2.0) if pick else rnd.uniform(0.0, 2.0, (n, g))
    length = pick(0.0, 6.0, 10.0) if pick else rnd.uniform(0.0, 10.0, (n, g))
    prof = Profiles(base=rnd.choice([0.0, 6.0], n), start=start, slope=slope, length=length)
    nodes_on = rnd.random(m) < 0.8
    active = rnd.random(n) < 0.9
    dense = _class_breaks(cs, memo, prof, nodes_on, active, min_pairs=0)
    if dense is None:  # too many distinct levels for a small table, or no breakpoint at all
        assert not shared or not ((length > 0) & (slope > 0) & active[:, None]).any()
        return
    assert _class_breaks(cs, plain, prof, nodes_on, active, min_pairs=0) is None
    frozen = ~active
    for _ in range(3):
        want = _merged(m, _drop_frozen(_events(cs, plain, active, prof, nodes_on), frozen))
        got = dense.merged(frozen)
        np.testing.assert_array_equal(got.node, want.node)
        np.testing.assert_array_equal(got.t, want.t)
        np.testing.assert_array_equal(got.start, want.start)
        np.testing.assert_allclose(got.d, want.d, atol=1e-9)
        frozen = frozen | (rnd.random(n) < 0.3)
    x_fixed = rnd.uniform(0.0, 10.0, n)
    v = node_sums(cs, plain, np.where(active, prof.end(), x_fixed))
    limit = np.abs(v) * rnd.uniform(0.3, 1.2, v.shape)
    limit[rnd.random(v.shape) < 0.2] = np.inf
    a = fill(cs, memo, limit, x_fixed, active, prof=prof, cols=cols, min_pairs=0)
    b = fill(cs, plain, limit, x_fixed, active, prof=prof, cols=cols)
    np.testing.assert_allclose(a[0], b[0], atol=1e-9)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(["equal", "priority", "deadline"]))
def test_reasons_kept_by_key_in_an_array_or_a_dict_are_the_same(inp: AllocationInput) -> None:
    """Reasons are kept per site in an object array indexed by key, or in a dict where a
    site has too many keys for the array (thousands of nodes): the same reasons either way,
    on the first call and from the kept ones on the next."""
    from ampshare.core import _reasons
    from ampshare.core._grid import MAX_KINDS
    from ampshare.core._headroom import headroom

    cs0 = compile_site(inp.site)
    base, k1 = _reasons._base(cs0), 9  # the key's packing (``_reasons._keys``)

    def key(cat: int, node: int, col: int, detail: int = 0) -> int:
        return (((cat * (base + 1) + node + 1) * k1 + col + 1) * 3) + detail

    nodes = range(len(cs0.node_ids))
    keys = [key(_reasons._NONE, -1, -1), key(_reasons._SHARE, -1, -1, 1)]
    keys += [key(_reasons._ROW, j, k) for j in nodes for k in range(3)]
    keys += [key(_reasons._NO_HEADROOM, j, 0) for j in nodes]
    keys += [key(_reasons._ROTATION, -1, -1), key(_reasons._MAX, len(MAX_KINDS) - 1, -1, 2)]
    keys_at = np.array(keys + keys[::2], dtype=np.int64)
    for _ in range(2):
        got = []
        for table_max in (1 << 20, 0):
            cs = compile_site(inp.site)
            hr = headroom(cs, inp)
            got.append([r.text for r in _reasons._reasons(cs, hr, keys_at, table_max)])
        assert got[0] == got[1]
        assert len(set(got[0])) > 3  # different reasons, not one
    # and through allocate, the default (array) path: the second call reads the kept reasons
    assert [lim.reason for lim in allocate(inp).limits] == [
        lim.reason for lim in allocate(inp).limits
    ]
