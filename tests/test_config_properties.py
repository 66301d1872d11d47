"""Property tests over generated site files.

Valid trees: parse -> dump -> parse (as a mapping and as YAML text) gives an equal ``Site``.
Invalid mutations of valid trees: each is reported as a ``ConfigError`` issue at the mutated
key path, with a line number when the input was YAML text; never any other exception.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ampshare.cli.import_acn import site_yaml
from ampshare.config import dump_site, parse_site
from ampshare.core.site import Connection, PhaseRotation, Site, VoltageSystem
from ampshare.errors import ConfigError

CAP = 10_000
INF = math.inf
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _valid_wiring(v: VoltageSystem) -> list[tuple[str, str]]:
    out = []
    for conn in Connection:
        for rot in PhaseRotation:
            lines = {rot.site_line(t) for t in conn.terminals}
            if not lines <= set(v.lines):
                continue
            if conn.is_line_to_line and not v.is_polyphase:
                continue
            if conn is Connection.THREE_PHASE and v is VoltageSystem.US_120_240:
                continue
            if not v.is_polyphase and rot is not PhaseRotation.L1L2L3:
                continue
            out.append((conn.value, rot.value))
    return out


@st.composite
def _limit(draw: st.DrawFn, v: VoltageSystem, cap: list[float]) -> tuple[Any, list[float]]:
    """A limit under ``cap`` in one of the three forms; returns it and the per-line limits."""
    idx = [line.index for line in v.lines]
    form = draw(st.sampled_from(["scalar", "list", "map"]))
    if form == "scalar":
        top = int(min(cap[i] for i in idx))
        x = draw(st.integers(2, max(2, top)))
        per = [x if i in idx else float("inf") for i in range(3)]
        return x, per
    values = {i: draw(st.integers(2, max(2, int(cap[i])))) for i in idx}
    if form == "list":
        return [values[i] for i in idx], [values.get(i, float("inf")) for i in range(3)]
    keep = draw(st.lists(st.sampled_from(idx), min_size=1, unique=True))
    return ({f"L{i + 1}": values[i] for i in keep},
            [values[i] if i in keep else float("inf") for i in range(3)])


@st.composite
def _nodes(draw: st.DrawFn, v: VoltageSystem) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    caps: list[list[float]] = []
    for i in range(draw(st.integers(1, 6))):
        parent = None if i == 0 else draw(st.integers(0, i - 1))
        cap = [float(CAP)] * 3 if parent is None else caps[parent]
        node: dict[str, Any] = {"id": f"n{i}"}
        if parent is not None:
            node["parent"] = f"n{parent}"
            node["kind"] = draw(st.sampled_from(["subpanel", "group", "contract"]))
        own = [float("inf")] * 3
        if draw(st.booleans()) and min(cap) >= 2:
            node["limit_a"], own = draw(_limit(v, cap))
            finite = min(own)
            if draw(st.booleans()) and finite > 1:
                node["margin_a"] = draw(st.integers(0, int(finite) - 1))
        if draw(st.booleans()):
            node["max_power_kw"] = draw(st.integers(1, 5000))
        if draw(st.booleans()):
            node["name"] = draw(st.text("abc xyz-", min_size=1, max_size=8))
        caps.append([min(a, b) for a, b in zip(own, cap, strict=True)])
        nodes.append(node)
    return nodes


@st.composite
def _charger(draw: st.DrawFn, i: int, v: VoltageSystem, node_ids: list[str]) -> dict[str, Any]:
    conn, rot = draw(st.sampled_from(_valid_wiring(v)))
    lo = draw(st.integers(0, 16))
    hi = lo + draw(st.integers(1, 48))
    c: dict[str, Any] = {"id": f"c{i}", "node": draw(st.sampled_from(node_ids)),
                         "connection": conn, "min_a": lo, "max_a": hi}
    if rot != "L1L2L3":
        c["rotation"] = rot
    if draw(st.booleans()):
        c["id"], c["count"] = f"c{i}-{{n}}", draw(st.integers(1, 3))
    if draw(st.booleans()):
        c["allowed_a"] = draw(st.lists(st.integers(max(lo, 1), hi), min_size=1, max_size=4,
                                       unique=True))
    opts = {"resolution_a": st.sampled_from([0.1, 1.0]), "zero_pauses": st.booleans(),
            "protocol": st.sampled_from(["ocpp1.6", "ocpp2.0.1", "sim"]), "dc": st.booleans(),
            "limit_unit": st.sampled_from(["A", "W"]),
            "max_power_kw": st.integers(1, 350), "connectors": st.integers(1, 2)}
    if conn == "3p":  # only a three-phase charger can switch to one phase
        opts["switch_phases"] = st.booleans()
    for key in draw(st.lists(st.sampled_from(sorted(opts)), unique=True, max_size=4)):
        c[key] = draw(opts[key])
    return c


@st.composite
def site_files(draw: st.DrawFn) -> dict[str, Any]:
    v = draw(st.sampled_from(list(VoltageSystem)))
    nodes = draw(_nodes(v))
    ids = [n["id"] for n in nodes]
    out: dict[str, Any] = {"site": "generated", "voltage": v.value, "nodes": nodes}
    out["chargers"] = [draw(_charger(i, v, ids)) for i in range(draw(st.integers(0, 6)))]
    out["meters"] = [
        {"id": f"m{i}", "node": draw(st.sampled_from(ids)),
         "measures": draw(st.lists(st.sampled_from(["current", "power", "energy"]),
                                   min_size=1, unique=True)),
         "driver": draw(st.sampled_from([{"type": "sim"},
                                         {"type": "modbus", "model": "sdm630",
                                          "host": "10.0.0.2"}])),
         "timeout_s": draw(st.integers(1, 60)), "fallback_a": draw(st.integers(1, 500))}
        for i in range(draw(st.integers(0, 2)))]
    wiring = [w for w in _valid_wiring(v) if w[1] == "L1L2L3"]
    out["loads"] = [{"id": f"l{i}", "node": draw(st.sampled_from(ids)),
                     "connection": draw(st.sampled_from(wiring))[0],
                     "max_a": draw(st.integers(1, 100))}
                    for i in range(draw(st.integers(0, 2)))]
    return out


def _per_line(limit: Any, v: VoltageSystem) -> tuple[float, ...]:
    """What a limit as written means per line L1..L3 (inf: no limit, or no such line)."""
    out = [INF, INF, INF]
    if isinstance(limit, int | float):
        for line in v.lines:
            out[line.index] = float(limit)
    elif isinstance(limit, list):
        for line, amps in zip(v.lines, limit, strict=True):
            out[line.index] = float(amps)
    elif isinstance(limit, dict):
        for name, amps in limit.items():
            out[int(name[1]) - 1] = float(amps)
    return tuple(out)


def _expanded_chargers(data: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
    """(id, the charger's entry, position in its row) for every charger the file declares."""
    out = []
    for c in data["chargers"]:
        for k in range(c.get("count", 1)):
            out.append((c["id"].format(n=1 + k) if "count" in c else c["id"], c, k))
    return out


def _assert_site_says_what_the_file_says(site: Site, data: dict[str, Any]) -> None:
    v = VoltageSystem(data["voltage"])
    assert site.voltage is v
    by_id = {n.id: n for n in site.nodes}
    assert sorted(by_id) == sorted(n["id"] for n in data["nodes"])
    seen: set[str] = set()
    for node in site.nodes:  # parents come first, so every walk up the tree is possible
        assert node.parent_id is None or node.parent_id in seen
        seen.add(node.id)
    for n in data["nodes"]:
        node = by_id[n["id"]]
        assert node.parent_id == n.get("parent")
        assert node.line_limit_a == _per_line(n.get("limit_a"), v)
        assert node.margin_a == n.get("margin_a", 0)
        assert node.max_power_w == (n["max_power_kw"] * 1000 if "max_power_kw" in n else None)
        # A limited line never exceeds the nearest limited node above it.
        for k in range(3):
            above = node.parent_id
            while above is not None and math.isinf(by_id[above].line_limit_a[k]):
                above = by_id[above].parent_id
            if above is not None and math.isfinite(node.line_limit_a[k]):
                assert node.line_limit_a[k] <= by_id[above].line_limit_a[k]
    expected = _expanded_chargers(data)
    assert [c.id for c in site.chargers] == [cid for cid, _, _ in expected]
    for charger, (_, c, _) in zip(site.chargers, expected, strict=True):
        assert (charger.node_id, charger.connection.value) == (c["node"], c["connection"])
        assert charger.phase_rotation.value == c.get("rotation", "L1L2L3")
        assert (charger.min_current_a, charger.max_current_a) == (c["min_a"], c["max_a"])
        assert set(charger.site_lines()) <= set(v.lines)
        assert charger.allowed_currents_a == tuple(sorted(c.get("allowed_a", ())))
        assert charger.can_switch_phases == c.get("switch_phases", False)
        assert charger.resolution_a == c.get("resolution_a", 0.1)
        assert charger.zero_pauses == c.get("zero_pauses", True)
    assert [(m.id, m.node_id, m.timeout_s) for m in site.meters] == \
        [(m["id"], m["node"], m["timeout_s"]) for m in data["meters"]]
    assert [(x.id, x.node_id, x.max_current_a) for x in site.loads] == \
        [(x["id"], x["node"], x["max_a"]) for x in data["loads"]]


@SETTINGS
@given(site_files())
def test_valid_trees_round_trip(data: dict[str, Any]) -> None:
    site = parse_site(data)
    _assert_site_says_what_the_file_says(site, data)
    assert parse_site(dump_site(site)) == site
    assert parse_site(site_yaml(dump_site(site)), name="dumped.yaml") == site


def _mutations(data: dict[str, Any]) -> list[str]:
    names = ["misspelt_key", "negative_limit", "duplicate_node", "child_above_parent",
             "unknown_top_key", "limit_not_a_number", "cycle"]
    if data["chargers"]:
        names += ["unknown_node", "min_above_max", "bad_rotation"]
        if any(c["connection"] != "3p" for c in data["chargers"]):
            names.append("switch_phases_not_3p")
        if data["voltage"] == "230":
            names.append("line_to_line_on_1p")
    return names


def _mutate(data: dict[str, Any], how: str, pick: int) -> str:
    """Apply mutation ``how``; return the key path that must be reported."""
    nodes, chargers = data["nodes"], data["chargers"]
    i, j = pick % len(nodes), pick % max(1, len(chargers))
    n = len(nodes)
    if how == "misspelt_key":
        nodes[i]["limt_a"] = 10
        return f"nodes[{i}].limt_a"
    if how == "negative_limit":
        nodes[i]["limit_a"] = -5
        return f"nodes[{i}].limit_a"
    if how == "limit_not_a_number":
        nodes[i]["limit_a"] = "lots"
        return f"nodes[{i}].limit_a"
    if how == "duplicate_node":
        nodes.append({"id": nodes[i]["id"], "parent": nodes[0]["id"]})
        return f"nodes[{n}].id"
    if how == "child_above_parent":
        nodes[0]["limit_a"] = 20
        nodes[0].pop("margin_a", None)
        nodes.append({"id": "big", "parent": nodes[0]["id"], "limit_a": 21})
        return f"nodes[{n}].limit_a"
    if how == "unknown_top_key":
        data["chargerz"] = []
        return "chargerz"
    if how == "cycle":
        nodes += [{"id": "x1", "parent": "x2"}, {"id": "x2", "parent": "x1"}]
        return f"nodes[{n}].parent"
    if how == "unknown_node":
        chargers[j]["node"] = "no-such-node"
        return f"chargers[{j}].node"
    if how == "min_above_max":
        chargers[j]["min_a"] = chargers[j]["max_a"] + 1
        return f"chargers[{j}].min_a"
    if how == "bad_rotation":
        chargers[j]["rotation"] = "L1L1L2"
        return f"chargers[{j}].rotation"
    if how == "switch_phases_not_3p":
        k = next(k for k, c in enumerate(chargers) if c["connection"] != "3p")
        chargers[k]["switch_phases"] = True
        return f"chargers[{k}].switch_phases"
    chargers[j]["connection"] = "L1-L2"
    return f"chargers[{j}].connection"


@SETTINGS
@given(site_files(), st.data())
def test_invalid_mutations_are_reported_at_their_key(data: dict[str, Any],
                                                     choice: st.DataObject) -> None:
    bad = copy.deepcopy(data)
    how = choice.draw(st.sampled_from(_mutations(bad)))
    path = _mutate(bad, how, choice.draw(st.integers(0, 100)))
    for source in (bad, site_yaml(bad)):
        with pytest.raises(ConfigError) as info:
            parse_site(source, name="mutated.yaml")
        issues = info.value.issues
        hits = [i for i in issues if i.path == path]
        assert hits, f"{how}: no issue at {path}: {[str(i) for i in issues]}"
        assert all(i.file == "mutated.yaml" for i in issues)
        if isinstance(source, str):
            assert hits[0].line is not None


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-20_000, 20_000),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))
_junk = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)
_keys = st.sampled_from(["id", "node", "parent", "limit_a", "connection", "rotation", "count",
                         "min_a", "max_a", "allowed_a", "driver", "fallback_a", "primary",
                         "kind", "margin_a", "measures", "max_power_kw", "voltage"])


@SETTINGS
@given(site_files(), st.data())
def test_junk_values_are_reported_never_raised(data: dict[str, Any],
                                               choice: st.DataObject) -> None:
    bad = copy.deepcopy(data)
    section = choice.draw(st.sampled_from(["nodes", "chargers", "meters", "loads", "top"]))
    items = bad.get(section) if section != "top" else None
    target = choice.draw(st.sampled_from(items)) if items else bad
    target[choice.draw(_keys)] = choice.draw(_junk)
    issues = _issues_of(bad)
    assert issues is None or (issues and all(i.message for i in issues))


def _issues_of(source: Any) -> tuple[Any, ...] | None:
    """None when ``source`` is a valid site, else the issues of its ``ConfigError``."""
    try:
        parse_site(source)
    except ConfigError as exc:
        return exc.issues
    return None
