"""``ampshare check SITE.yaml``: validate a site file and show what ampshare understood.

Exit 0 and the tree when the file is valid; exit 2 and every problem found when it is not.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from ampshare.cli._app import app
from ampshare.config import dump_site, load_config
from ampshare.core.site import (
    Charger,
    CircuitNode,
    LimitUnit,
    Load,
    MeterSpec,
    PhaseRotation,
    Site,
)
from ampshare.errors import ConfigError

__all__ = ["check", "driver_text", "render_site_tree"]


@app.command("check")
def check(
    path: Path = typer.Argument(..., help="the site file (YAML) to validate"),  # noqa: B008
    as_json: bool = typer.Option(False, "--json", help="print the parsed model as JSON"),
) -> None:
    """Validate a site file: print its tree and exit 0, or print every problem and exit 2."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        for issue in exc.issues:
            err.print(escape(str(issue)), style="red")
        err.print(f"{path}: {len(exc.issues)} problem(s) found", style="bold red")
        raise typer.Exit(2) from exc
    site = config.site
    if as_json:
        typer.echo(json.dumps(dump_site(site), indent=2))
        return
    out = Console(highlight=False, soft_wrap=True)
    if not out.is_terminal:
        out.width = 200  # piped or captured: do not crop long node lines at 80 columns
    out.print(render_site_tree(site))
    out.print(summary_line(site))
    if config.battery is not None:
        b, p = config.battery, config.planner
        out.print(
            f"battery {escape(b.id)} ({b.driver.type}) behind the root meter: "
            f"{p.battery_capacity_kwh:g} kWh, {p.battery_max_charge_kw:g} kW in / "
            f"{p.battery_max_discharge_kw:g} kW out, {p.battery_min_soc_pct:g}-"
            f"{p.battery_max_soc_pct:g} %; driven from the plan, read every {b.poll_s:g} s"
        )


def render_site_tree(site: Site) -> Tree:
    """The site as a rich tree: nodes with limits, and under each its chargers, loads, meters."""
    v = site.voltage
    kind = (
        "single-phase"
        if len(v.lines) == 1
        else "split-phase"
        if len(v.lines) == 2
        else "three-phase"
    )
    tree = Tree(f"[bold]{escape(site.name)}[/]  {v.value} V {kind}, {site.frequency_hz:g} Hz")
    labels: dict[str, list[str]] = {n.id: [] for n in site.nodes}
    for m in site.meters:
        labels[m.node_id].append(_meter_label(site, m))
    for m in site.pv_meters:
        labels[m.node_id].append(
            f"PV meter [yellow]{escape(m.id)}[/]  {escape(driver_text(m))}  polled every "
            f"{m.poll_interval_s:g} s; the planner's PV and building forecasts only"
        )
    for load in site.loads:
        labels[load.node_id].append(_load_label(load))
    for c in site.chargers:
        labels[c.node_id].append(_charger_label(c))
    branches: dict[str, Tree] = {}
    for node in site.nodes:
        parent = branches.get(node.parent_id or "", tree)
        branches[node.id] = branch = parent.add(_node_label(site, node))
        for label in labels[node.id]:
            branch.add(label)
    return tree


def _amps(x: float) -> str:
    return f"{x:g} A"


def limits_text(site: Site, limits: tuple[float, float, float]) -> str:
    """'3x160 A', '100 A', 'L1 63 A, L2 40 A' or 'no line limit'."""
    values = [limits[line.index] for line in site.voltage.lines]
    if all(math.isinf(x) for x in values):
        return "no line limit"
    if len(set(values)) == 1:
        n = len(values)
        return f"{n}x{_amps(values[0])}" if n > 1 else _amps(values[0])
    return ", ".join(
        f"{line} {_amps(limits[line.index]) if math.isfinite(limits[line.index]) else 'no limit'}"
        for line in site.voltage.lines
    )


