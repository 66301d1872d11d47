"""``ampshare run SITE.yaml``: the central system and the control loop, until Ctrl-C.

Also ``ampshare ocpp-hash-password`` to make the hashes ``ocpp.password_hashes`` stores.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from ampshare.adapters.ocpp import hash_password
from ampshare.aio import stop_on_signals
from ampshare.app import Supervisor, SupervisorOptions, tune_gc
from ampshare.cli._app import app
from ampshare.config import SiteConfig, load_config
from ampshare.config.tariff_files import load_pv_profile, planner_from_section
from ampshare.core.planner import EnergyPriority, Prefer, PvProfile, RecedingHorizonPlanner
from ampshare.errors import ConfigError, InputError

__all__ = ["run"]


async def _serve(config: SiteConfig, duration_s: float, web: bool,
                 planner: RecedingHorizonPlanner | None, pv: PvProfile | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stop_on_signals(stop, name="ampshare run")
    sup = Supervisor(config, options=SupervisorOptions(web=web, planner=planner, pv=pv))
    task = asyncio.create_task(sup.run(stop))
    started = asyncio.create_task(sup.started.wait())
    await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        started.cancel()
        await task  # raises what went wrong at start-up (a port in use, a bad certificate)
        return
    port = getattr(sup.link, "port", config.ocpp.port)
    scheme = "wss" if config.ocpp.tls_cert_path else "ws"
    typer.echo(f"ampshare: site {config.site.name!r}: {len(config.site.chargers)} chargers, "
               f"{len(config.site.meters)} meters")
    typer.echo(f"ampshare: OCPP central system on {scheme}://{config.ocpp.host}:{port}"
               "/ocpp/{charge_point_id} (ocpp1.6, ocpp2.0.1); Ctrl-C stops")
    if web:
        typer.echo(f"ampshare: API and dashboard on http://{config.web.host}:{config.web.port}/ "
                   f"(store {config.web.store_url})")
    if sup.web is not None and sup.web.resumed:
        typer.echo(f"ampshare: resumed from the store: {len(sup.web.runtime.view().sessions)} "
                   "plugged-in sessions; every limit is re-asserted")
    if planner is not None:
        typer.echo(f"ampshare: planner on: {planner.horizon_s / 3600:g} h in "
                   f"{planner.slot_s:g} s slots, re-planned every {planner.replan_interval_s:g} s"
                   + (", the cars closest to their request first (prefer: ready)"
                      if planner.prefer is Prefer.READY else "")
                   + (", unlikely kWh do not raise the demand peak (energy_priority: expected)"
                      if planner.energy_priority is EnergyPriority.EXPECTED else "")
                   + (" (policy is not 'planned': plans are shown, not followed)"
                      if config.policy.name != "planned" else ""))
    if pv is not None:
        typer.echo(f"ampshare: planner PV forecast: {config.planner.pv_profile_file} x "
                   f"{pv.kwp:g} kWp behind the root meter")
    pv_ids = ", ".join(m.id for m in config.site.pv_meters)
    if pv_ids and planner is not None:
        typer.echo(f"ampshare: PV measured by {pv_ids}: the planner learns the building behind "
                   "the root meter and forecasts the PV from it")
    elif pv_ids:
        typer.echo(f"ampshare: PV meter(s) {pv_ids} not read: only the planner uses them "
                   "(planner: {enabled: true})")
    if config.battery is not None:
        b = config.battery
        typer.echo(f"ampshare: battery {b.id} ({b.driver.type}): driven from the plan, read every "
                   f"{b.poll_s:g} s; its discharge is never counted on")
    if sup.mqtt is not None:
        m = sup.mqtt.describe()
        typer.echo(f"ampshare: MQTT to {m['host']}:{m['port']}, topics {m['prefix']}/..., "
                   "Home Assistant discovery")
    if duration_s > 0:
        loop.call_later(duration_s, stop.set)
    await task


def _pv_profile(config: SiteConfig, site: Path) -> PvProfile | None:
    """The ``planner:`` section's PV profile (relative to the site file), or None."""
    s = config.planner
    if s.pv_profile_file is None or s.pv_kwp is None:
        return None
    try:
        return load_pv_profile(site.parent / s.pv_profile_file, s.pv_kwp)
    except InputError as e:
        raise InputError(
            f"{site}: planner.pv_profile_file (paths are relative to the site file's folder, "
            f"{site.parent}): {e}"
        ) from None


@app.command("run")
def run(  # noqa: PLR0917 - typer maps every option to a parameter
    site: Annotated[Path, typer.Argument(help="the site file (YAML)")],
    host: Annotated[str | None, typer.Option(help="listen address (overrides ocpp.host)")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535,
                                             help="port (overrides ocpp.port; 0: any)")] = None,
    duration_s: Annotated[float, typer.Option(help="stop after this long (0: never)")] = 0.0,
    web: Annotated[bool, typer.Option(help="also serve the API/dashboard and keep the store "
                                           "(the site file's web: section)")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Start the OCPP central system (1.6J + 2.0.1) with the controller for SITE."""
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("ocpp").setLevel(logging.WARNING)  # it logs every frame at INFO
    try:
        config = load_config(site)
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    update = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if update:
        config = replace(config, ocpp=config.ocpp.model_copy(update=update))
    planner, pv = None, None
    # ``policy: planned`` follows a plan: without one it would share like ``equal`` while
    # saying "planned", so it turns the planner on (its settings, or their defaults).
    if config.planner.enabled or config.policy.name == "planned":
        try:  # tariff and price files are relative to the site file
            planner = planner_from_section(config.planner, config.site, site.parent, str(site))
            pv = _pv_profile(config, site)
        except InputError as e:
            typer.echo(str(e), err=True)  # names the site file and the key
            raise typer.Exit(2) from e
    tune_gc()
    try:
        asyncio.run(_serve(config, duration_s, web, planner, pv))
    except ConfigError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from e
    except OSError as e:  # the OCPP or the API port is taken (the message names which)
        typer.echo(f"ampshare run: cannot listen: {e}", err=True)
        raise typer.Exit(1) from e


@app.command("ocpp-hash-password")
def ocpp_hash_password(
    password: Annotated[str, typer.Option(prompt=True, hide_input=True,
                                          help="the charger's Basic-auth password")],
) -> None:
    """Print the hash to store under ocpp.password_hashes for one charger."""
    typer.echo(hash_password(password))
