"""``ampshare scenario FILE.yaml [--json OUT]``: run scenario files and check expectations."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ampshare.cli._app import app
from ampshare.errors import AmpshareError, ConfigError
from ampshare.scenario import RunResult, run_file

__all__ = ["scenario"]


def _table(result: RunResult) -> Table:
    t = Table()
    for col in ("node line", "limit A", "peak A", "A·s above", "s above"):
        t.add_column(col, justify="left" if col == "node line" else "right")
    for node, lines in result.lines.items():
        for ln, s in lines.items():
            style = "red" if s.amp_seconds_above > 0 else None
            t.add_row(
                f"{node} {ln}",
                f"{s.limit_a:.1f}",
                f"{s.peak_a:.1f}",
                f"{s.amp_seconds_above:.2f}",
                f"{s.seconds_above:.1f}",
                style=style,
            )
    return t


def _print(console: Console, result: RunResult) -> None:
    console.print(f"[bold]{result.name}[/bold]", highlight=False)
    console.print(
        f"{result.steps} control steps, {result.commands} commands, "
        f"{result.wall_s:.2f} s wall time",
        style="dim",
        highlight=False,
    )
    console.print(_table(result))
    ch = Table(title_justify="left", show_header=True)
    for col in ("charger", "energy kWh", "starts", "stops"):
        ch.add_column(col, justify="left" if col == "charger" else "right")
    for cid, m in result.chargers.items():
        ch.add_row(cid, f"{m['energy_wh'] / 1000:.2f}", str(m["starts"]), str(m["stops"]))
    console.print(ch)
    for c in result.checks:
        mark = "[green]PASS[/green]" if c["passed"] else "[red]FAIL[/red]"
        console.print(f"{mark} {c['check']}: {c['detail']}", highlight=False)


@app.command("scenario")
def scenario(
    files: list[Path] = typer.Argument(..., help="scenario YAML file(s)"),  # noqa: B008
    json_out: Path | None = typer.Option(None, "--json", help="write the results as JSON here"),  # noqa: B008
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only the pass/fail lines"),
    plot: Path | None = typer.Option(  # noqa: B008
        None,
        "--plot",
        help="save a PNG of currents, limits and draws (FILE.png; several "
        "scenarios: one per file, named after each)",
    ),
) -> None:
    """Run a site through timed events on virtual time and check the file's expectations.

    Exit code 0 when every expectation holds, 1 when one fails, 2 when a file is invalid.
    """
    console = Console()
    results = []
    for path in files:
        try:
            target = None
            if plot is not None:
                target = plot if len(files) == 1 else plot.with_name(f"{path.stem}.png")
            result = run_file(path, plot=target)
        except ConfigError as exc:
            for issue in exc.issues:
                console.print(f"[red]error[/red] {issue}", highlight=False)
            raise typer.Exit(2) from exc
        except AmpshareError as exc:
            console.print(f"[red]error[/red] {path}: {exc}", highlight=False)
            raise typer.Exit(2) from exc
        results.append(result)
        if quiet:
            mark = "[green]PASS[/green]" if result.passed else "[red]FAIL[/red]"
            console.print(f"{mark} {path}", highlight=False)
        else:
            _print(console, result)
    if json_out is not None:
        payload = [r.as_dict() for r in results]
        json_out.write_text(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    if not all(r.passed for r in results):
        raise typer.Exit(1)
