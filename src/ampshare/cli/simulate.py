"""``ampshare simulate``: replay real sessions and building load through ampshare's controller."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ampshare.cli._app import app
from ampshare.config import SiteConfig, load_config
from ampshare.config.sections import PlannerSection
from ampshare.core.site import Site
from ampshare.core.tariff import Tariff
from ampshare.errors import AmpshareError, InputError
from ampshare.sim.data import LoadedSessions, load_series, load_sessions, parse_columns
from ampshare.sim.engine import EvOptions
from ampshare.sim.parallel import map_in_processes
from ampshare.sim.run import POLICY_NAMES, SimOutcome, SimSpec, optimum_metrics, simulate
from ampshare.sim.series import TimeSeries
from ampshare.sim.sites import tighten_transformers

if TYPE_CHECKING:  # the planner (scipy) is imported only when a site file has one
    from ampshare.sim.planning import PlannerOptions

__all__ = [
    "SimArgs",
    "build_spec",
    "cpu_count",
    "parse_duration_s",
    "parse_time_s",
    "run_with_progress",
]

err = Console(stderr=True)
_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}


def parse_duration_s(text: str) -> float:
    """``60s``, ``5min``, ``1h`` or a bare number of seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", text)
    if not m or m.group(2) not in ("", *_UNITS):
        raise InputError(f"--step {text!r}: write e.g. 60s, 5min or 1h")
    return float(m.group(1)) * _UNITS.get(m.group(2), 1.0)


def parse_time_s(text: str | None, tz: str) -> float | None:
    """An ISO date or date-time; naive ones in ``tz`` (the session data's time zone)."""
    if text is None:
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{text!r} is not an ISO date or time (e.g. 2019-10-01)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=ZoneInfo(tz))).timestamp()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SimArgs:
    """The data options shared by ``simulate`` and ``capacity``."""

    site: Path
    sessions: Path
    columns: str = "acn"
    building_load: Path | None = None
    building_column: str | None = None
    building_scale: float = 1.0
    building_unit: str = "kW"
    building_tz: str = "UTC"
    pv: Path | None = None
    pv_kwp: float = 0.0
    tariff: Path | None = None
    tariff_tz: str | None = None
    demand_charge: float | None = None
    start: str | None = None
    end: str | None = None
    step: str = "60s"
    ev: str = "taper"
    ev_max_a: float | None = None
    ev_phases: int | None = None
    transformer_kva: float | None = None


def _align(series: TimeSeries, start_s: float, end_s: float) -> TimeSeries:
    """Shift a profile by whole weeks so that it covers the replay (weekdays stay weekdays)."""
    week = 7 * 86400.0
    if series.start_s <= start_s and series.end_s >= end_s:
        return series
    shift = round((start_s - series.start_s) / week) * week
    shifted = series.shifted(shift)
    if shifted.start_s > start_s + week or shifted.end_s < end_s - week:
        err.print(
            f"[yellow]note:[/] {series.source} covers only part of the replay; "
            "its first/last value holds outside it"
        )
    return shifted


def _tariff(a: SimArgs, tz: str) -> Tariff | None:
    if a.tariff is None:
        return None
    from ampshare.config.tariff_files import load_price_series, load_tariff

    if a.tariff.suffix == ".json":
        return load_tariff(
            a.tariff, timezone=a.tariff_tz or tz, demand_charge_per_kw=a.demand_charge
        )
    return load_price_series(a.tariff)


