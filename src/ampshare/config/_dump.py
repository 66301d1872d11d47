"""A ``Site`` back to the site file's shape: plain JSON-able data (``check --json``, import-acn).

Only values that differ from what the loader would assume are written for chargers' optional
settings, so that a dumped file reads like a hand-written one; ``parse_site(dump_site(s))``
gives back an equal ``Site``.
"""

from __future__ import annotations

import math
from typing import Any

from ampshare.core.site import (
    Charger,
    CircuitNode,
    Load,
    MeterSpec,
    NodeKind,
    PhaseRotation,
    Site,
    VoltageSystem,
)

__all__ = ["dump_site", "limit_out"]

_CHARGER_DEFAULTS: dict[str, Any] = {
    "connectors": 1, "rotation": "L1L2L3", "switch_phases": False, "limit_unit": "A",
    "resolution_a": 0.1, "zero_pauses": True, "protocol": "ocpp1.6", "dc": False,
}


def dump_site(site: Site) -> dict[str, Any]:
    """The site as a site-file mapping (JSON-able: no infinities, enums as their strings)."""
    out: dict[str, Any] = {
        "site": site.name,
        "voltage": site.voltage.value,
        "frequency_hz": site.frequency_hz,
        "nodes": [_node(n, site.voltage) for n in site.nodes],
        "chargers": [_charger(c) for c in site.chargers],
    }
    if site.meters or site.pv_meters:
        out["meters"] = [_meter(m, site.voltage) for m in site.meters] + [
            {**_meter(m, site.voltage), "role": "pv"} for m in site.pv_meters
        ]
    if site.loads:
        out["loads"] = [_load(x) for x in site.loads]
    return out


def limit_out(limits: tuple[float, float, float], voltage: VoltageSystem) -> Any:
    """One number when every line of the site has the same limit, else {line: amps}; None when
    nothing is limited."""
    values = {line.value: limits[line.index] for line in voltage.lines
              if math.isfinite(limits[line.index])}
    if not values:
        return None
    if len(values) == len(voltage.lines) and len(set(values.values())) == 1:
        return next(iter(values.values()))
    return values


def _node(node: CircuitNode, voltage: VoltageSystem) -> dict[str, Any]:
    out: dict[str, Any] = {"id": node.id}
    if node.name:
        out["name"] = node.name
    out["kind"] = node.kind.value
    if node.parent_id is not None:
        out["parent"] = node.parent_id
    limit = limit_out(node.line_limit_a, voltage)
    if limit is not None:
        out["limit_a"] = limit
    if node.max_power_w is not None:
        out["max_power_w"] = node.max_power_w
    if node.max_line_sum_a is not None:
        out["max_line_sum_a"] = node.max_line_sum_a
    if node.margin_a:
        out["margin_a"] = node.margin_a
    if node.primary is not None:
        out["primary"] = {"winding": node.primary.winding.value,
                          "ratio": node.primary.winding_ratio,
                          "limit_a": node.primary.line_limit_a}
    elif node.kind is NodeKind.TRANSFORMER:
        out["kind"] = "transformer"
    return out


def _charger(c: Charger) -> dict[str, Any]:
    out: dict[str, Any] = {"id": c.id}
    if c.name:
        out["name"] = c.name
    out.update(node=c.node_id, connection=c.connection.value, min_a=c.min_current_a,
               max_a=c.max_current_a)
    extra: dict[str, Any] = {
        "connectors": c.connectors, "rotation": c.phase_rotation.value,
        "switch_phases": c.can_switch_phases, "limit_unit": c.limit_unit.value,
        "resolution_a": c.resolution_a, "zero_pauses": c.zero_pauses, "protocol": c.protocol,
        "dc": c.is_dc,
    }
    out.update({k: v for k, v in extra.items() if v != _CHARGER_DEFAULTS[k]})
    if c.max_power_w is not None:
        out["max_power_w"] = c.max_power_w
    if c.allowed_currents_a:
        out["allowed_a"] = list(c.allowed_currents_a)
    if c.phase_rotation is PhaseRotation.L1L2L3:
        out.pop("rotation", None)
    return out


def _meter(m: MeterSpec, voltage: VoltageSystem) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": m.id, "node": m.node_id,
        "measures": sorted(x.value for x in m.measures),
        "driver": {"type": m.driver, **dict(m.params)},
        "timeout_s": m.timeout_s, "poll_s": m.poll_interval_s,
    }
    if m.fallback_line_a is not None:
        out["fallback_a"] = [m.fallback_line_a[line.index] for line in voltage.lines]
    if not m.includes_ev_load:
        out["includes_ev_load"] = False
    return out


def _load(x: Load) -> dict[str, Any]:
    out: dict[str, Any] = {"id": x.id}
    if x.name:
        out["name"] = x.name
    out.update(node=x.node_id, connection=x.connection.value, max_a=x.max_current_a)
    return out
