"""``build_meter``: from the site model's ``MeterSpec`` to a running ``MeterSource``.

``MeterSpec.params`` is the driver section of the site file as validated by
``ampshare.config.meter_drivers``; it is validated again here against the same models, so a
``MeterSpec`` written by hand (tests, the simulator) gets the same clear errors as a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from pydantic import TypeAdapter, ValidationError

from ampshare.adapters.meters._coordinator import MeterCoordinator
from ampshare.adapters.meters._fake import FakeMeter
from ampshare.adapters.meters._maps import BUILTIN_MAPS
from ampshare.adapters.meters._modbus import ModbusLink, ModbusMeter, link_key, target_of
from ampshare.adapters.meters._mqtt import MqttMeter, TopicValue
from ampshare.adapters.meters._p1 import P1Meter
from ampshare.adapters.meters._port import MeterSource
from ampshare.adapters.meters._registers import DataType, RegisterMap, RegisterSpec
from ampshare.adapters.meters._values import Quantity
from ampshare.clock import Clock
from ampshare.config.meter_drivers import (
    MeterDriverConfig,
    ModbusDriver,
    MqttDriver,
    P1Driver,
    SimDriver,
)
from ampshare.core.site import MeterSpec
from ampshare.core.snapshot import MeterReading
from ampshare.errors import ConfigError, ConfigIssue

__all__ = [
    "build_coordinator",
    "build_coordinators",
    "build_meter",
    "build_meters",
    "driver_config",
    "register_map_for",
]

_DRIVER: TypeAdapter[MeterDriverConfig] = TypeAdapter(MeterDriverConfig)


def driver_config(spec: MeterSpec) -> SimDriver | ModbusDriver | MqttDriver | P1Driver:
    """The validated driver settings of ``spec``; raises ``ConfigError`` naming the meter."""
    try:
        return _DRIVER.validate_python({**spec.params, "type": spec.driver})
    except ValidationError as exc:
        issues = [ConfigIssue(file="<site>", path=f"meters[{spec.id}].driver" + _path(err["loc"]),
                              message=err["msg"]) for err in exc.errors()]
        raise ConfigError(issues) from None


def _path(loc: tuple[int | str, ...]) -> str:
    # loc[0] is the union member's tag (``modbus``); the rest is the key path inside it.
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])


def _password(spec: MeterSpec, env: str | None) -> str | None:
    if env is None:
        return None
    if env not in os.environ:
        raise ConfigError([ConfigIssue(
            file="<site>", path=f"meters[{spec.id}].driver.password_env",
            message=f"environment variable {env} is not set",
            hint=f"export {env}=... before starting ampshare")])
    return os.environ[env]


def register_map_for(cfg: ModbusDriver) -> RegisterMap | None:
    """The map a Modbus meter uses: built in, user-defined, or None for SunSpec discovery."""
    if cfg.model == "sunspec":
        return None
    if cfg.model != "custom":
        return BUILTIN_MAPS[cfg.model]
    specs = tuple(RegisterSpec(quantity=Quantity(r.quantity), address=r.address,
                               dtype=DataType(r.type), scale=r.scale,
                               unit=Quantity(r.quantity).unit) for r in cfg.registers)
    return RegisterMap(model="custom", function=cfg.function or "holding",
                       word_order=cfg.word_order or "big",
                       registers=specs, description="user-defined register map")


Links = dict[tuple[object, ...], ModbusLink]


def build_meter(spec: MeterSpec, clock: Clock, *, links: Links | None = None) -> MeterSource:
    """The adapter for ``spec`` (not yet connected: it connects on its first ``read``).

    ``links`` collects Modbus connections by physical link, so that meters built with the same
    dict share one connection per RS-485 port or gateway (``build_meters`` does this).
    """
    cfg = driver_config(spec)
    if isinstance(cfg, ModbusDriver):
        target = target_of(cfg)
        link = None if links is None else links.setdefault(link_key(target), ModbusLink(target))
        return ModbusMeter(spec.id, target, register_map_for(cfg), clock, link=link)
    if isinstance(cfg, MqttDriver):
        values = [TopicValue(quantity=Quantity(q), topic=t, pointer=cfg.value_path.get(q, ""),
                             scale=cfg.scale.get(q, 1.0)) for q, t in cfg.topics.items()]
        return MqttMeter(spec.id, host=cfg.host, port=cfg.port, values=values, clock=clock,
                         username=cfg.username, password=_password(spec, cfg.password_env))
    if isinstance(cfg, P1Driver):
        url = cfg.serial_port or f"socket://{cfg.host}:{cfg.port}"
        return P1Meter(spec.id, url=url, dsmr_version=cfg.dsmr_version, clock=clock)
    # A ``sim`` meter stands still at its base load; the simulator drives its own meters.
    base = cfg.base_load_a
    return FakeMeter(spec.id, clock, current_a=(base, base, base))


def build_meters(specs: Sequence[MeterSpec], clock: Clock) -> tuple[MeterSource, ...]:
    """Adapters for all of a site's meters; Modbus meters on one bus or gateway share it."""
    links: Links = {}
    return tuple(build_meter(s, clock, links=links) for s in specs)


def build_coordinator(spec: MeterSpec, clock: Clock, *,
                      on_reading: Callable[[MeterReading], None] | None = None,
                      source: MeterSource | None = None) -> MeterCoordinator:
    """A coordinator for ``spec`` with its poll interval and stale timeout from the site file
    (polling ``source`` if given, else a new adapter for ``spec``)."""
    return MeterCoordinator(source or build_meter(spec, clock), clock,
                            poll_interval_s=spec.poll_interval_s, timeout_s=spec.timeout_s,
                            on_reading=on_reading)


def build_coordinators(specs: Sequence[MeterSpec], clock: Clock, *,
                       on_reading: Callable[[MeterReading], None] | None = None
                       ) -> tuple[MeterCoordinator, ...]:
    """One coordinator per meter of a site, sharing Modbus links (see ``build_meters``)."""
    return tuple(build_coordinator(s, clock, on_reading=on_reading, source=m)
                 for s, m in zip(specs, build_meters(specs, clock), strict=True))
