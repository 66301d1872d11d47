"""``site_view``: the controller's ``StepResult`` as the ``SiteView`` that MQTT publishes.

Kept apart from the message builders so that those stay independent of the control layer;
the app calls ``bridge.publish_state(site_view(site, result))`` after each step.
"""

from __future__ import annotations

import math

from ampshare.adapters.mqtt._messages import ChargerView, NodeView, SiteView
from ampshare.control import StepResult
from ampshare.core.allocation import NodeHeadroom
from ampshare.core.site import Site
from ampshare.core.snapshot import PerLine

__all__ = ["site_view"]


def _finite_min(values: PerLine) -> float | None:
    """Smallest finite headroom over the lines (absent lines carry ``inf``)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return min(finite) if finite else None


def _load(h: NodeHeadroom) -> PerLine:
    out: list[float | None] = []
    for other, ev, limit in zip(h.other_load_a, h.ev_load_a, h.limit_a, strict=True):
        if other is None or ev is None or (limit is not None and math.isinf(limit)):
            out.append(None)  # a line the node does not have, or nothing known about it
        else:
            out.append(other + ev)
    return (out[0], out[1], out[2])


def site_view(site: Site, result: StepResult, now_s: float | None = None) -> SiteView:
    """What to publish after ``result``: node loads and headroom from its allocation, each
    charger's limit and reason from the controller's tracks, status and power from the charger."""
    state = result.state
    heads = {h.node_id: h for h in (result.allocation.headroom if result.allocation else ())}
    nodes = tuple(NodeView(node_id=n.id, line_current_a=_load(heads[n.id]) if n.id in heads
                           else (None, None, None),
                           headroom_a=_finite_min(heads[n.id].headroom_a) if n.id in heads
                           else None)
                  for n in site.nodes)
    chargers = []
    for c in site.chargers:
        track = state.tracks.get(c.id)
        cs = state.charger_states.get(c.id)
        status = "Offline" if track is not None and not track.online else (
            cs.status.value if cs is not None else "Unknown")
        chargers.append(ChargerView(
            charger_id=c.id, limit_a=track.limit_a if track else None,
            current_a=track.measured_a if track and track.report_s is not None else None,
            power_w=cs.power_w if cs else None, status=status,
            reason=track.reason if track else ""))
    root = nodes[0].headroom_a if nodes else None
    t_s = now_s if now_s is not None else (state.last_step_s or 0.0)
    return SiteView(t_s=t_s, headroom_a=root, nodes=nodes, chargers=tuple(chargers))
