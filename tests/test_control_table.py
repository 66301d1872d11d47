"""The controller's per-charger memory as columns (``control._table``): ``ChargerTrack``
values come out exactly as they went in, a state's tracks never change after its step, and
the fast constructors build the same values as the dataclass constructors."""

from __future__ import annotations

import math
from dataclasses import fields, replace

from ampshare.control import (
    ChargerTrack,
    CommandAck,
    ControlInputs,
    ControlSettings,
    InstallFallback,
    SetLimit,
    initial_state,
    step,
)
from ampshare.control._table import FIELDS, TrackTable, TrackView, sent_limits
from ampshare.control._types import new_set_limit
from ampshare.core.allocation import Policy
from ampshare.core.site import (
    Charger,
    CircuitNode,
    Connection,
    Measurand,
    MeterSpec,
    NodeKind,
    Site,
    VoltageSystem,
)
from ampshare.core.snapshot import ChargerState, MeterReading, Session

T0 = 1_700_000_000.0


def _odd_track(cid: str) -> ChargerTrack:
    """A track with every field away from its default."""
    return ChargerTrack(
        charger_id=cid,
        limit_a=10.5,
        high_a=16.0,
        phases=1,
        reason="circuit main, line L2",
        sent_s=1.0,
        raised_s=2.0,
        acked_s=3.0,
        lease_until_s=4.0,
        held_until_s=5.0,
        online=False,
        joined=True,
        report_s=6.0,
        measured_a=7.0,
        measured_line_a=(7.0, 0.0, 6.5),
        prior_line_a=(6.0, 0.0, 5.5),
        prior_s=5.5,
        dip_a=6.5,
        dip_seen_s=5.0,
        over_since_s=8.0,
        noncompliant=True,
        compliant_since_s=9.0,
        under_since_s=10.0,
        cap_a=11.0,
        cap_set_s=12.0,
        probe_misses=2,
        paused_since_s=13.0,
        charging_since_s=14.0,
        fallback_a=15.0,
        fallback_acked=True,
        fallback_sent=True,
    )


def test_every_field_away_from_its_default_in_the_fixture() -> None:
    odd, plain = _odd_track("c"), ChargerTrack(charger_id="c")
    same = [f.name for f in fields(ChargerTrack) if getattr(odd, f.name) == getattr(plain, f.name)]
    assert same == ["charger_id"]


def test_tracks_round_trip_through_the_table() -> None:
    tracks = {"a": _odd_track("a"), "b": ChargerTrack(charger_id="b"), "c": _odd_track("c")}
    table = TrackTable.of(tracks)
    view = TrackView(table)
    assert list(view) == ["a", "b", "c"]
    assert len(view) == 3
    assert dict(view) == tracks
    assert list(view.items()) == list(tracks.items())
    assert list(view.values()) == list(tracks.values())
    assert len(view.values()) == 3
    assert tracks["b"] in view.values()
    assert ("b", tracks["b"]) in view.items()
    assert tracks == view
    assert "b" in view
    assert "x" not in view
    assert view.get("x") is None
    assert view["a"] is tracks["a"]  # unchanged rows keep their object
    # a row built from the columns alone equals the original value, field by field
    table.obj[0] = None
    built = view["a"]
    assert built is not tracks["a"]
    assert built == tracks["a"]
    assert repr(built) == repr(tracks["a"])
    assert tuple(f.name for f in fields(ChargerTrack)) == FIELDS


def test_put_and_copy_keep_tables_apart() -> None:
    table = TrackTable.of({"a": ChargerTrack(charger_id="a"), "b": ChargerTrack(charger_id="b")})
    copy = table.copy()
    copy.put(1, _odd_track("b"))
    copy.limit_a[0] = 3.0
    copy.obj[0] = None
    assert TrackView(table)["a"] == ChargerTrack(charger_id="a")
    assert TrackView(table)["b"] == ChargerTrack(charger_id="b")
    assert TrackView(copy)["a"] == ChargerTrack(charger_id="a", limit_a=3.0)
    assert TrackView(copy)["b"] == _odd_track("b")
    out: dict[str, ChargerTrack] = {}
    copy.write_to(out)
    assert out == {"a": ChargerTrack(charger_id="a", limit_a=3.0), "b": _odd_track("b")}


def test_new_set_limit_is_the_keyword_constructor() -> None:
    args = ("c1", 8.2, 3, 123.0, "node power", 5600.5)
    fast = new_set_limit(*args)
    slow = SetLimit(
        charger_id="c1",
        limit_a=8.2,
        phases=3,
        lease_until_s=123.0,
        reason="node power",
        power_w=5600.5,
    )
    assert fast == slow
    assert repr(fast) == repr(slow)
    assert type(fast) is SetLimit


