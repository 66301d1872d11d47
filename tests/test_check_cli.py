"""``ampshare check``: exit 0 and a tree on every example, exit 2 naming key and line on each
broken file under tests/broken/ (each file states what it expects in ``# expect:`` lines)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ampshare.cli._app import _register, app
from ampshare.config import load_site

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
BROKEN = sorted((ROOT / "tests" / "broken").glob("*.yaml"))
EXPECT = re.compile(r'^# expect: (?P<path>\S+) @ (?P<line>\d+) "(?P<text>[^"]+)"$', re.M)

_register()
runner = CliRunner()


def _check(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["check", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes(path: Path) -> None:
    code, out = _check(str(path))
    assert code == 0, out
    site = load_site(path)
    assert out.splitlines()[-1].startswith(f"OK: {len(site.nodes)} node(s), "
                                           f"{len(site.chargers)} charger(s)")
    for charger in site.chargers:
        assert f"charger {charger.id} " in out


def test_the_required_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"home.yaml", "apartment-garage.yaml", "workplace-caltech.yaml",
            "fleet-depot.yaml"} <= names


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.name)
def test_broken_file_exits_2_naming_key_and_line(path: Path) -> None:
    expected = list(EXPECT.finditer(path.read_text(encoding="utf-8")))
    assert expected, f"{path.name} has no '# expect:' line"
    code, out = _check(str(path))
    assert code == 2, out
    for exp in expected:
        prefix = f"{path}:{exp['line']}: {exp['path']}: "
        lines = [x for x in out.splitlines() if x.startswith(prefix)]
        assert lines, f"expected a line starting {prefix!r} in:\n{out}"
        assert exp["text"] in lines[0]
    assert f"{len(expected)} problem(s) found" in out


def test_json_prints_the_parsed_model() -> None:
    code, out = _check(str(ROOT / "examples" / "apartment-garage.yaml"), "--json")
    assert code == 0
    data = json.loads(out)
    assert len(data["chargers"]) == 40
    assert data["nodes"][0] == {"id": "service", "name": "Service entrance (main fuses 3x160 A)",
                                "kind": "service", "limit_a": 160.0, "margin_a": 5.0}
    assert [c["rotation"] for c in data["chargers"][1:3]] == ["L2L3L1", "L3L1L2"]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    code, out = _check(str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml: <root>: file not found" in out


def test_tree_shows_limits_rotation_and_primary() -> None:
    _, out = _check(str(ROOT / "examples" / "apartment-garage.yaml"))
    assert "service (service)  'Service entrance (main fuses 3x160 A)'  3x160 A  margin 5 A" in out
    assert "charger a-02  L1 via L2L3L1 -> site L2  6-32 A" in out
    _, out = _check(str(ROOT / "examples" / "workplace-caltech.yaml"))
    assert "primary delta 4:1, 180.505 A/line" in out
    assert "charger CA-322  L1-L2  {8, 16, 24, 32} A" in out


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "many.yaml"
    bad.write_text("site: x\nnodes:\n  - {id: main, limt_a: 10}\n  - {id: sub, parent: nope}\n"
                   "chargers:\n  - {id: c, node: main, min_a: 40, max_a: 16}\n", encoding="utf-8")
    code, out = _check(str(bad))
    assert code == 2
    assert f"{bad}:3: nodes[0].limt_a" in out
    assert f"{bad}:4: nodes[1].parent: no node 'nope'" in out
    assert f"{bad}:6: chargers[0].min_a" in out
    assert "3 problem(s) found" in out


def test_tree_shows_what_each_charger_accepts_and_how_meters_are_read(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "voltage: '230/400'\n"
        "nodes: [{id: main, limit_a: 63}]\n"
        "chargers:\n"
        "  - {id: w, node: main, limit_unit: W, resolution_a: 1, zero_pauses: false}\n"
        "  - {id: s, node: main, switch_phases: true, connectors: 2}\n"
        "meters:\n"
        "  - {id: m, node: main, fallback_a: 40, timeout_s: 5, poll_s: 2,\n"
        "     driver: {type: modbus, model: em24, host: 10.0.0.9, unit_id: 3}}\n",
        encoding="utf-8")
    code, out = _check(str(site))
    assert code == 0, out
    assert "charger w  3p  6-16 A  limits in W  1 A steps  no pause (never below 6 A)" in out
    assert "charger s  3p  6-16 A  ocpp1.6  2 connectors  1p/3p switching" in out
    assert ("meter m  modbus em24 10.0.0.9:502 unit 3  current  polled every 2 s, stale after "
            "5 s, then 3x40 A assumed") in out
