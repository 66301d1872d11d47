"""Every scenario file in scenarios/ passes, with the safety figures the issue asks for; the
file format reports mistakes with file, key path and line; the CLI's exit codes and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ampshare.cli._app import _register, app
from ampshare.errors import ConfigError, InputError
from ampshare.scenario import evaluate, load_scenario, run_file, run_scenario

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "scenarios").glob("*.yaml"))
PHYSICS_BOUND_S = 1.0 + 3.0  # one meter sample + the EV reaction time of the scenarios


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario_passes_with_no_avoidable_excess(path: Path) -> None:
    sc = load_scenario(path)
    result = evaluate(sc, run_scenario(sc))
    assert result.passed, [c for c in result.checks if not c["passed"]]
    allowed = max(
        (
            e.never_above_limit.allow_excess_s
            for e in sc.decl.expect
            if e.never_above_limit is not None
        ),
        default=0.0,
    )
    assert any(e.never_above_limit is not None for e in sc.decl.expect)
    for node, lines in result.lines.items():
        for line, stats in lines.items():
            if allowed == 0:
                assert stats.amp_seconds_above == 0, (node, line, stats)
            else:  # physics: a step faster than any controller; bounded in time
                assert stats.longest_above_s <= PHYSICS_BOUND_S, (node, line, stats)


def test_failure_table_rows_and_must_show_scenarios_exist() -> None:
    names = {p.stem for p in FILES}
    assert {
        "meter-stale",
        "charger-offline",
        "charger-ignores-limit",
        "ev-draws-less",
        "controller-restart",
        "bad-input",
        "load-step-63a",
        "twenty-cars",
        "ev-leaves",
        "flapping-meter",
    } <= names


def test_twenty_arrivals_are_coalesced_into_few_steps() -> None:
    result = run_file(ROOT / "scenarios" / "twenty-cars.yaml")
    burst = [t for t in result.step_times_s if 5.0 <= t < 6.0]
    assert 1 <= len(burst) <= 6  # 20 arrivals, at most one step per min_interval_s


def test_load_step_excess_is_what_physics_forces_and_no_more() -> None:
    result = run_file(ROOT / "scenarios" / "load-step-63a.yaml")
    l1 = result.lines["main"]["L1"]
    assert l1.peak_a == pytest.approx(93.0, abs=0.2)  # 40 A building + the cars' 53 A
    assert 3.0 <= l1.longest_above_s <= PHYSICS_BOUND_S
    assert l1.seconds_above == pytest.approx(l1.longest_above_s)  # one episode only


def test_an_impossible_expectation_fails(tmp_path: Path) -> None:
    f = tmp_path / "strict.yaml"
    f.write_text(
        f"name: strict\nbase: {ROOT / 'scenarios' / 'load-step-63a.yaml'}\n"
        "expect:\n  - never_above_limit: {}\n"
        "  - limit_at_least: {charger: c1, limit_a: 30, at_s: 20}\n"
    )
    result = run_file(f)
    assert [c["passed"] for c in result.checks] == [False, False]
    assert "A·s above 63 A" in result.checks[0]["detail"]


def test_stop_and_limit_change_counts_fail_when_exceeded(tmp_path: Path) -> None:
    f = tmp_path / "churn.yaml"
    f.write_text(
        f"name: strict\nbase: {ROOT / 'scenarios' / 'rotation-full-line.yaml'}\n"
        "duration_s: 700\n"
        "expect:\n  - never_above_limit: {}\n"
        "  - stops_at_most: {stops: 0}\n"
        "  - stops_at_most: {stops: 0, chargers: [c1, c2]}\n"
        "  - limit_changes_at_most: {charger: c4, changes: 1, from_s: 5}\n"
        "  - limit_changes_at_most: {charger: c4, changes: 2, from_s: 5}\n"
        "  - limit_changes_at_most: {charger: nope, changes: 9}\n"
    )
    result = run_file(f)
    assert [c["passed"] for c in result.checks] == [True, False, True, False, True, False]
    assert "stopped more often: c3: 1, c4: 1" in result.checks[1]["detail"]
    assert "c4: 2 limit change(s) from 5 s" in result.checks[3]["detail"]


def test_invalid_file_names_every_mistake_with_path_and_line() -> None:
    with pytest.raises(ConfigError) as err:
        load_scenario(ROOT / "scenarios" / "invalid" / "bad-input.yaml")
    found = {(i.path, i.line) for i in err.value.issues}
    paths = {p for p, _ in found}
    assert "events[0]" in paths
    assert "events[1].at_s" in paths
    assert any(p.startswith("expect[") and p.endswith("limit") for p in paths)
    assert ("events[1].at_s", 6) in found
    assert all(
        str(i).startswith(str(ROOT / "scenarios" / "invalid" / "bad-input.yaml"))
        or "bad-input.yaml" in str(i)
        for i in err.value.issues
    )


def test_base_chain_merges_and_appends(tmp_path: Path) -> None:
    f = tmp_path / "more.yaml"
    f.write_text(
        f"name: more\nbase: {ROOT / 'scenarios' / 'ev-leaves.yaml'}\n"
        "duration_s: 60\nmore_events:\n  - {at_s: 50, ev_leaves: c2}\n"
    )
    sc = load_scenario(f)
    assert [e.action for e in sc.decl.events] == ["ev_leaves", "ev_leaves"]
    assert sc.decl.duration_s == 60
    assert sc.decl.building_a == {"main": 10}  # from the base's base
    assert sc.site.name == "Small office"


def test_unknown_charger_in_an_event_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "ghost.yaml"
    f.write_text(
        f"name: g\nbase: {ROOT / 'scenarios' / '_base.yaml'}\n"
        "events:\n  - {at_s: 5, charger_offline: nope}\n"
    )
    with pytest.raises(InputError, match=r"charger .nope.*chargers: c1, c2, c3"):
        run_file(f)


def test_cli_writes_json_and_sets_exit_codes(tmp_path: Path) -> None:
    _register()
    runner = CliRunner()
    out = tmp_path / "r.json"
    ok = runner.invoke(
        app, ["scenario", str(ROOT / "scenarios" / "ev-leaves.yaml"), "--json", str(out)]
    )
    assert ok.exit_code == 0, ok.output
    data = json.loads(out.read_text())
    assert data["passed"] is True
    assert set(data["nodes"]["main"]["L1"]) >= {"peak_a", "amp_seconds_above", "seconds_above"}
    assert data["chargers"]["c1"]["starts"] == 1
    assert data["chargers"]["c1"]["stops"] == 1  # it left at 40 s
    assert data["chargers"]["c2"]["energy_wh"] > data["chargers"]["c1"]["energy_wh"]
    bad = runner.invoke(app, ["scenario", str(ROOT / "scenarios" / "invalid" / "bad-input.yaml")])
    assert bad.exit_code == 2
    assert "events[1].at_s" in bad.output


def test_plot_is_written(tmp_path: Path) -> None:
    out = tmp_path / "run.png"
    result = run_file(ROOT / "scenarios" / "ev-arrives.yaml", plot=out)
    assert result.trace is not None
    assert len(result.trace.t_s) == len(result.trace.charger_draw_a["c3"])
    assert max(result.trace.charger_draw_a["c3"]) > 17.0  # the arriving car ends up charging
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_control_and_policy_overrides_are_named(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(
        f"name: b\nbase: {ROOT / 'scenarios' / '_base.yaml'}\n"
        "control: {deadband_a: -1, bogus: 2}\npolicy: {name: fastest}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_scenario(f)
    paths = {i.path for i in err.value.issues}
    assert {"control.deadband_a", "control.bogus"} <= paths
    g = tmp_path / "pol.yaml"
    g.write_text(f"name: b\nbase: {ROOT / 'scenarios' / '_base.yaml'}\npolicy: {{name: fastest}}\n")
    with pytest.raises(ConfigError, match=r"pol\.yaml:3: policy\.name: .*'equal'"):
        load_scenario(g)
