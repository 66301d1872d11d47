"""``ampshare capacity``: how many chargers a service can host, per policy."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ampshare.cli._app import app
from ampshare.cli.simulate import SimArgs, build_spec, cpu_count, parse_duration_s
from ampshare.errors import AmpshareError, InputError
from ampshare.sim.capacity import CapacityPoint, capacity_study, plot_capacity
from ampshare.sim.run import POLICY_NAMES

__all__ = ["capacity_cmd"]

err = Console(stderr=True)


def _counts(text: str) -> list[int]:
    try:
        if ":" in text:  # start:stop:step
            a, b, c = (int(x) for x in text.split(":"))
            return list(range(a, b + 1, c))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--chargers {text!r}: write 4,8,12 or 4:40:4") from None


def _table(points: list[CapacityPoint], best: dict[str, int | None], target: float) -> Table:
    t = Table(title=f"chargers carried with ≥ {target:.0%} of demands met and no violation")
    t.add_column("chargers", justify="right")
    for policy, most in best.items():
        t.add_column(f"{policy} (best {most or '-'})", justify="right")
    for n in sorted({p.chargers for p in points}):
        cells = []
        for policy in best:
            p = next(x for x in points if x.chargers == n and x.policy == policy)
            mark = "✓" if p.passed else ("✗ over limit" if p.violation_amp_seconds else "✗")
            cells.append(f"{p.demands_met_ratio:.1%} {mark}")
        t.add_row(str(n), *cells)
    return t


@contextmanager
def _progress(show: bool, total: int) -> Iterator[Callable[[CapacityPoint], None] | None]:
    """A bar over the study's replays, each finished point printed above it (a terminal
    only: a pipe gets the table and nothing else)."""
    if not show:
        yield None
        return
    with Progress(
        TextColumn("capacity study"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("replays"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("replays", total=total)

        def done(p: CapacityPoint) -> None:
            bar.console.print(f"{p.chargers:4d} {p.policy:>12}: {p.demands_met_ratio:.1%} met")
            bar.advance(task)

        yield done


@app.command("capacity")
def capacity_cmd(  # noqa: PLR0917 - typer maps every option to a parameter
    site: Annotated[Path, typer.Option(help="site file (YAML); its chargers are the template")],
    sessions: Annotated[Path, typer.Option(help="sessions CSV or CSV.gz")],
    building_load: Annotated[Path | None, typer.Option(help="building load CSV")] = None,
    building_column: Annotated[str | None, typer.Option(help="value column(s)")] = None,
    building_scale: Annotated[float, typer.Option(help="multiply building values")] = 1.0,
    building_unit: Annotated[str, typer.Option(help="kW or A")] = "kW",
    building_tz: Annotated[str, typer.Option(help="zone of naive building stamps")] = "UTC",
    columns: Annotated[str, typer.Option(help="session column mapping (see simulate)")] = "acn",
    chargers: Annotated[str, typer.Option(help="counts to try: 4,8,12 or 4:40:4")] = "4:40:4",
    policies: Annotated[
        str, typer.Option(help="comma-separated policies")
    ] = "static,equal,planned",
    target: Annotated[float, typer.Option(help="share of demands that must be met")] = 0.95,
    start: Annotated[str | None, typer.Option(help="window start (ISO)")] = None,
    end: Annotated[str | None, typer.Option(help="window end (ISO)")] = None,
    step: Annotated[str, typer.Option(help="grid step")] = "300s",
    seed: Annotated[int, typer.Option(help="seed for drawing station streams")] = 1,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write JSON ('-' = stdout)")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="write the capacity plot (PNG)")] = None,
    workers: Annotated[
        int, typer.Option(min=0, help="replays run in parallel (0: one per CPU core)")
    ] = 0,
) -> None:
    """Scale chargers and sessions together; report the most chargers each policy carries."""
    try:
        names = [p.strip() for p in policies.split(",") if p.strip()]
        bad = [p for p in names if p not in POLICY_NAMES]
        if bad or not names:
            raise InputError(f"--policies {','.join(bad)}: choose from {', '.join(POLICY_NAMES)}")
        if not 0 < target <= 1:
            raise InputError(f"--target {target}: give a share between 0 and 1")
        parse_duration_s(step)
        args = SimArgs(
            site=site,
            sessions=sessions,
            columns=columns,
            building_load=building_load,
            building_column=building_column,
            building_scale=building_scale,
            building_unit=building_unit,
            building_tz=building_tz,
            start=start,
            end=end,
            step=step,
        )
        spec, _ = build_spec(args, names[0])
        counts = _counts(chargers)
        with _progress(sys.stderr.isatty(), len(set(counts)) * len(names)) as on_point:
            res = capacity_study(
                dataclasses.replace(spec),
                counts,
                names,
                target=target,
                seed=seed,
                workers=workers or cpu_count(),
                on_point=on_point,
            )
    except AmpshareError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    doc: dict[str, Any] = {
        "target": res.target,
        "best": res.best,
        "points": [dataclasses.asdict(p) for p in res.points],
    }
    if plot is not None:
        plot_capacity(res, plot, title=f"{spec.site.name}: chargers carried per policy")
    if json_out is not None and str(json_out) == "-":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    if json_out is not None:
        json_out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    Console().print(_table(list(res.points), res.best, res.target))
