"""Variants of a site for what-if studies: a tighter transformer, more or fewer chargers."""

from __future__ import annotations

import dataclasses

from ampshare.core.site import Charger, CircuitNode, NodeKind, Site
from ampshare.errors import InputError

__all__ = ["node_kva", "scale_chargers", "tighten_transformers"]


def node_kva(site: Site, node: CircuitNode) -> float:
    """Apparent-power rating of a node from its line limits (V_LN × Σ line limits)."""
    lines = site.voltage.lines
    return site.voltage.line_to_neutral_v * sum(node.line_limit_a[ln.index] for ln in lines) / 1000


def tighten_transformers(site: Site, kva: float) -> Site:
    """Every transformer node rated ``kva``: its secondary and primary line limits scaled by
    ``kva`` / its present rating (how ACN studies shrink the Caltech 150 kVA transformer)."""
    if kva <= 0:
        raise InputError(f"transformer rating must be positive (got {kva} kVA)")
    nodes = []
    found = False
    for node in site.nodes:
        n = node
        if n.kind is NodeKind.TRANSFORMER:
            found = True
            f = kva / node_kva(site, n)
            prim = (
                dataclasses.replace(n.primary, line_limit_a=n.primary.line_limit_a * f)
                if n.primary
                else None
            )
            n = dataclasses.replace(
                n,
                line_limit_a=tuple(x * f for x in n.line_limit_a),  # type: ignore[arg-type]
                primary=prim,
                max_power_w=None if n.max_power_w is None else kva * 1000,
            )
        nodes.append(n)
    if not found:
        raise InputError(f"site {site.name!r} has no transformer node to tighten")
    return dataclasses.replace(site, nodes=tuple(nodes))


def scale_chargers(site: Site, count: int) -> Site:
    """The site with ``count`` chargers: existing ones are copied in turn (same node, wiring
    and limits; the phase rotation of the copied charger is kept) or the list is cut."""
    if count < 1:
        raise InputError("a site needs at least one charger")
    base = site.chargers
    out: list[Charger] = list(base[:count])
    k = 0
    while len(out) < count:
        src = base[k % len(base)]
        out.append(dataclasses.replace(src, id=f"{src.id}~{len(out)}", name=""))
        k += 1
    return dataclasses.replace(site, chargers=tuple(out))
