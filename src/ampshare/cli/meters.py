"""``ampshare meters`` (live readings of every configured meter) and ``ampshare sim-meter``.

``sim-meter`` serves a Modbus TCP meter (SDM630 registers by default) that replays a building
load profile, so the Modbus example site works on any machine without a real meter.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import itertools
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ampshare.adapters.meters import (
    BUILTIN_MAPS,
    MeterCoordinator,
    MeterStatus,
    ModbusMeterServer,
    Quantity,
    build_meters,
)
from ampshare.cli._app import app
from ampshare.cli.check import driver_text
from ampshare.clock import SystemClock
from ampshare.config import load_site
from ampshare.core.site import MeterSpec
from ampshare.errors import (
    AmpshareError,
    ConfigError,
    DeviceError,
    DeviceProtocolError,
    DeviceUnavailable,
    InputError,
)

__all__ = ["profile_values"]

SPLIT = (0.40, 0.33, 0.27)  # how a building's load typically spreads over L1..L3 (L1 heaviest)


async def _read_all(specs: Sequence[MeterSpec], timeout_s: float
                    ) -> list[tuple[MeterStatus, DeviceError | None]]:
    clock = SystemClock()
    # build_meters: meters on one RS-485 port or gateway share its connection.
    coords = [MeterCoordinator(m, clock, timeout_s=min(timeout_s, s.timeout_s))
              for s, m in zip(specs, build_meters(specs, clock), strict=True)]
    try:
        await asyncio.gather(*(c.poll_once() for c in coords))
    finally:
        await asyncio.gather(*(c.source.close() for c in coords))
    return [(c.status(), None if c.latest else c.last_error) for c in coords]


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _table(site: str, specs: Sequence[MeterSpec], statuses: Sequence[MeterStatus],
           pv_ids: frozenset[str] = frozenset()) -> Table:
    t = Table(title=f"Meters of {site}", title_justify="left")
    t.add_column("meter")
    t.add_column("node")
    for col in ("L1 A", "L2 A", "L3 A", "power W", "volts", "kWh"):
        t.add_column(col, justify="right")
    t.add_column("state")
    for spec, st in zip(specs, statuses, strict=True):
        r = st.latest
        cur = r.current_a if r and r.current_a else (None, None, None)
        volts = "/".join(_fmt(v, 0) for v in r.voltage_v) if r and r.voltage_v else "-"
        energy = None if r is None or r.energy_wh is None else r.energy_wh / 1000
        state = "[red]failed[/]" if r is None else "[yellow]stale[/]" if st.stale else \
            "[green]ok[/]"
        name = f"{spec.id} (PV)" if spec.id in pv_ids else spec.id
        t.add_row(name, spec.node_id, *(_fmt(c) for c in cur), _fmt(r.power_w if r else None, 0),
                  volts, _fmt(energy, 1), state)
    return t


_WHAT_TO_CHECK = {
    DeviceUnavailable: "no answer: is the meter (or its gateway) on and reachable at this "
                       "address, and is the port or serial line right?",
    DeviceProtocolError: "an answer ampshare cannot use: check model and unit_id (custom maps: "
                         "addresses, type, word_order and scale)",
}


def _details(specs: Sequence[MeterSpec],
             results: Sequence[tuple[MeterStatus, DeviceError | None]]) -> list[str]:
    """Per meter: how it is read; for a failed one, why, and what to check."""
    out = []
    for spec, (st, error) in zip(specs, results, strict=True):
        out.append(f"  {escape(spec.id)}: {escape(driver_text(spec))}")
        if st.latest is None:
            out.append(f"    [red]{escape(st.last_error or 'no reading')}[/]")
            what = next((v for k, v in _WHAT_TO_CHECK.items() if isinstance(error, k)), None)
            if spec.driver == "mqtt" and isinstance(error, DeviceUnavailable):
                what = ("nothing arrived: check the broker address and the topic names; a "
                        "device that publishes less often than every 2 s is only seen here if "
                        "it publishes retained (ampshare run keeps listening and uses it when "
                        "it comes)")
            if what:
                out.append(f"    {escape(what)}")
    return out


def _json(results: Sequence[tuple[MeterStatus, DeviceError | None]]) -> str:
    return json.dumps([asdict(s) for s, _ in results], indent=2, default=str)


@contextlib.contextmanager
def _quiet_driver_logs() -> Iterator[None]:
    # The table already says which meter failed and why; library chatter would repeat it.
    loggers = {logging.getLogger("pymodbus"): logging.CRITICAL,
               logging.getLogger("ampshare.adapters.meters"): logging.ERROR}
    before = {lg: lg.level for lg in loggers}
    for lg, level in loggers.items():
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, level in before.items():
            lg.setLevel(level)


@app.command("meters")
def meters(
    site: Annotated[Path, typer.Option("--site", help="the site file (YAML)")],
    timeout_s: Annotated[float, typer.Option("--timeout", help="give up on a meter after N s")]
    = 5.0,
    watch_s: Annotated[float, typer.Option("--watch", help="refresh every N s (0: once)")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON, not a table")] = False,
) -> None:
    """List live readings of every meter in the site file.

    Exits 1 if any meter did not answer or answered garbage, 2 if the site file is invalid.
    """
    try:
        loaded = load_site(site)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    specs = (*loaded.meters, *loaded.pv_meters)  # a PV meter is probed like any other
    if not specs:
        typer.echo(f"{site}: no meters configured (add a meters: section)", err=True)
        raise typer.Exit(1)
    console = Console(soft_wrap=True)
    while True:
        with _quiet_driver_logs():
            results = asyncio.run(_read_all(specs, timeout_s))
        if as_json:
            typer.echo(_json(results))
        else:
            pv_ids = frozenset(m.id for m in loaded.pv_meters)
            console.print(_table(loaded.name, specs, [st for st, _ in results], pv_ids))
            console.print("\n".join(_details(specs, results)), highlight=False)
        if watch_s <= 0:
            break
        time.sleep(watch_s)
    if any(st.latest is None for st, _ in results):
        raise typer.Exit(1)


def profile_values(power_w: float, *, voltage_v: float = 230.0, energy_wh: float = 0.0
                   ) -> dict[Quantity, float]:
    """A three-phase meter's values for a building drawing ``power_w`` (split over L1..L3)."""
    q = Quantity
    lines = [power_w * s for s in SPLIT]
    out = {q.POWER: power_w, q.ENERGY_IMPORT: energy_wh}
    for i, p in enumerate(lines):
        out[(q.POWER_L1, q.POWER_L2, q.POWER_L3)[i]] = p
        out[(q.CURRENT_L1, q.CURRENT_L2, q.CURRENT_L3)[i]] = abs(p) / voltage_v
        out[(q.VOLTAGE_L1, q.VOLTAGE_L2, q.VOLTAGE_L3)[i]] = voltage_v
    return out


