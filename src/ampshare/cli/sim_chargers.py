"""``ampshare sim-chargers``: simulated OCPP charge points for demos, tests and benchmarks.

Each boots, starts a transaction (a car with ``ampshare.sim.ev`` physics), follows the limits
the central system sends and reports meter values every ``--meter-interval-s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from typing import Annotated, Any

import typer

from ampshare.adapters.ocpp import SimOptions, connect_sim
from ampshare.aio import cancel_and_wait, stop_on_signals
from ampshare.cli._app import app
from ampshare.errors import DeviceError

__all__ = ["sim_chargers"]

_CONNECT_AT_ONCE = 100  # a real fleet does not reconnect all at the same millisecond


def _raise_fd_limit(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, count + 256))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def _connect_all(url: str, ids: list[str], protocol: str, opts: SimOptions) -> list[Any]:
    cps: list[Any] = []
    for i in range(0, len(ids), _CONNECT_AT_ONCE):
        batch = ids[i:i + _CONNECT_AT_ONCE]
        results = await asyncio.gather(*(connect_sim(url, cid, protocol, options=opts)
                                         for cid in batch), return_exceptions=True)
        for cid, r in zip(batch, results, strict=True):
            if isinstance(r, BaseException):
                typer.echo(f"{cid}: {r}", err=True)
            else:
                cps.append(r)
    return cps


async def _charge(cp: Any, url: str, stagger_s: float) -> None:
    """Plug a car in, then report meter values; when the central system goes away, reconnect
    (keeping the transaction, as a charger does) with a growing pause between attempts."""
    await asyncio.sleep(stagger_s)
    while True:
        try:
            if cp.tx_id is None:
                await cp.start_transaction()
            await asyncio.sleep(cp.opts.meter_interval_s)
            await cp.meter_values()
        except DeviceError:
            await _reconnect(cp, url)


async def _reconnect(cp: Any, url: str) -> None:
    pause_s = 1.0
    while True:
        await asyncio.sleep(pause_s)
        try:
            await cp.reconnect(url)
            return
        except DeviceError:
            pause_s = min(30.0, 2 * pause_s)


def _connected(cp: Any) -> bool:
    return cp.run_task is not None and not cp.run_task.done()


def _summary(cps: list[Any]) -> str:
    charging = [cp for cp in cps if cp.tx_id is not None]
    offered = sum(cp.offered_a() for cp in charging)
    drawn = sum(cp.current_a() for cp in charging)
    return (f"{sum(map(_connected, cps))} of {len(cps)} connected, {len(charging)} charging, "
            f"offered {offered:.1f} A, drawing {drawn:.1f} A (per phase, summed)")


async def _fleet(url: str, ids: list[str], protocol: str, opts: SimOptions, *,
                 duration_s: float, stagger_s: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stop_on_signals(stop, name="ampshare sim-chargers")
    if duration_s > 0:
        loop.call_later(duration_s, stop.set)
    cps = await _connect_all(url, ids, protocol, opts)
    if not cps:
        raise DeviceError(f"no simulated charger could connect to {url}")
    n = len(cps)
    tasks = [asyncio.create_task(_charge(cp, url, stagger_s * i / n))
             for i, cp in enumerate(cps)]
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(10.0, max(1.0, opts.meter_interval_s))):
                await stop.wait()
        typer.echo(_summary(cps))
    await cancel_and_wait(tasks, what="simulated charge points")
    for cp in cps:
        with contextlib.suppress(Exception):
            await cp.close()


@app.command("sim-chargers")
def sim_chargers(  # noqa: PLR0917 - typer maps each option to a parameter
    url: Annotated[str, typer.Option(help="central system base URL, e.g. ws://host:9000/ocpp")],
    count: Annotated[int, typer.Option(min=1, max=20000, help="how many charge points")] = 1,
    protocol: Annotated[str, typer.Option(help="1.6 or 2.0.1")] = "1.6",
    ids: Annotated[str | None, typer.Option(help="comma-separated ids (instead of --count)")]
    = None,
    prefix: Annotated[str, typer.Option(help="ids are PREFIX1, PREFIX2, ...")] = "cp",
    first: Annotated[int, typer.Option(help="number of the first id")] = 1,
    meter_interval_s: Annotated[float, typer.Option(min=0.1)] = 10.0,
    stagger_s: Annotated[float, typer.Option(min=0, help="spread car arrivals over")] = 5.0,
    password: Annotated[str | None, typer.Option(help="Basic-auth password (all)")] = None,
    watts_only: Annotated[bool, typer.Option(help="accept limits in W only")] = False,
    duration_s: Annotated[float, typer.Option(help="stop after this long (0: Ctrl-C)")] = 0.0,
) -> None:
    """Run simulated charge points that boot, charge a car, obey limits and report."""
    if protocol not in ("1.6", "2.0.1"):
        typer.echo("--protocol must be 1.6 or 2.0.1", err=True)
        raise typer.Exit(2)
    logging.basicConfig(level=logging.WARNING)
    _raise_fd_limit(count if ids is None else len(ids.split(",")))
    opts = SimOptions(meter_interval_s=meter_interval_s, password=password,
                      rate_units=("W",) if watts_only else ("A", "W"))
    names = ([i.strip() for i in ids.split(",") if i.strip()] if ids
             else [f"{prefix}{i}" for i in range(first, first + count)])
    try:
        asyncio.run(_fleet(url, names, protocol, opts, duration_s=duration_s,
                           stagger_s=stagger_s))
    except DeviceError as e:
        typer.echo(f"ampshare sim-chargers: {e}", err=True)
        raise typer.Exit(1) from e