def _site(n: int) -> Site:
    node = CircuitNode(id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(63.0,) * 3)
    meter = MeterSpec(
        id="m",
        node_id="main",
        measures=frozenset({Measurand.CURRENT_PER_LINE}),
        fallback_line_a=(25.0,) * 3,
    )
    chargers = tuple(
        Charger(id=f"c{i}", node_id="main", connection=Connection.THREE_PHASE, max_current_a=32)
        for i in range(n)
    )
    return Site(
        name="s",
        voltage=VoltageSystem.EU_230_400,
        nodes=(node,),
        chargers=chargers,
        meters=(meter,),
    )


def _snapshot(tracks: object) -> str:
    assert isinstance(tracks, TrackView)
    return repr([(cid, repr(tracks[cid])) for cid in tracks])


def test_a_state_never_changes_after_its_step() -> None:
    """Steps write a copy of the previous table: an old state (kept by the simulator, the
    supervisor's ``before``) reads the same tracks after any number of later steps, whether
    or not they were read before."""
    site = _site(4)
    s, p = ControlSettings(), Policy()
    cars = tuple(Session(session_id=f"s{i}", charger_id=f"c{i}", arrival_s=T0) for i in range(3))
    first = step(
        site,
        s,
        p,
        initial_state(site, s),
        ControlInputs(
            readings=(MeterReading(meter_id="m", t_s=T0, current_a=(10.0,) * 3),), sessions=cars
        ),
        T0,
    )
    read_before = _snapshot(first.state.tracks)
    unread = first.state.tracks.table.obj.count(None)
    assert unread == 0  # reading built (and kept) every row
    acks = tuple(
        CommandAck(
            charger_id=c.charger_id,
            t_s=T0 + 0.2,
            limit_a=c.limit_a,
            fallback=isinstance(c, InstallFallback),
        )
        for c in first.commands
    )
    reports = (ChargerState(charger_id="c0", t_s=T0 + 1, online=False),)
    second = step(
        site,
        s,
        p,
        first.state,
        ControlInputs(
            acks=acks,
            charger_states=reports,
            readings=(MeterReading(meter_id="m", t_s=T0 + 1, current_a=(60.0,) * 3),),
            sessions=cars[1:],
        ),
        T0 + 1,
    )
    assert second.commands  # the second step did change tracks
    assert _snapshot(first.state.tracks) == read_before
    third = step(site, s, p, second.state, ControlInputs(), T0 + 30)
    after_second = _snapshot(second.state.tracks)
    step(site, s, p, third.state, ControlInputs(sessions=cars), T0 + 31)
    assert _snapshot(second.state.tracks) == after_second
    assert _snapshot(first.state.tracks) == read_before


def test_a_plain_mapping_of_tracks_steps_like_the_view() -> None:
    """A state whose tracks are any mapping (built by hand) gives the same step."""
    site = _site(3)
    s, p = ControlSettings(), Policy()
    state = initial_state(site, s)
    plain = replace(state, tracks={cid: state.tracks[cid] for cid in state.tracks})
    inputs = ControlInputs(
        readings=(MeterReading(meter_id="m", t_s=T0, current_a=(10.0,) * 3),),
        sessions=(Session(session_id="s", charger_id="c1", arrival_s=T0),),
    )
    a, b = step(site, s, p, state, inputs, T0), step(site, s, p, plain, inputs, T0)
    assert a.commands == b.commands
    assert a.events == b.events
    assert dict(a.state.tracks) == dict(b.state.tracks)
    assert math.isclose(a.next_wakeup_s, b.next_wakeup_s)


def test_commands_built_by_the_step_are_whole_set_limits() -> None:
    """Every field of every ``SetLimit`` a step sends is set (the plan builds them through
    slot setters)."""
    site = _site(3)
    s = ControlSettings()
    res = step(
        site,
        s,
        Policy(),
        initial_state(site, s),
        ControlInputs(
            readings=(MeterReading(meter_id="m", t_s=T0, current_a=(10.0,) * 3),),
            sessions=(Session(session_id="s", charger_id="c1", arrival_s=T0),),
        ),
        T0,
    )
    limits = [c for c in res.commands if isinstance(c, SetLimit)]
    assert limits
    for cmd in limits:
        again = SetLimit(**{f.name: getattr(cmd, f.name) for f in fields(SetLimit)})
        assert repr(again) == repr(cmd)


def test_sent_limits_reads_the_column_without_building_tracks() -> None:
    site = _site(3)
    s, p = ControlSettings(), Policy()
    res = step(
        site, s, p, initial_state(site, s),
        ControlInputs(
            readings=(MeterReading(meter_id="m", t_s=T0, current_a=(10.0,) * 3),),
            sessions=(Session(session_id="s", charger_id="c1", arrival_s=T0),),
        ),
        T0,
    )
    view = res.state.tracks
    assert isinstance(view, TrackView)
    before = view.table.obj.count(None)
    limits = sent_limits(view)
    assert view.table.obj.count(None) == before  # nothing was built to answer
    sent = {c.charger_id: c.limit_a for c in res.commands if isinstance(c, SetLimit)}
    assert limits == {cid: sent.get(cid) for cid in view}
    c1 = limits["c1"]
    assert c1 is not None
    assert c1 > 0
    plain = {cid: view[cid] for cid in view}
    assert sent_limits(plain) == limits
