"""The sessions of one ``allocate`` call as per-charger arrays.

Grid, keep order and profiles each look at a few session fields for every charger; reading
them once here (``map``/``attrgetter``, no per-session Python loop beyond placing each session
at its charger) keeps thousands of chargers cheap. A session for a charger the site does not
have is ignored; with two sessions for one charger the later one counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import compress, repeat
from operator import attrgetter

import numpy as np
import numpy.typing as npt

from ampshare.core._compiled import CompiledSite, freeze, last_read
from ampshare.core.snapshot import Session

__all__ = ["SessionFacts", "session_facts"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

MIN_WEIGHT = 1e-3  # a weight of 0 (or less) would stall the level; treat it as tiny instead


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionFacts:
    """Per charger (n,): the session (None: no car) and, where there is one, its ``weight``
    (at least ``MIN_WEIGHT``; 1 without a car), ``arrival_s`` (inf without), ``priority``
    (0 without), ``vehicle_max_a`` (inf where unknown) and ``one_phase_car`` (the car declared
    one phase)."""

    sessions: tuple[Session | None, ...]
    has: B
    weight: F64
    arrival_s: F64
    priority: F64
    vehicle_max_a: F64
    one_phase_car: B


def _column(kept: list[Session], name: str, none_as: float) -> F64:
    vals = np.array(list(map(attrgetter(name), kept)), dtype=np.float64)  # None -> NaN
    return np.asarray(np.where(np.isnan(vals), none_as, vals), dtype=np.float64)


def session_facts(cs: CompiledSite, sessions: tuple[Session, ...]) -> SessionFacts:
    """The facts of ``sessions`` (read again only when a new tuple is passed)."""
    return last_read(cs, "sessions", sessions, lambda: _read(cs, sessions))


def _read(cs: CompiledSite, sessions: tuple[Session, ...]) -> SessionFacts:
    n = len(cs.charger_ids)
    idx = np.fromiter(
        map(cs.charger_index.get, map(attrgetter("charger_id"), sessions), repeat(-1)),
        dtype=np.int64,
        count=len(sessions),
    )
    known = idx >= 0
    if known.any() and np.bincount(idx[known], minlength=n).max() > 1:
        # The later of two sessions for one charger counts: keep each index's last occurrence.
        last = len(idx) - 1 - np.unique(idx[::-1], return_index=True)[1]
        known = np.zeros(len(idx), dtype=np.bool_)
        known[last] = True
        known &= idx >= 0
    pos = np.flatnonzero(known)
    kept = list(compress(sessions, known.tolist()))
    at = idx[pos]
    # An object array places every session at its charger without a Python loop.
    placed = np.full(n, None, dtype=object)
    holder = np.empty(len(kept), dtype=object)
    holder[:] = kept
    placed[at] = holder
    out: list[Session | None] = placed.tolist()
    has = np.zeros(n, dtype=np.bool_)
    has[at] = True

    def spread(vals: F64, default: float) -> F64:
        full = np.full(n, default)
        full[at] = vals
        return full

    facts = SessionFacts(
        sessions=tuple(out),
        has=has,
        weight=spread(np.maximum(_column(kept, "weight", 1.0), MIN_WEIGHT), 1.0),
        arrival_s=spread(_column(kept, "arrival_s", np.inf), np.inf),
        priority=spread(_column(kept, "priority", 0.0), 0.0),
        vehicle_max_a=spread(_column(kept, "vehicle_max_current_a", np.inf), np.inf),
        one_phase_car=spread(_column(kept, "vehicle_phases", 0.0), 0.0) == 1.0,
    )
    freeze(
        facts.has,
        facts.weight,
        facts.arrival_s,
        facts.priority,
        facts.vehicle_max_a,
        facts.one_phase_car,
    )
    return facts
