"""Whether a plugged-in car will be ready by its departure: the planner's verdict when a
planner runs, else an estimate from the current limits (``ChargerOut.will_not_be_ready``)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from ampshare.core.allocation import ChargerLimit, ReasonKind
from ampshare.core.snapshot import Session
from ampshare.web.runtime import RuntimeView

if TYPE_CHECKING:  # the planner pulls in scipy; the web layer only reads its results
    from ampshare.core.planner import SessionPlan

__all__ = ["Readiness", "ReadinessIndex", "readiness", "readiness_index"]


class Readiness(StrEnum):
    """Where ``ChargerOut.will_not_be_ready`` comes from."""

    PLAN = "plan"
    ESTIMATE = "estimate"


_SHORT_WH, _SHORT_SHARE = 50.0, 0.01  # what the planner counts as "not ready"
_TAKES_TURNS = frozenset({ReasonKind.PAUSED_ROTATION, ReasonKind.PAUSED_PLAN})


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadinessIndex:
    """Built once per listing: the plan's promise per session id (empty without a plan) and,
    per (node id, line), the EV current a car there gets on average when cars take turns
    (what is left after the building load, over the plugged-in cars below the node) [A]."""

    plan_by: Mapping[str, SessionPlan]
    turn_share_a: Mapping[tuple[str, str], float]


def readiness_index(v: RuntimeView) -> ReadinessIndex:
    parent = {n.id: n.parent_id for n in v.site.nodes}
    node_of = {c.id: c.node_id for c in v.site.chargers}
    cars: Counter[str] = Counter()
    for sess in v.sessions:
        n = node_of.get(sess.charger_id)
        while n is not None:
            cars[n] += 1
            n = parent.get(n)
    share: dict[tuple[str, str], float] = {}
    for h in v.headroom:
        for line, lim_a, other_a in zip(("L1", "L2", "L3"), h.limit_a, h.other_load_a, strict=True):
            ev_a = lim_a - other_a
            if cars[h.node_id] and math.isfinite(ev_a):
                share[(h.node_id, line)] = max(0.0, ev_a) / cars[h.node_id]
    plan_by = {sp.session_id: sp for sp in v.plan.sessions} if v.plan is not None else {}
    return ReadinessIndex(plan_by=plan_by, turn_share_a=share)


def readiness(
    v: RuntimeView, lim: ChargerLimit | None, sess: Session | None, index: ReadinessIndex
) -> tuple[bool | None, Readiness | None]:
    """Whether the car in ``sess`` will miss its goal by its departure, and from what."""
    if sess is None or sess.energy_wanted_wh is None or sess.departure_s is None:
        return None, None
    sp = index.plan_by.get(sess.session_id)
    if sp is not None:
        return sp.will_not_be_ready, Readiness.PLAN
    if lim is None:
        return None, None
    if lim.reason.kind is ReasonKind.CAR_FULL:
        # the car declines current (full) and the controller paused it: no shortfall for a
        # manager to act on (the planner likewise plans nothing more for a full car)
        return False, Readiness.ESTIMATE
    rate_a = lim.limit_a
    r = lim.reason
    if r.kind in _TAKES_TURNS and r.node_id and r.line:
        # Paused now, but it gets its turn (the rotation's, or when the plan says): count
        # what it gets on average over the turns.
        rate_a = index.turn_share_a.get((r.node_id, r.line.value), 0.0)
    need_wh = sess.energy_wanted_wh - sess.energy_delivered_wh
    hours = max(0.0, sess.departure_s - v.now_s) / 3600.0
    can_wh = rate_a * lim.phases * v.site.voltage.line_to_neutral_v * hours
    short_wh = need_wh - can_wh
    return short_wh > max(_SHORT_WH, _SHORT_SHARE * sess.energy_wanted_wh), Readiness.ESTIMATE