def _site_planner(config: SiteConfig, path: Path) -> tuple[PlannerOptions | None, Tariff | None]:
    """The site file's ``planner:`` settings and tariff, read as ``ampshare run`` reads them
    (``planner_from_section``); (None, None): the file has no planner section, the simulator's
    defaults apply."""
    s = config.planner
    if s == PlannerSection():
        return None, None
    from ampshare.config.tariff_files import planner_from_section
    from ampshare.sim.planning import PlannerOptions

    mpc = planner_from_section(s, config.site, path.parent, str(path))
    if mpc.battery is not None:
        err.print(
            f"[yellow]note:[/] {path}: the planner's battery "
            f"({mpc.battery.capacity_wh / 1000:g} kWh) is simulated under policy planned, "
            f"starting at {s.battery_min_soc_pct:g} %; other policies have no plan for it"
        )
    options = PlannerOptions(
        horizon_s=mpc.horizon_s,
        slot_s=mpc.slot_s,
        safety_quantile=s.safety_quantile,
        forecast_weeks=s.forecast_weeks,
        hold_peak=s.hold_peak,
        defaults=mpc.defaults,
        contracted_capacity_w=mpc.contracted_capacity_w,
        priority_factor=mpc.priority_factor,
        max_facet_deg=mpc.max_facet_deg,
        battery=mpc.battery,
        prefer=mpc.prefer,
        energy_priority=mpc.energy_priority,
    )
    return options, mpc.tariff


def build_spec(a: SimArgs, policy: str) -> tuple[SimSpec, LoadedSessions]:
    """Load every file named in ``a`` and make the replay's spec."""
    cols = parse_columns(a.columns)
    start, end = parse_time_s(a.start, cols.timezone), parse_time_s(a.end, cols.timezone)
    sessions = load_sessions(a.sessions, cols, start, end)
    config = load_config(a.site)
    site: Site = config.site
    planner, site_tariff = _site_planner(config, a.site)
    tariff = _tariff(a, cols.timezone)
    if tariff is None and site_tariff is not None:
        tariff = site_tariff
        err.print(f"[dim]tariff: {site_tariff.name}, from {a.site}'s planner: section[/]")
    if a.transformer_kva is not None:
        site = tighten_transformers(site, a.transformer_kva)
    t0 = start if start is not None else sessions.records[0].arrival_s
    t1 = end if end is not None else max(r.departure_s for r in sessions.records)
    building = pv = None
    if a.building_load is not None:
        building = _align(
            load_series(
                a.building_load,
                a.building_column,
                unit=a.building_unit,
                scale=a.building_scale,
                timezone=a.building_tz,
            ),
            t0,
            t1,
        )
    if a.pv is not None:
        pv = _align(load_series(a.pv, "pv_kW_per_kWp", scale=a.pv_kwp), t0, t1)
    if a.ev not in ("taper", "basic"):
        raise InputError(f"--ev {a.ev!r}: use taper or basic")
    ev = EvOptions(basic=a.ev == "basic", max_current_a=a.ev_max_a, phases=a.ev_phases)
    spec = SimSpec(
        site=site,
        sessions=sessions.records,
        policy=policy,
        building=building,
        pv=pv,
        tariff=tariff,
        planner=planner,
        step_s=parse_duration_s(a.step),
        start_s=start,
        end_s=end,
        ev=ev,
    )
    return spec, sessions


@contextmanager
def _progress(
    enabled: bool, label: str, t0: float, t1: float
) -> Iterator[Callable[[float], None] | None]:
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=max(t1 - t0, 1.0))
        yield lambda t: bar.update(task, completed=t - t0)