def _node_label(site: Site, node: CircuitNode) -> str:
    parts = [
        f"[bold cyan]{escape(node.id)}[/] ({node.kind.value})",
        limits_text(site, node.line_limit_a),
    ]
    if node.name:
        parts.insert(1, escape(repr(node.name)))
    if node.margin_a:
        parts.append(f"margin {_amps(node.margin_a)}")
    if node.max_power_w is not None:
        parts.append(f"max {node.max_power_w / 1000:g} kW")
    if node.max_line_sum_a is not None:
        parts.append(f"line sum <= {_amps(node.max_line_sum_a)}")
    if node.primary is not None:
        p = node.primary
        parts.append(
            f"primary {p.winding.value} {p.winding_ratio:g}:1, {_amps(p.line_limit_a)}/line"
        )
    return "  ".join(parts)


def _charger_label(c: Charger) -> str:
    wiring = c.connection.value
    if c.phase_rotation is not PhaseRotation.L1L2L3:
        wiring += f" via {c.phase_rotation.value} -> site {'-'.join(c.site_lines())}"
    rng = f"{c.min_current_a:g}-{c.max_current_a:g} A"
    if c.allowed_currents_a:
        rng = "{" + ", ".join(f"{a:g}" for a in c.allowed_currents_a) + "} A"
    parts = [f"charger [green]{escape(c.id)}[/]", wiring, rng, *_accepts(c), c.protocol]
    if c.connectors > 1:
        parts.append(f"{c.connectors} connectors")
    if c.is_dc:
        parts.append("DC")
    if c.max_power_w is not None:
        parts.append(f"max {c.max_power_w / 1000:g} kW")
    if c.can_switch_phases:
        parts.append("1p/3p switching")
    return "  ".join(parts)


def _accepts(c: Charger) -> list[str]:
    """What limits the charger takes, where that differs from the default (A in 0.1 A steps,
    0 A pauses)."""
    out = []
    if c.limit_unit is LimitUnit.WATT:
        out.append("limits in W")
    if not c.allowed_currents_a and abs(c.resolution_a - 0.1) > 1e-9:
        out.append(f"{c.resolution_a:g} A steps")
    if not c.zero_pauses:
        out.append(f"no pause (never below {c.min_current_a:g} A)")
    return out


def _load_label(load: Load) -> str:
    name = f" {escape(repr(load.name))}" if load.name else ""
    amps = _amps(load.max_current_a)
    return f"load [magenta]{escape(load.id)}[/]{name}  {load.connection.value}  up to {amps}"


def driver_text(m: MeterSpec) -> str:
    """'modbus sdm630 10.0.0.5:502 unit 1', 'mqtt 127.0.0.1:1883', 'p1 /dev/ttyUSB0' or 'sim'."""
    p = m.params
    parts = [m.driver]
    if "model" in p:
        parts.append(str(p["model"]))
    if p.get("serial_port"):
        parts.append(str(p["serial_port"]))
    elif p.get("host"):
        parts.append(f"{p['host']}:{p['port']}" if p.get("port") else str(p["host"]))
    if m.driver == "modbus" and "unit_id" in p:
        parts.append(f"unit {p['unit_id']}")
    return " ".join(parts)


def _meter_label(site: Site, m: MeterSpec) -> str:
    measures = ", ".join(sorted(x.value for x in m.measures))
    assumed = ("its highest reading so far" if m.fallback_line_a is None
               else limits_text(site, m.fallback_line_a))
    stale = f"stale after {m.timeout_s:g} s, then {assumed} assumed"
    return (f"meter [yellow]{escape(m.id)}[/]  {escape(driver_text(m))}  {measures}  "
            f"polled every {m.poll_interval_s:g} s, {stale}")


def summary_line(site: Site) -> str:
    """One line: counts and the installed charger capacity against the root's limit."""
    installed = sum(c.max_current_a for c in site.chargers)
    root = limits_text(site, site.root.line_limit_a)
    if site.root.max_power_w is not None:
        root += f", max {site.root.max_power_w / 1000:g} kW"
    return (
        f"OK: {len(site.nodes)} node(s), {len(site.chargers)} charger(s) "
        f"({installed:g} A installed), {len(site.meters)} meter(s), {len(site.loads)} "
        f"load(s); root '{site.root.id}': {root}"
    )