def _load_profile(path: Path | None) -> tuple[list[float], list[float]]:
    """A load profile CSV: a time column (ISO 8601, UTC if naive) then a kW column."""
    if path is None:
        ref = resources.files("ampshare") / "data" / "building_load_ucam_b57_2019-06-03_week.csv"
        text, name = ref.read_text(encoding="utf-8"), "the packaged building week"
    else:
        try:
            text, name = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the profile ({exc})") from None
    rows = list(csv.reader(io.StringIO(text)))
    times: list[float] = []
    watts: list[float] = []
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            when = datetime.fromisoformat(row[0].strip().replace("Z", "+00:00"))
            times.append((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())
            watts.append(float(row[1]) * 1000.0)
        except (ValueError, IndexError):
            raise InputError(f"{name}:{n}: expected 'time,kW' (e.g. 2019-06-03 00:00:00,10.7), "
                             f"got {','.join(row)!r}") from None
    if len(times) < 2 or any(b <= a for a, b in itertools.pairwise(times)):
        raise InputError(f"{name}: need at least two rows with increasing times")
    return times, watts


def _power_at(times: Sequence[float], watts: Sequence[float], offset_s: float) -> float:
    """Linear interpolation, wrapping around the profile's end."""
    span = times[-1] - times[0] + (times[1] - times[0] if len(times) > 1 else 3600.0)
    t = times[0] + math.fmod(offset_s, span)
    for i in range(len(times) - 1):
        if times[i] <= t < times[i + 1]:
            f = (t - times[i]) / (times[i + 1] - times[i])
            return watts[i] + f * (watts[i + 1] - watts[i])
    return watts[-1]


@dataclass(frozen=True, slots=True, kw_only=True)
class _SimOptions:
    model: str
    host: str
    port: int
    unit_id: int
    profile: Path | None
    speed: float
    scale: float
    stop_after_s: float


async def _serve(o: _SimOptions) -> None:
    times, watts = _load_profile(o.profile)
    values = profile_values(watts[0] * o.scale)
    where: dict[str, Any] = {"host": o.host, "port": o.port, "unit_id": o.unit_id}
    server = (ModbusMeterServer.for_sunspec(values, **where) if o.model == "sunspec"
              else ModbusMeterServer.for_map(BUILTIN_MAPS[o.model], values, **where))
    bound = await server.start()
    typer.echo(f"sim-meter: {o.model} on {o.host}:{bound} unit {o.unit_id}, replaying "
               f"{o.profile or 'the packaged building week'} at {o.speed:g}x, scale {o.scale:g}")
    loop = asyncio.get_running_loop()
    start = loop.time()
    energy_wh = 0.0
    try:
        while o.stop_after_s <= 0 or loop.time() - start < o.stop_after_s:
            p = _power_at(times, watts, (loop.time() - start) * o.speed) * o.scale
            energy_wh += p * 0.5 * o.speed / 3600.0  # profile time, not wall time
            server.set_values(profile_values(p, energy_wh=energy_wh))
            await asyncio.sleep(0.5)
    finally:
        await server.stop()


@app.command("sim-meter")
def sim_meter(  # noqa: PLR0917 - typer maps every option to a parameter
    model: Annotated[str, typer.Option(help="register map: sdm630, sdm72d-m, em24, em340, b23, "
                                       "b24, umg604 or sunspec")] = "sdm630",
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (502 needs root)")] = 5020,
    unit_id: Annotated[int, typer.Option("--unit-id", help="Modbus unit id")] = 1,
    profile: Annotated[Path | None, typer.Option(
        help="CSV load profile (time, kW); default: a packaged week of a real building")] = None,
    speed: Annotated[float, typer.Option(help="profile seconds per real second")] = 60.0,
    scale: Annotated[float, typer.Option(help="multiply the profile's power by this")] = 1.0,
    stop_after_s: Annotated[float, typer.Option(
        "--for", help="stop after N seconds (0: run until Ctrl-C)")] = 0.0,
) -> None:
    """Serve a simulated Modbus TCP meter that replays a building load profile."""
    if model not in BUILTIN_MAPS and model != "sunspec":
        typer.echo(f"--model {model!r}: unknown; one of {', '.join(sorted(BUILTIN_MAPS))}, "
                   "sunspec", err=True)
        raise typer.Exit(2)
    opts = _SimOptions(model=model, host=host, port=port, unit_id=unit_id, profile=profile,
                       speed=speed, scale=scale, stop_after_s=stop_after_s)
    try:
        asyncio.run(_serve(opts))
    except KeyboardInterrupt:
        pass
    except (AmpshareError, OSError) as exc:
        typer.echo(f"sim-meter: {exc}", err=True)
        raise typer.Exit(1) from None