def cpu_count() -> int:
    """Cores this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def _simulate_parallel(specs: list[SimSpec], workers: int, show: bool) -> list[SimOutcome]:
    """Each spec replayed in its own (spawned) worker process; outcomes in ``specs`` order.
    The replays are deterministic: the same outcomes as one after the other."""
    finished = 0

    with _progress(show, f"simulating {len(specs)} policies", 0.0, float(len(specs))) as cb:

        def one_more(_: SimOutcome) -> None:
            nonlocal finished
            finished += 1
            if cb is not None:
                cb(float(finished))

        return map_in_processes(simulate, [(s,) for s in specs], workers, on_result=one_more)


def run_with_progress(spec: SimSpec, show: bool) -> SimOutcome:
    t0 = spec.start_s if spec.start_s is not None else spec.sessions[0].arrival_s
    t1 = spec.end_s if spec.end_s is not None else max(r.departure_s for r in spec.sessions)
    with _progress(show, f"simulating {spec.policy}", t0, t1) as cb:
        return simulate(spec, progress=cb)


_METRIC_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("energy_delivered_ratio", "energy", "{:.1%}"),
    ("demands_met_ratio", "met", "{:.1%}"),
    ("unmet_kwh_p95", "unmet95 kWh", "{:.1f}"),
    ("peak_site_kw", "peak kW", "{:.1f}"),
    ("violation_amp_seconds", "over A·s", "{:.3g}"),
    ("max_violation_a", "over A", "{:.1f}"),
    ("start_stop_events", "stops", "{:,}"),
    ("jain_fairness", "Jain", "{:.3f}"),
    ("energy_cost", "cost", "{:,.0f}"),
    ("demand_charge", "demand", "{:,.0f}"),
    ("battery_charged_kwh", "battery in kWh", "{:,.1f}"),
    ("battery_discharged_kwh", "battery out kWh", "{:,.1f}"),
    ("wall_s", "wall s", "{:.1f}"),
)


def _table(runs: list[dict[str, Any]], width: int = 200) -> Table:
    """One row per policy; on a console narrower than that needs (a pipe, a phone's
    terminal), one row per metric with the policies as columns, so nothing is cut."""
    # Columns that are empty for every row (no tariff: no cost) are left out.
    cols = tuple(c for c in _METRIC_COLUMNS if any(r.get(c[0]) is not None for r in runs))
    cells = [
        ["-" if r.get(k) is None else fmt.format(r[k]) for k, _, fmt in cols] for r in runs
    ]
    names = [str(r["policy"]) for r in runs]
    t = Table(title="ampshare simulate")
    wide = max(map(len, names), default=6) + sum(
        max(len(label), *(len(row[k]) for row in cells)) + 3 for k, (_, label, _) in enumerate(cols)
    )
    if wide <= width:
        t.add_column("policy", no_wrap=True)
        for _, label, _ in cols:
            t.add_column(label, justify="right", no_wrap=True)
        for name, row in zip(names, cells, strict=True):
            t.add_row(name, *row)
        return t
    t.add_column("metric", no_wrap=True)
    for name in names:
        t.add_column(name, justify="right")
    for k, (_, label, _) in enumerate(cols):
        t.add_row(label, *(row[k] for row in cells))
    return t


@app.command("simulate")
def simulate_cmd(  # noqa: PLR0917 - typer maps every option to a parameter
    site: Annotated[Path, typer.Option(help="site file (YAML)")],
    sessions: Annotated[Path, typer.Option(help="sessions CSV or CSV.gz")],
    policy: Annotated[
        str, typer.Option(help=f"one or more (comma-separated) of {', '.join(POLICY_NAMES)}")
    ] = "equal",
    columns: Annotated[
        str,
        typer.Option(
            help="column mapping: acn, acn-delivered, norway, or key=column pairs "
            "(docs/simulator.md)"
        ),
    ] = "acn",
    building_load: Annotated[
        Path | None, typer.Option(help="building load CSV (kW total, or A per line)")
    ] = None,
    building_column: Annotated[
        str | None, typer.Option(help="value column, or L1,L2,L3 columns in A")
    ] = None,
    building_scale: Annotated[float, typer.Option(help="multiply building values by this")] = 1.0,
    building_unit: Annotated[str, typer.Option(help="kW (total) or A (per line)")] = "kW",
    building_tz: Annotated[str, typer.Option(help="time zone of naive building stamps")] = "UTC",
    pv: Annotated[Path | None, typer.Option(help="PV profile CSV (pv_kW_per_kWp)")] = None,
    pv_kwp: Annotated[float, typer.Option(help="PV array size in kWp")] = 0.0,
    tariff: Annotated[
        Path | None, typer.Option(help="TOU JSON (acnportal) or price series CSV")
    ] = None,
    tariff_tz: Annotated[
        str | None, typer.Option(help="tariff local time zone (default: the sessions')")
    ] = None,
    start: Annotated[str | None, typer.Option(help="first arrival to replay (ISO)")] = None,
    end: Annotated[str | None, typer.Option(help="end of the replay (ISO)")] = None,
    step: Annotated[str, typer.Option(help="grid step: 60s, 5min …")] = "60s",
    ev: Annotated[str, typer.Option(help="EV model: taper or basic (ideal battery)")] = "taper",
    ev_max_a: Annotated[
        float | None, typer.Option(help="onboard max per phase in A (default: charger max)")
    ] = None,
    transformer_kva: Annotated[
        float | None, typer.Option(help="re-rate every transformer to this kVA")
    ] = None,
    optimum: Annotated[bool, typer.Option(help="also compute the offline optimum (LP)")] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write metrics JSON here ('-' = stdout)")
    ] = None,
    trace: Annotated[Path | None, typer.Option(help="write the per-step current trace CSV")] = None,
    report: Annotated[Path | None, typer.Option(help="write an HTML report with plots")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=0,
            help="policies replayed in parallel (0: one per CPU core); each run's wall_s is "
            "then measured beside the others",
        ),
    ] = 0,
) -> None:
    """Replay sessions (and building load, PV, tariff) on a site under one or more policies."""
    args = SimArgs(
        site=site,
        sessions=sessions,
        columns=columns,
        building_load=building_load,
        building_column=building_column,
        building_scale=building_scale,
        building_unit=building_unit,
        building_tz=building_tz,
        pv=pv,
        pv_kwp=pv_kwp,
        tariff=tariff,
        tariff_tz=tariff_tz,
        start=start,
        end=end,
        step=step,
        ev=ev,
        ev_max_a=ev_max_a,
        transformer_kva=transformer_kva,
    )
    try:
        _run(
            args,
            policies=[p.strip() for p in policy.split(",") if p.strip()],
            optimum=optimum,
            json_out=json_out,
            trace=trace,
            report=report,
            workers=workers or cpu_count(),
        )
    except AmpshareError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def _run(
    args: SimArgs,
    *,
    policies: list[str],
    optimum: bool,
    json_out: Path | None,
    trace: Path | None,
    report: Path | None,
    workers: int = 1,
) -> None:
    from ampshare.sim.trace import write_trace

    bad = [p for p in policies if p not in POLICY_NAMES]
    if bad or not policies:
        raise InputError(
            f"--policy {','.join(bad) or '(none)'}: choose from {', '.join(POLICY_NAMES)}"
        )
    base, _ = build_spec(args, policies[0])
    specs = [dataclasses.replace(base, policy=p, keep_ev=bool(trace or report)) for p in policies]
    show = sys.stderr.isatty()
    if min(workers, len(specs)) > 1:
        outcomes = _simulate_parallel(specs, min(workers, len(specs)), show)
    else:
        outcomes = [run_with_progress(s, show=show) for s in specs]
    spec = specs[-1]
    if trace is not None:
        from ampshare.sim.engine import metered_site

        msite, node = metered_site(specs[0].site)
        write_trace(outcomes[0].replay, msite, trace, node)
    runs: list[dict[str, Any]] = [{"policy": o.policy, **o.metrics} for o in outcomes]
    for run, o in zip(runs, outcomes, strict=True):
        if o.session_plans:  # the planner's latest word on every session
            run["session_plans"] = [dataclasses.asdict(sp) for sp in o.session_plans]
    doc: dict[str, Any] = {"runs": runs}
    if optimum:
        doc["optimum"] = optimum_metrics(spec)
    if report is not None:
        from ampshare.sim.report import write_report

        write_report(report, spec, outcomes, doc.get("optimum"))
    if json_out is not None:
        text = json.dumps(doc, indent=2)
        if str(json_out) == "-":
            sys.stdout.write(text + "\n")
        else:
            json_out.write_text(text + "\n", encoding="utf-8")
    if json_out is None or str(json_out) != "-":
        console = Console()
        rows = runs + ([{"policy": "offline optimum", **doc["optimum"]}] if optimum else [])
        console.print(_table(rows, console.width))
        for o in outcomes:
            if o.session_plans:
                late = sum(sp.will_not_be_ready for sp in o.session_plans)
                console.print(
                    f"{o.policy}: {late} of {len(o.session_plans)} sessions were last planned "
                    "as 'will not be ready' (--json lists each session's plan)"
                )
