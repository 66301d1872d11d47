"""The site file: what a valid file becomes, defaults, shorthands, and how problems are named."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import ampshare.config
from ampshare.config import (
    SiteConfig,
    dump_site,
    load_config,
    load_site,
    parse_config,
    parse_site,
)
from ampshare.core.site import (
    Connection,
    LimitUnit,
    Measurand,
    NodeKind,
    PhaseRotation,
    PrimaryWinding,
    VoltageSystem,
)
from ampshare.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
INF = math.inf


def _issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_site(text, name="t.yaml")
    return [str(i) for i in info.value.issues]


def test_public_api_is_pinned() -> None:
    assert sorted(ampshare.config.__all__) == [
        "SiteConfig", "default_connection", "dump_site", "load_config", "load_site",
        "parse_config", "parse_site",
    ]


def test_home_example() -> None:
    site = load_site(ROOT / "examples" / "home.yaml")
    assert site.voltage is VoltageSystem.EU_230
    assert site.frequency_hz == 50.0
    (main,) = site.nodes
    assert (main.kind, main.parent_id, main.line_limit_a, main.margin_a) == \
        (NodeKind.SERVICE, None, (100.0, INF, INF), 5.0)
    assert [(c.id, c.connection, c.max_current_a, c.min_current_a) for c in site.chargers] == [
        ("garage-left", Connection.L1, 32.0, 6.0), ("garage-right", Connection.L1, 32.0, 6.0)]
    (load,) = site.loads
    assert (load.id, load.node_id, load.max_current_a) == ("heat-pump", "main", 16.0)
    (meter,) = site.meters
    assert meter.driver == "p1"
    assert meter.params["serial_port"] == "/dev/ttyUSB0"
    assert meter.measures == frozenset({Measurand.CURRENT_PER_LINE, Measurand.POWER_TOTAL})
    assert meter.timeout_s == 15.0


def test_a_minimal_home_needs_few_lines() -> None:
    site = parse_site("voltage: '230'\nnodes: [{id: main, limit_a: 40}]\n"
                      "chargers: [{id: wallbox, node: main}]\n")
    assert site.name == "site"
    assert site.chargers[0].connection is Connection.L1
    assert site.chargers[0].max_current_a == 16.0


@pytest.mark.parametrize(("voltage", "conn", "freq"), [
    ("230/400", Connection.THREE_PHASE, 50.0), ("230", Connection.L1, 50.0),
    ("120/240", Connection.L1_L2, 60.0), ("120/208", Connection.L1_L2, 60.0),
    ("277/480", Connection.THREE_PHASE, 60.0),
])
def test_defaults_follow_the_voltage_system(voltage: str, conn: Connection, freq: float) -> None:
    site = parse_site({"voltage": voltage, "nodes": [{"id": "m"}],
                       "chargers": [{"id": "c", "node": "m"}]})
    assert site.chargers[0].connection is conn
    assert site.frequency_hz == freq


@pytest.mark.parametrize(("limit", "expected"), [
    (63, (63.0, 63.0, 63.0)),
    ([63, 50, 40], (63.0, 50.0, 40.0)),
    ({"L1": 63, "L3": 40}, (63.0, INF, 40.0)),
    (None, (INF, INF, INF)),
])
def test_limit_forms(limit: object, expected: tuple[float, float, float]) -> None:
    node: dict[str, object] = {"id": "m"}
    if limit is not None:
        node["limit_a"] = limit
    site = parse_site({"nodes": [node]})
    assert site.root.line_limit_a == expected


def test_count_template_and_rotation_cycle() -> None:
    site = parse_site({"nodes": [{"id": "m", "limit_a": 400}], "chargers": [
        {"id": "g-{n:02d}", "count": 4, "start": 9, "node": "m", "connection": "L1",
         "rotation": "cycle"}]})
    assert [c.id for c in site.chargers] == ["g-09", "g-10", "g-11", "g-12"]
    assert [c.phase_rotation for c in site.chargers] == [
        PhaseRotation.L1L2L3, PhaseRotation.L2L3L1, PhaseRotation.L3L1L2, PhaseRotation.L1L2L3]
    assert [c.site_lines()[0].value for c in site.chargers] == ["L1", "L2", "L3", "L1"]


def test_transformer_primary_power_and_units() -> None:
    site = parse_site({"voltage": "120/208", "nodes": [
        {"id": "svc", "limit_a": 400, "max_power_kw": 250},
        {"id": "tx", "parent": "svc", "limit_a": 416.7,
         "primary": {"winding": "delta", "ratio": 4, "limit_a": 180.5}}],
        "chargers": [{"id": "c", "node": "tx", "max_power_kw": 7.4, "limit_unit": "W",
                      "dc": True, "connection": "3p"}]})
    svc, tx = site.nodes
    assert svc.max_power_w == 250_000.0
    assert tx.kind is NodeKind.TRANSFORMER  # inferred from 'primary'
    assert tx.primary is not None
    assert (tx.primary.winding, tx.primary.winding_ratio, tx.primary.line_limit_a) == \
        (PrimaryWinding.DELTA, 4.0, 180.5)
    c = site.chargers[0]
    assert (c.max_power_w, c.limit_unit, c.is_dc) == (7400.0, LimitUnit.WATT, True)


def test_secondary_amperes_are_not_compared_with_the_parent_but_the_primary_is() -> None:
    base = {"voltage": "120/208", "nodes": [
        {"id": "svc", "limit_a": 100},
        {"id": "tx", "parent": "svc", "limit_a": 400,
         "primary": {"ratio": 4, "limit_a": 90}}]}
    assert parse_site(base).node("tx").line_limit_a[0] == 400.0
    base["nodes"][1]["primary"]["limit_a"] = 150  # type: ignore[index]
    with pytest.raises(ConfigError) as info:
        parse_site(base)
    (issue,) = info.value.issues
    assert issue.path == "nodes[1].primary"
    assert "above the 100 A of 'svc'" in issue.message


def test_nodes_come_parent_first_whatever_the_file_order() -> None:
    site = parse_site({"nodes": [{"id": "leaf", "parent": "mid", "limit_a": 16},
                                 {"id": "mid", "parent": "root", "limit_a": 32},
                                 {"id": "root", "limit_a": 63}]})
    assert [n.id for n in site.nodes] == ["root", "mid", "leaf"]
    assert site.ancestors("leaf") == ("leaf", "mid", "root")


def test_sections_are_part_of_the_config() -> None:
    cfg = parse_config("nodes: [{id: m}]\npolicy: {name: fcfs}\ncontrol: {max_period_s: 2}\n",
                       name="x.yaml")
    assert isinstance(cfg, SiteConfig)
    assert (cfg.policy.name, cfg.control.max_period_s, cfg.source) == ("fcfs", 2.0, "x.yaml")
    assert cfg.web.port == 8080
    assert load_config(ROOT / "examples" / "home.yaml").source.endswith("home.yaml")


def test_mapping_input_reports_paths_without_lines() -> None:
    with pytest.raises(ConfigError) as info:
        parse_site({"nodes": [{"id": "m", "limit": 3}]}, name="scenario.yaml#site")
    (issue,) = info.value.issues
    assert (issue.file, issue.path, issue.line) == ("scenario.yaml#site", "nodes[0].limit", None)
    assert issue.hint == "did you mean 'limit_a'?"


def test_yaml_syntax_error_names_the_line() -> None:
    (issue,) = _issues("nodes:\n  - id: m\n    limit_a: [1, 2\n")
    assert issue.startswith("t.yaml:4: <root>: YAML syntax error")


def test_empty_and_non_mapping_files() -> None:
    assert _issues("") == ["t.yaml:1: <root>: the file is empty (start with 'site: <name>' "
                           "and 'nodes:')"]
    assert "the file must be a mapping" in _issues("- a\n- b\n")[0]


def test_missing_nodes_and_bad_voltage() -> None:
    issues = _issues("site: x\nvoltage: 240\n")
    assert any("voltage" in i and "'230/400'" in i for i in issues)
    assert any(i.startswith("t.yaml:1: nodes: required key is missing") for i in issues)


def test_load_site_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_site(tmp_path / "nope.yaml")
    assert "file not found" in str(info.value)


def test_problems_in_items_do_not_hide_each_other() -> None:
    issues = _issues(
        "voltage: '230'\n"
        "nodes:\n"
        "  - {id: main, limt_a: 63}\n"
        "chargers:\n"
        "  - {id: a, node: main, connection: L1-L2}\n"
        "  - {id: b, node: main, min_a: 10, max_a: 8, allowed_a: [16]}\n"
        "  - {id: c d, node: main}\n")
    paths = [i.split(": ")[1] for i in issues]
    assert paths == ["nodes[0].limt_a", "chargers[0].connection", "chargers[1].allowed_a",
                     "chargers[1].min_a", "chargers[2].id"]


def test_template_problems() -> None:
    issues = _issues("nodes: [{id: m}]\nchargers:\n  - {id: same, count: 3, node: m}\n"
                     "  - {id: x, rotation: cycle, node: m}\n")
    assert any("chargers[0].id: with 'count', the id needs a {n}" in i for i in issues)
    assert any("chargers[1].rotation: 'cycle' needs 'count'" in i for i in issues)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_dump_round_trips_every_example(path: Path) -> None:
    site = load_site(path)
    assert parse_site(dump_site(site)) == site


def test_an_embedded_ruamel_mapping_keeps_the_outer_files_lines() -> None:
    # Scenario files embed a site; passing their ruamel node (not a plain dict) keeps lines.
    from ruamel.yaml import YAML

    outer = YAML().load("name: s\nduration_s: 10\nsite:\n  nodes:\n    - {id: m, limt_a: 3}\n")
    with pytest.raises(ConfigError) as info:
        parse_site(outer["site"], name="scenario.yaml")
    (issue,) = info.value.issues
    assert (issue.path, issue.line) == ("nodes[0].limt_a", 5)


def test_yaml_tags_are_refused_with_their_line() -> None:
    (issue,) = _issues("site: x\nnodes: [{id: m}]\nchargers: [{id: c, node: m, max_a: !amps 3}]\n")
    assert issue.startswith("t.yaml:3: <root>: YAML value not allowed here")


def test_the_documented_home_fits_in_15_lines() -> None:
    import re

    text = (ROOT / "docs" / "site-file.md").read_text(encoding="utf-8")
    match = re.search(r"## A home in 15 lines\n\n```yaml\n(.*?)```", text, re.S)
    assert match is not None
    block = match[1]
    assert len(block.strip().splitlines()) <= 15
    site = parse_site(block, name="site-file.md")
    assert [c.id for c in site.chargers] == ["garage-left", "garage-right"]
    assert [(x.id, x.max_current_a) for x in site.loads] == [("heat-pump", 16.0)]
    assert site.meters[0].driver == "p1"


def test_yaml_1_2_that_libyaml_refuses_still_loads() -> None:
    # A ':' inside a plain scalar of a flow mapping is YAML 1.2 (Shelly topics end in
    # "status/em:0"); the fast C parser refuses it, the file is still valid.
    site = parse_site("nodes: [{id: main}]\nmeters:\n  - {id: shelly, node: main, driver: "
                      "{type: mqtt, topics: {current_l1: shellypro3em-abc/status/em:0}}}\n")
    assert site.meters[0].params["topics"] == {"current_l1": "shellypro3em-abc/status/em:0"}


def test_the_readme_meters_example_is_a_valid_site_file() -> None:
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"\*\*Site file\*\* \(`meters\[\]\.driver`.*?```yaml\n(.*?)```", readme,
                      re.S)
    assert match is not None
    text = "nodes: [{id: main, limit_a: 63}, {id: garage, parent: main, limit_a: 32}]\n"
    site = parse_site(text + match[1], name="README.md")
    assert [(m.id, m.driver) for m in site.meters] == [
        ("house", "modbus"), ("shelly", "mqtt"), ("p1", "p1")]


def test_a_wrong_voltage_does_not_hide_the_other_mistakes() -> None:
    issues = _issues("voltage: 240\nnodes:\n  - {id: main, limit_a: [100, 100]}\n"
                     "chargers:\n  - {id: a, node: mian, connection: L1-L2}\n"
                     "  - {id: a, node: main, min_a: 20, max_a: 10}\n")
    paths = [i.split(": ")[1] for i in issues]
    # limit_a and connection need the lines of the site, so they wait for a valid voltage.
    assert paths == ["voltage", "chargers[0].node", "chargers[1].id", "chargers[1].min_a"]
