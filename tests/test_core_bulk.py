"""``bulk_builder`` makes the same frozen values as their own ``__init__``."""

from __future__ import annotations

import dataclasses

import pytest

from ampshare.core._bulk import bulk_builder
from ampshare.core.allocation import ChargerLimit, NodeHeadroom, Reason, ReasonKind


def test_bulk_values_equal_init_values_and_stay_frozen() -> None:
    build = bulk_builder(ChargerLimit, ("charger_id", "limit_a", "phases", "reason"))
    why = Reason(kind=ReasonKind.NODE_LINE, node_id="garage")
    made = build(["a", "b"], [6.0, 0.0], [3, 1], [why, why])
    assert made == [
        ChargerLimit(charger_id="a", limit_a=6.0, phases=3, reason=why),
        ChargerLimit(charger_id="b", limit_a=0.0, phases=1, reason=why),
    ]
    assert made[1].power_w is None  # a field not given keeps its default
    assert hash(made[0]) == hash(ChargerLimit(charger_id="a", limit_a=6.0, phases=3, reason=why))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made[0].limit_a = 1.0  # type: ignore[misc]


def test_bulk_refuses_unknown_fields_missing_required_ones_and_ragged_columns() -> None:
    with pytest.raises(ValueError, match="no fields"):
        bulk_builder(ChargerLimit, ("charger_id", "amps"))
    with pytest.raises(ValueError, match="plain default"):
        bulk_builder(NodeHeadroom, ("node_id",))
    build = bulk_builder(ChargerLimit, ("charger_id", "limit_a", "phases", "reason"))
    why = Reason(kind=ReasonKind.NO_SESSION)
    with pytest.raises(ValueError, match=r"shorter|longer"):
        build(["a", "b"], [1.0], [3, 3], [why, why])


def test_replacer_equals_dataclasses_replace() -> None:
    """``replacer`` copies the fields not given and sets the given ones, as ``replace`` does."""
    from dataclasses import replace

    from ampshare.core._bulk import replacer
    from ampshare.core.snapshot import ChargerState, ChargerStatus

    s = ChargerState(charger_id="c1", t_s=5.0, status=ChargerStatus.CHARGING,
                     measured_current_a=(10.0, 10.0, 10.0), power_w=6900.0, energy_wh=12.0)
    fast = replacer(ChargerState)
    got = fast(s, measured_current_a=(8.0, 8.0, 8.0), power_w=5520.0)
    assert got == replace(s, measured_current_a=(8.0, 8.0, 8.0), power_w=5520.0)
    assert got is not s
    assert fast(s) == s


def test_node_headrooms_columns_equal_the_values_they_stand_for() -> None:
    """The allocator's column answer reads as the ``NodeHeadroom`` values it replaces, and its
    shortcuts (``short``, ``left_by_node``) agree with reading those values."""
    from ampshare.core.allocation import NodeHeadrooms

    rows = NodeHeadrooms(
        ["main", "garage"],
        [[100.0, 100.0, 100.0], [32.0, 32.0, 32.0]],
        [[40.0, 41.0, 42.0], [0.0, 0.0, 0.0]],
        [[50.0, 50.0, 50.0], [32.0, 32.5, 31.0]],
        [[10.0, 9.0, 8.0], [0.0, -0.5, 1.0]],
        [True, False],
        [False, False],
    )
    expected = (
        NodeHeadroom(
            node_id="main",
            limit_a=(100.0, 100.0, 100.0),
            other_load_a=(40.0, 41.0, 42.0),
            ev_load_a=(50.0, 50.0, 50.0),
            headroom_a=(10.0, 9.0, 8.0),
            measured=True,
            stale=False,
        ),
        NodeHeadroom(
            node_id="garage",
            limit_a=(32.0, 32.0, 32.0),
            other_load_a=(0.0, 0.0, 0.0),
            ev_load_a=(32.0, 32.5, 31.0),
            headroom_a=(0.0, -0.5, 1.0),
            measured=False,
            stale=False,
        ),
    )
    assert rows == expected
    assert rows == NodeHeadrooms.of(expected)
    assert rows[1] == expected[1]
    assert len(rows) == 2
    assert rows.short() == [1]
    assert rows.short(tol=0.6) == []
    assert rows.left_by_node() == {h.node_id: h.headroom_a for h in expected}
    with pytest.raises(ValueError, match="one value per node"):
        NodeHeadrooms(["a"], [], [], [], [], [], [])


def test_since_by_charger_reads_as_the_mapping_it_stands_for() -> None:
    """The allocator's rotation memory as an array (NaN: not in the mapping) equals the dict
    of its items, in site order, and an empty one is falsy."""
    import numpy as np

    from ampshare.core.allocation import RotationState, SinceByCharger

    ids = ("a", "b", "c")
    since = SinceByCharger(ids, np.array([5.0, np.nan, 0.0]))
    assert since == {"a": 5.0, "c": 0.0}
    assert list(since) == ["a", "c"]
    assert len(since) == 2
    assert since.get("b") is None
    assert since["c"] == 0.0
    assert not SinceByCharger(ids, np.full(3, np.nan))
    assert RotationState(charging_since_s=since) == RotationState(
        charging_since_s={"c": 0.0, "a": 5.0}
    )
    with pytest.raises(ValueError, match="one time per charger"):
        SinceByCharger(ids, np.zeros(2))
