"""``ampshare simulate`` end to end on the tiny fixtures: JSON, trace, report, bad input."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ampshare.cli._app import _register, app
from ampshare.sim.metrics import METRIC_KEYS

FIX = Path(__file__).parent / "fixtures" / "sim"
_register()
runner = CliRunner()


def _base() -> list[str]:
    return [
        "simulate",
        "--site",
        str(FIX / "tiny-site.yaml"),
        "--sessions",
        str(FIX / "sessions-acn.csv"),
        "--building-load",
        str(FIX / "building.csv"),
        "--ev",
        "basic",
    ]


def test_json_trace_and_report(tmp_path: Path) -> None:
    out, trace, report = tmp_path / "m.json", tmp_path / "t.csv", tmp_path / "r.html"
    res = runner.invoke(
        app,
        [
            *_base(),
            "--policy",
            "greedy-clamp,uncontrolled",
            "--json",
            str(out),
            "--trace",
            str(trace),
            "--report",
            str(report),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert [r["policy"] for r in doc["runs"]] == ["greedy-clamp", "uncontrolled"]
    assert set(METRIC_KEYS) <= set(doc["runs"][0])
    assert doc["runs"][0]["violation_amp_seconds"] == 0.0
    assert doc["runs"][1]["violation_amp_seconds"] > 0.0
    assert trace.read_text().startswith("time_utc,t_s,dt_s,station_id,node_id,L1_a,L2_a,L3_a")
    page = report.read_text()
    assert page.count("data:image/png;base64,") >= 4
    assert "greedy-clamp" in page


def test_json_to_stdout_is_pure_json() -> None:
    res = runner.invoke(app, [*_base(), "--policy", "all-stop", "--json", "-"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["runs"][0]["sessions"] == 3


def test_bad_input_names_the_problem(tmp_path: Path) -> None:
    res = runner.invoke(app, [*_base(), "--policy", "fastest"])
    assert res.exit_code == 2
    assert "--policy fastest" in res.output
    res = runner.invoke(app, [*_base(), "--step", "soon"])
    assert res.exit_code == 2
    assert "--step 'soon'" in res.output
    bad = tmp_path / "s.csv"
    bad.write_text("arrival,departure\n")
    res = runner.invoke(
        app,
        [
            "simulate",
            "--site",
            str(FIX / "tiny-site.yaml"),
            "--sessions",
            str(bad),
            "--columns",
            "acn",
        ],
    )
    assert res.exit_code == 2
    assert "s.csv" in res.output


def test_summary_table_turns_on_a_narrow_console() -> None:
    from rich.console import Console

    from ampshare.cli.simulate import _table

    runs = [
        {"policy": "uncontrolled", "energy_delivered_ratio": 0.823, "demands_met_ratio": 0.768,
         "peak_site_kw": 148.9, "violation_amp_seconds": 97213143.0, "wall_s": 149.0},
        {"policy": "deadline", "energy_delivered_ratio": 0.791, "demands_met_ratio": 0.72,
         "peak_site_kw": 114.3, "violation_amp_seconds": 0.0, "wall_s": 566.0},
    ]
    for width in (200, 45):
        console = Console(width=width, record=True)
        console.print(_table(runs, width))
        text = console.export_text()
        # every figure is shown whole, whatever the width
        for cell in ("82.3%", "76.8%", "9.72e+07", "79.1%", "114.3", "566.0"):
            assert cell in text, (width, text)
        assert max(map(len, text.splitlines())) <= width
    wide = Console(width=200, record=True)
    wide.print(_table(runs, 200))
    assert "│ deadline " in wide.export_text()  # a row per policy
    narrow = Console(width=45, record=True)
    narrow.print(_table(runs, 45))
    assert "│ energy " in narrow.export_text()  # a row per metric


def test_site_file_planner_section_sets_the_replay(tmp_path: Path) -> None:
    """The site file's ``planner:`` section is used as ``ampshare run`` uses it: its tariff
    prices every policy (no --tariff given) and its settings set up ``planned``."""
    from ampshare.cli.simulate import SimArgs, build_spec

    site = tmp_path / "site.yaml"
    site.write_text(
        (FIX / "tiny-site.yaml").read_text()
        + "planner:\n  slot_s: 1800\n  hold_peak: false\n  demand_charge_per_kw: 12.5\n"
        + "  default_dwell_h: 5\n"
    )
    spec, _ = build_spec(
        SimArgs(site=site, sessions=FIX / "sessions-acn.csv", ev="basic"), "planned"
    )
    assert spec.planner is not None
    assert spec.planner.slot_s == 1800
    assert spec.planner.hold_peak is False
    assert spec.planner.defaults.dwell_s == 5 * 3600
    assert spec.tariff is not None
    assert spec.tariff.demand_charge_per_kw_override == 12.5

    out = tmp_path / "m.json"
    args = ["simulate", "--site", str(site), "--sessions", str(FIX / "sessions-acn.csv")]
    res = runner.invoke(app, [*args, "--ev", "basic", "--policy", "planned,equal",
                              "--json", str(out)])
    assert res.exit_code == 0, res.output
    runs = json.loads(out.read_text())["runs"]
    # the demand charge comes from the site file: 12.5 per kW of the billing period's peak
    for r in runs:
        assert r["demand_charge"] is not None
        assert r["demand_charge"] > 0
    assert "planner: section" in res.output


def test_site_file_without_planner_section_keeps_the_defaults() -> None:
    from ampshare.cli.simulate import SimArgs, build_spec

    spec, _ = build_spec(
        SimArgs(site=FIX / "tiny-site.yaml", sessions=FIX / "sessions-acn.csv"), "planned"
    )
    assert spec.planner is None
    assert spec.tariff is None


def test_a_tariff_file_the_planner_section_names_must_exist(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        (FIX / "tiny-site.yaml").read_text() + "planner:\n  tariff_file: prices/tou.json\n"
    )
    res = runner.invoke(
        app, ["simulate", "--site", str(site), "--sessions", str(FIX / "sessions-acn.csv")]
    )
    assert res.exit_code == 2
    text = " ".join(res.output.split())  # rich wraps long lines
    assert f"{site}: planner.tariff_file" in text
    assert "relative to the site file's folder" in text
    assert "tou.json" in text


def test_policies_in_parallel_give_the_same_runs(tmp_path: Path) -> None:
    """Two workers replay the policies side by side: the same metrics (wall time aside) and
    the same order as one after the other."""
    runs = {}
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}.json"
        res = runner.invoke(
            app,
            [*_base(), "--policy", "equal,planned,all-stop", "--workers", workers,
             "--json", str(out)],
        )
        assert res.exit_code == 0, res.output
        runs[workers] = [
            {k: v for k, v in r.items() if k != "wall_s"}
            for r in json.loads(out.read_text())["runs"]
        ]
    assert [r["policy"] for r in runs["2"]] == ["equal", "planned", "all-stop"]
    assert runs["2"] == runs["1"]
