"""From a parsed file to core values: validate every part, check relations, build a ``Site``.

Every step appends to one list of problems instead of stopping at the first, so that a user
fixing a file sees everything that is wrong with it in one run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ValidationError

from ampshare.config import _checks
from ampshare.config._problems import Problem, from_validation_error
from ampshare.config.meter_drivers import MEASURAND_QUANTITIES, provided_measurands
from ampshare.config.schema import (
    ID_PATTERN,
    ITEM_MODELS,
    ChargerModel,
    LoadModel,
    MeterModel,
    NodeModel,
    SiteFileModel,
)
from ampshare.core.site import (
    Charger,
    CircuitNode,
    Connection,
    Load,
    MeterSpec,
    NodeKind,
    PhaseRotation,
    Site,
    TransformerPrimary,
    VoltageSystem,
)

__all__ = ["Built", "build"]

_CYCLE = (PhaseRotation.L1L2L3, PhaseRotation.L2L3L1, PhaseRotation.L3L1L2)
_US = (VoltageSystem.US_120_240, VoltageSystem.US_120_208, VoltageSystem.US_277_480)
# Keys whose checks depend on the site's lines (not run against a stand-in voltage).
_VOLTAGE_KEYS = {"connection", "rotation", "limit_a", "fallback_a", "switch_phases", "primary",
                 "margin_a"}


@dataclass(slots=True)
class Built:
    """The outcome: the top-level model and site when valid, and every problem found."""

    top: SiteFileModel | None = None
    site: Site | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass(slots=True)
class _Items:
    nodes: list[tuple[int, NodeModel]] = field(default_factory=list)
    chargers: list[tuple[int, ChargerModel]] = field(default_factory=list)
    meters: list[tuple[int, MeterModel]] = field(default_factory=list)
    loads: list[tuple[int, LoadModel]] = field(default_factory=list)


def build(data: Any) -> Built:
    """Validate ``data`` (the parsed YAML mapping) and build the ``Site`` if it is valid."""
    out = Built()
    if not isinstance(data, Mapping):
        out.problems.append(Problem(loc=(), message="the file must be a mapping of keys",
                                    hint="start with 'site: <name>' and 'nodes:'"))
        return out
    try:
        out.top = SiteFileModel.model_validate(dict(data))
    except ValidationError as exc:
        out.problems.extend(from_validation_error(exc, SiteFileModel))
    if out.top is not None:
        _check_battery(out.top, out.problems)
    items = _validate_items(data, out.problems)
    voltage = out.top.voltage if out.top else _voltage_or_none(data.get("voltage"))
    if voltage is None:
        # The voltage itself is wrong (reported): still check what does not depend on it
        # (ids, parents, node references, currents), so one run shows every such mistake.
        scratch: list[Problem] = []
        _assemble(data, items, VoltageSystem.EU_230_400, scratch)
        out.problems.extend(p for p in scratch if not _VOLTAGE_KEYS & set(map(str, p.loc)))
        return out
    site = _assemble(data, items, voltage, out.problems)
    if out.top is not None and out.top.battery is not None and site.nodes:
        _check_battery_meter(site, out.problems)
    if not out.problems and out.top is not None:
        out.site = site
    return out


def _check_battery(top: SiteFileModel, problems: list[Problem]) -> None:
    """The device (``battery:``) and its model (``planner.battery_*``) come together: a battery
    is driven from the plan, and the plan needs its size and limits."""
    if top.battery is None:
        return
    if top.planner.battery_capacity_kwh is None:
        problems.append(Problem(
            loc=("battery",), message="a battery to drive needs its size and power limits, "
            "which the planner plans with",
            hint="set planner.battery_capacity_kwh, battery_max_charge_kw and "
            "battery_max_discharge_kw (and planner.enabled: true)"))
    elif not top.planner.enabled and top.policy.name != "planned":
        problems.append(Problem(
            loc=("battery",), message="a battery is driven from the plan, and no planner runs",
            hint="set planner.enabled: true, or remove the battery: section"))


def _check_battery_meter(site: Site, problems: list[Problem]) -> None:
    """A driven battery sits behind the root meter: without one its charge would be invisible
    to the controller and its discharge could not be counted back (it would only idle)."""
    if not any(m.node_id == site.root.id for m in site.meters):
        problems.append(Problem(
            loc=("battery",), message=f"a battery sits behind the root meter, and the root "
            f"({site.root.id}) has none: its charge could not be seen by the controller",
            hint=f"add a meter on node {site.root.id} under meters:"))


def _voltage_or_none(value: Any) -> VoltageSystem | None:
    try:
        return VoltageSystem(str(value) if value is not None else "230/400")
    except ValueError:
        return None


def _validate_items(data: Mapping[str, Any], problems: list[Problem]) -> _Items:
    items = _Items()
    for key, model in ITEM_MODELS.items():
        raw = data.get(key)
        if not isinstance(raw, list):
            continue  # missing or wrong type: already reported by SiteFileModel
        for i, item in enumerate(raw):
            try:
                valid: BaseModel | None = model.model_validate(item)
            except ValidationError as exc:
                problems.extend(from_validation_error(exc, model, (key, i)))
                valid = _without_bad_keys(model, item, exc)
            if valid is not None:
                getattr(items, key).append((i, valid))
    return items


def _without_bad_keys(model: type[BaseModel], item: Any, exc: ValidationError) -> BaseModel | None:
    """The item validated without the keys already reported, so that the checks of relations
    still see it: one misspelt key must not make every charger under that node 'unknown'."""
    if not isinstance(item, Mapping):
        return None
    bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
    try:
        return model.model_validate({k: v for k, v in item.items() if k not in bad})
    except ValidationError:
        return None


def _assemble(data: Mapping[str, Any], items: _Items, voltage: VoltageSystem,
              problems: list[Problem]) -> Site:
    nodes = _build_nodes(items.nodes, voltage, problems)
    node_ids = {m.id for _, m in items.nodes}
    chargers = _build_chargers(items.chargers, voltage, node_ids, problems)
    built = _build_meters(items.meters, voltage, node_ids, problems)
    meters = tuple(m for i, m in built if items.meters[i][1].role == "total")
    pv_meters = tuple(m for i, m in built if items.meters[i][1].role == "pv")
    loads = _build_loads(items.loads, voltage, node_ids, problems)
    freq = data.get("frequency_hz")
    name = data.get("site", "site")
    return Site(
        name=str(name),
        voltage=voltage,
        nodes=nodes,
        chargers=chargers,
        meters=meters,
        pv_meters=pv_meters,
        loads=loads,
        frequency_hz=float(freq) if isinstance(freq, int | float) else
        (60.0 if voltage in _US else 50.0),
    )


def _build_nodes(items: list[tuple[int, NodeModel]], voltage: VoltageSystem,
                 problems: list[Problem]) -> tuple[CircuitNode, ...]:
    _checks.check_node_ids(items, problems)
    order = _checks.check_tree(items, problems)
    by_id: dict[str, tuple[int, NodeModel]] = {}
    for i, m in items:
        by_id.setdefault(m.id, (i, m))  # a duplicate is reported; the first one counts
    built: dict[str, CircuitNode] = {}
    for node_id in order:
        i, m = by_id[node_id]
        built[node_id] = _node(i, m, voltage, problems)
    _checks.check_node_limits(built, {k: v[0] for k, v in by_id.items()}, problems)
    return tuple(built[n] for n in order)


def _node(i: int, m: NodeModel, voltage: VoltageSystem, problems: list[Problem]) -> CircuitNode:
    loc = ("nodes", i)
    limits = _checks.per_line(m.limit_a, voltage, (*loc, "limit_a"), problems)
    power_w = _checks.watts(m.max_power_w, m.max_power_kw, loc, problems)
    kind = m.kind or (NodeKind.TRANSFORMER if m.primary else
                      NodeKind.SERVICE if m.parent is None else NodeKind.SUBPANEL)
    primary = None
    if m.primary is not None:
        if kind is not NodeKind.TRANSFORMER:
            problems.append(Problem(loc=(*loc, "primary"),
                                    message=f"'primary' is only for transformers, not a {kind}",
                                    hint="set 'kind: transformer' or remove 'primary'"))
        primary = TransformerPrimary(winding=m.primary.winding, winding_ratio=m.primary.ratio,
                                     line_limit_a=m.primary.limit_a)
    finite = [x for x in limits if math.isfinite(x)]
    if finite and m.margin_a >= min(finite):
        problems.append(Problem(loc=(*loc, "margin_a"),
                                message=f"margin {m.margin_a} A leaves no headroom under the "
                                        f"{min(finite)} A limit",
                                hint="a margin is a few amperes below the limit (e.g. 2-5 A)"))
    return CircuitNode(id=m.id, kind=kind, parent_id=m.parent, line_limit_a=limits,
                       max_power_w=power_w, max_line_sum_a=m.max_line_sum_a,
                       margin_a=m.margin_a, primary=primary, name=m.name)


def default_connection(voltage: VoltageSystem) -> Connection:
    """What a charger is wired as when the file does not say (the usual install)."""
    if voltage is VoltageSystem.EU_230:
        return Connection.L1
    if voltage in (VoltageSystem.US_120_240, VoltageSystem.US_120_208):
        return Connection.L1_L2
    return Connection.THREE_PHASE


def _charger_ids(i: int, m: ChargerModel, problems: list[Problem]) -> list[str]:
    loc = ("chargers", i, "id")
    if m.count is None:
        ids = [m.id]
    elif "{n" not in m.id:
        problems.append(Problem(loc=loc, message=f"with 'count', the id needs a {{n}} "
                                f"placeholder, got '{m.id}'", hint="e.g. id: garage-{n:02d}"))
        return []
    else:
        try:
            ids = [m.id.format(n=n) for n in range(m.start, m.start + m.count)]
        except (KeyError, IndexError, ValueError) as exc:
            problems.append(Problem(loc=loc, message=f"bad id template '{m.id}': {exc}",
                                    hint="only {n} may be used, e.g. id: garage-{n:02d}"))
            return []
    bad = [x for x in ids if not re.match(ID_PATTERN, x)]
    if bad:
        problems.append(Problem(loc=loc, message=f"invalid charger id '{bad[0]}'",
                                hint="use letters, digits and - _ . : / (no spaces)"))
        return []
    return ids


def _build_chargers(items: list[tuple[int, ChargerModel]], voltage: VoltageSystem,
                    node_ids: set[str], problems: list[Problem]) -> tuple[Charger, ...]:
    out: list[Charger] = []
    seen: dict[str, int] = {}
    for i, m in items:
        loc = ("chargers", i)
        _checks.check_ref(m.node, node_ids, (*loc, "node"), problems)
        _checks.check_charger_currents(m, loc, problems)
        conn = m.connection or default_connection(voltage)
        _checks.check_phase_switching(m, conn, loc, problems)
        power_w = _checks.watts(m.max_power_w, m.max_power_kw, loc, problems)
        if m.rotation == "cycle" and m.count is None:
            problems.append(Problem(loc=(*loc, "rotation"), message="'cycle' needs 'count'",
                                    hint="name one rotation such as L2L3L1"))
        rotations: set[PhaseRotation] = set()
        for k, cid in enumerate(_charger_ids(i, m, problems)):
            rot = _CYCLE[k % 3] if m.rotation == "cycle" else PhaseRotation(m.rotation)
            rotations.add(rot)
            _checks.check_unique(cid, i, seen, ("chargers", i, "id"), what="charger",
                                 problems=problems)
            out.append(Charger(
                id=cid, node_id=m.node, connection=conn, min_current_a=m.min_a,
                max_current_a=m.max_a, connectors=m.connectors, phase_rotation=rot,
                can_switch_phases=m.switch_phases, limit_unit=m.limit_unit,
                resolution_a=m.resolution_a, zero_pauses=m.zero_pauses, max_power_w=power_w,
                allowed_currents_a=tuple(sorted(m.allowed_a)), protocol=m.protocol,
                is_dc=m.dc, name=m.name))
        _checks.check_charger_connection(conn, rotations, voltage, loc, problems)
    return tuple(out)


def _build_meters(items: list[tuple[int, MeterModel]], voltage: VoltageSystem,
                  node_ids: set[str], problems: list[Problem]) -> list[tuple[int, MeterSpec]]:
    """``(index into items, spec)`` of every meter, PV meters included (the caller sorts them
    by role)."""
    out: list[tuple[int, MeterSpec]] = []
    seen: dict[str, int] = {}
    for k, (i, m) in enumerate(items):
        loc = ("meters", i)
        _checks.check_ref(m.node, node_ids, (*loc, "node"), problems)
        _checks.check_unique(m.id, i, seen, (*loc, "id"), what="meter", problems=problems)
        if m.role == "pv":
            _check_pv_meter(m, loc, problems)
        fallback = None
        if m.fallback_a is not None:
            # Lines the site lacks (or the file leaves out) carry nothing: 0, not infinity.
            per = _checks.per_line(m.fallback_a, voltage, (*loc, "fallback_a"), problems)
            fallback = (_finite(per[0]), _finite(per[1]), _finite(per[2]))
        provided = provided_measurands(m.driver)
        missing = [x.value for x in m.measures if provided is not None and x.value not in provided]
        if missing:
            wanted = ", ".join(q for x in missing for q in MEASURAND_QUANTITIES[x])
            problems.append(Problem(
                loc=(*loc, "measures"), message=f"measures {', '.join(missing)}, but the "
                f"{m.driver.type} driver reads no {wanted}",
                hint="add them to the driver (topics: / registers:) or take them out of "
                "measures (default: [current])" + ("; the controller limits current per line, "
                "so a meter without current_l1.. is counted at its fallback_a all the time"
                if "current" in missing else "")))
        params = m.driver.model_dump(mode="json", exclude={"type"})
        out.append((k, MeterSpec(
            id=m.id, node_id=m.node, measures=frozenset(m.measures), driver=m.driver.type,
            params=MappingProxyType(params), timeout_s=m.timeout_s, fallback_line_a=fallback,
            includes_ev_load=m.includes_ev_load, poll_interval_s=m.poll_s)))
    return out


def _check_pv_meter(m: MeterModel, loc: tuple[str | int, ...], problems: list[Problem]) -> None:
    """A PV meter is never a node's total, so the keys that describe a total are refused
    rather than ignored: a file that sets them expects something this meter will not do."""
    if m.fallback_a is not None:
        problems.append(Problem(
            loc=(*loc, "fallback_a"), message="a PV meter (role: pv) has no fallback: the "
            "controller never counts on it, a lost PV meter only makes the planner assume no PV",
            hint="remove fallback_a, or set role: total if this meter measures the node's total"))
    if not m.includes_ev_load:
        problems.append(Problem(
            loc=(*loc, "includes_ev_load"), message="includes_ev_load describes a node's total "
            "meter; a PV meter (role: pv) measures the array's output only",
            hint="remove includes_ev_load"))


def _finite(x: float) -> float:
    return 0.0 if math.isinf(x) else x


def _build_loads(items: list[tuple[int, LoadModel]], voltage: VoltageSystem,
                 node_ids: set[str], problems: list[Problem]) -> tuple[Load, ...]:
    out: list[Load] = []
    seen: dict[str, int] = {}
    for i, m in items:
        loc = ("loads", i)
        _checks.check_ref(m.node, node_ids, (*loc, "node"), problems)
        _checks.check_unique(m.id, i, seen, (*loc, "id"), what="load", problems=problems)
        load = Load(id=m.id, node_id=m.node, connection=m.connection or
                    default_connection(voltage), max_current_a=m.max_a, name=m.name)
        _checks.check_charger_connection(load.connection, {PhaseRotation.L1L2L3}, voltage,
                                         loc, problems)
        out.append(load)
    return tuple(out)
