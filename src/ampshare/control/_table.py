"""The controller's per-charger memory as columns, handed out as ``ChargerTrack`` values.

At 1,000 chargers a step that lowers every car rewrites every charger's memory; as frozen
25-field ``ChargerTrack`` objects that copying was half of the step. So the step works on a
``TrackTable``: one list per ``ChargerTrack`` field, one row per charger (in the order of
``ControllerState.tracks``), changed in place while the step decides. The new state hands it
out as ``TrackView``, a read-only ``Mapping[str, ChargerTrack]``: a charger's track is built
when it is first read and then kept, and a row the step did not change keeps the very object
of the previous state. The public shape (``state.tracks[cid].limit_a``) stays as it was.

Rules for code that writes columns: a table handed out in a ``TrackView`` is never written
again (the next step copies it first), and every direct write to row ``i`` clears
``obj[i]``, the built track, so that it is built afresh from the columns.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping, ValuesView
from dataclasses import fields
from typing import Any

from ampshare.control._types import ChargerTrack, PerLine

__all__ = ["FIELDS", "TrackTable", "TrackView", "sent_limits"]

#: ``ChargerTrack``'s fields in order; ``charger_id`` is the table's ``ids``, every other
#: field has a column of the same name.
FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ChargerTrack))


class TrackTable:
    """One list per ``ChargerTrack`` field (see the module docstring); ``pos`` maps a charger
    id to its row and, like ``ids``, is shared by every copy (never written)."""

    __slots__ = (
        "acked_s",
        "cap_a",
        "cap_set_s",
        "charging_since_s",
        "compliant_since_s",
        "dip_a",
        "dip_seen_s",
        "fallback_a",
        "fallback_acked",
        "fallback_sent",
        "held_until_s",
        "high_a",
        "ids",
        "joined",
        "lease_until_s",
        "limit_a",
        "measured_a",
        "measured_line_a",
        "noncompliant",
        "obj",
        "online",
        "over_since_s",
        "paused_since_s",
        "phases",
        "pos",
        "prior_line_a",
        "prior_s",
        "probe_misses",
        "raised_s",
        "reason",
        "report_s",
        "sent_s",
        "under_since_s",
    )
    ids: tuple[str, ...]
    pos: dict[str, int]
    obj: list[ChargerTrack | None]
    limit_a: list[float | None]
    high_a: list[float]
    phases: list[int]
    reason: list[str]
    sent_s: list[float | None]
    raised_s: list[float | None]
    acked_s: list[float | None]
    lease_until_s: list[float]
    held_until_s: list[float]
    online: list[bool]
    joined: list[bool]
    report_s: list[float | None]
    measured_a: list[float]
    measured_line_a: list[PerLine]
    prior_line_a: list[PerLine | None]
    prior_s: list[float | None]
    dip_a: list[float]
    dip_seen_s: list[float]
    over_since_s: list[float | None]
    noncompliant: list[bool]
    compliant_since_s: list[float | None]
    under_since_s: list[float | None]
    cap_a: list[float | None]
    cap_set_s: list[float | None]
    probe_misses: list[int]
    paused_since_s: list[float | None]
    charging_since_s: list[float | None]
    fallback_a: list[float]
    fallback_acked: list[bool]
    fallback_sent: list[bool]

    @classmethod
    def of(cls, tracks: Mapping[str, ChargerTrack]) -> TrackTable:
        """A table the caller may write: a copy of a ``TrackView``'s table, or built from
        any mapping of charger id -> track (its iteration order is the row order)."""
        if isinstance(tracks, TrackView):
            return tracks.table.copy()
        new = cls.__new__(cls)
        new.ids = tuple(tracks)
        new.pos = {cid: i for i, cid in enumerate(new.ids)}
        rows = list(tracks.values())
        new.obj = list(rows)
        for name in _COLUMNS:
            setattr(new, name, [getattr(t, name) for t in rows])
        return new

    def copy(self) -> TrackTable:
        """A writable copy (columns copied, ``ids`` and ``pos`` shared)."""
        new = TrackTable.__new__(TrackTable)
        new.ids = self.ids
        new.pos = self.pos
        new.obj = self.obj.copy()
        for name in _COLUMNS:
            setattr(new, name, getattr(self, name).copy())
        return new

    def row(self, i: int) -> ChargerTrack:
        """Row ``i`` as a ``ChargerTrack`` (built once, then kept until the row changes)."""
        t = self.obj[i]
        if t is None:
            t = self.obj[i] = _build_row(self, i)
        return t

    def rows(self) -> list[ChargerTrack]:
        """Every row as a ``ChargerTrack``, in row order (the missing ones built at once)."""
        _build_missing(self)
        return self.obj.copy()  # type: ignore[return-value]  # no None left

    def put(self, i: int, t: ChargerTrack) -> None:
        """Write ``t`` into row ``i`` (it becomes the row's track object)."""
        _put_row(self, i, t)

    def write_to(self, tracks: dict[str, ChargerTrack]) -> None:
        """Store every row into ``tracks`` (a row never changed stores the object it was
        made from)."""
        for i, cid in enumerate(self.ids):
            tracks[cid] = self.row(i)


#: column names in ``ChargerTrack`` field order (every field but ``charger_id``)
_COLUMNS: tuple[str, ...] = FIELDS[1:]


def _make_row_functions() -> tuple[Any, Any, Any]:
    """``build(table, i) -> ChargerTrack``, ``build_missing(table)`` (every row whose
    object is missing, columns looked up once) and ``put(table, i, track)``, generated once
    with one statement per field (each slot's own setter, as ``_types.evolve`` does: ~3x
    faster than the dataclass ``__init__`` with 25 keywords)."""
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": ChargerTrack}
    for n in FIELDS:
        scope[f"_s_{n}"] = ChargerTrack.__dict__[n].__set__
    build = "def build(tb, i):\n    new = _new(_cls)\n    _s_charger_id(new, tb.ids[i])\n"
    build += "".join(f"    _s_{n}(new, tb.{n}[i])\n" for n in _COLUMNS)
    build += "    return new\n"
    missing = "def build_missing(tb):\n    obj, ids = tb.obj, tb.ids\n"
    missing += "".join(f"    c_{n} = tb.{n}\n" for n in _COLUMNS)
    missing += "    for i, t in enumerate(obj):\n        if t is not None:\n            continue\n"
    missing += "        new = _new(_cls)\n        _s_charger_id(new, ids[i])\n"
    missing += "".join(f"        _s_{n}(new, c_{n}[i])\n" for n in _COLUMNS)
    missing += "        obj[i] = new\n"
    put = "def put(tb, i, t):\n" + "".join(f"    tb.{n}[i] = t.{n}\n" for n in _COLUMNS)
    put += "    tb.obj[i] = t\n"
    exec(build + missing + put, scope)
    return scope["build"], scope["build_missing"], scope["put"]


_build_row, _build_missing, _put_row = _make_row_functions()

if set(TrackTable.__slots__) != {"ids", "pos", "obj", *_COLUMNS}:  # pragma: no cover
    raise RuntimeError("TrackTable needs one column per ChargerTrack field")


class TrackView(Mapping[str, ChargerTrack]):
    """``ControllerState.tracks``: charger id -> ``ChargerTrack``, read-only, over a table
    that no step writes any more."""

    __slots__ = ("table",)

    def __init__(self, table: TrackTable) -> None:
        self.table = table

    def __getitem__(self, key: str) -> ChargerTrack:
        return self.table.row(self.table.pos[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.ids)

    def __len__(self) -> int:
        return len(self.table.ids)

    def __contains__(self, key: object) -> bool:
        return key in self.table.pos

    def values(self) -> ValuesView[ChargerTrack]:
        return _Values(self)

    def items(self) -> ItemsView[str, ChargerTrack]:
        return _Items(self)

    def __repr__(self) -> str:
        return f"TrackView({dict(self)!r})"


class _Values(ValuesView[ChargerTrack]):
    """``TrackView.values()``, iterated from the table's rows (built in one pass)."""

    __slots__ = ("_view",)

    def __init__(self, view: TrackView) -> None:
        super().__init__(view)
        self._view = view

    def __iter__(self) -> Iterator[ChargerTrack]:
        return iter(self._view.table.rows())


class _Items(ItemsView[str, ChargerTrack]):
    """``TrackView.items()``, iterated from the table's rows (built in one pass)."""

    __slots__ = ("_view",)

    def __init__(self, view: TrackView) -> None:
        super().__init__(view)
        self._view = view

    def __iter__(self) -> Iterator[tuple[str, ChargerTrack]]:
        table = self._view.table
        return zip(table.ids, table.rows(), strict=True)


def sent_limits(tracks: Mapping[str, ChargerTrack]) -> dict[str, float | None]:
    """Charger id -> the last limit sent (``ChargerTrack.limit_a``), read straight from the
    column when ``tracks`` is a step's ``TrackView`` (no ``ChargerTrack`` is built: the
    supervisor asks this for every command, before the decreases go out)."""
    if isinstance(tracks, TrackView):
        return dict(zip(tracks.table.ids, tracks.table.limit_a, strict=True))
    return {cid: t.limit_a for cid, t in tracks.items()}
