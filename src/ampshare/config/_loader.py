"""Public entry points: load or parse a site file into core values, or raise ``ConfigError``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ampshare.config._build import build
from ampshare.config._problems import Problem
from ampshare.config._yaml import format_path, load_yaml_fast, load_yaml_text, resolve_loc
from ampshare.config.sections import (
    BatterySection,
    ControlSection,
    MqttSection,
    OcppSection,
    PlannerSection,
    PolicySection,
    WebSection,
)
from ampshare.core.site import Site
from ampshare.errors import ConfigError, ConfigIssue

__all__ = ["SiteConfig", "load_config", "load_site", "parse_config", "parse_site", "read_text"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteConfig:
    """A whole site file: the electrical site plus the sections other packages own.
    ``source`` names where it came from (the path, or the ``name`` given to ``parse_config``)."""

    site: Site
    policy: PolicySection
    control: ControlSection
    planner: PlannerSection
    ocpp: OcppSection
    web: WebSection
    source: str
    mqtt: MqttSection | None = None  # no ``mqtt:`` key: no bridge
    battery: BatterySection | None = None  # no ``battery:`` key: no battery to drive


def read_text(path: str | os.PathLike[str]) -> str:
    """The file's text, or a ``ConfigError`` that says why it cannot be read."""
    name = os.fspath(path)
    try:
        return Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        msg, hint = "file not found", "check the path (relative to the current directory)"
    except IsADirectoryError:
        msg, hint = "is a directory, not a site file", "name the .yaml file itself"
    except PermissionError:
        msg, hint = "permission denied", "make the file readable"
    except UnicodeDecodeError as exc:
        msg, hint = f"not UTF-8 text ({exc.reason} at byte {exc.start})", "save it as UTF-8"
    raise ConfigError([ConfigIssue(file=name, path="", message=msg, hint=hint)])


def parse_config(source: str | Mapping[str, Any], *, name: str = "<inline>") -> SiteConfig:
    """Validate YAML text (or an already-parsed mapping) into a ``SiteConfig``.

    Raises ``ConfigError`` listing every problem; with YAML text each names its line.
    """
    # Valid files need no positions: parse fast, and re-read with positions only to report.
    data = load_yaml_fast(source, name=name) if isinstance(source, str) else source
    if data is None:
        raise ConfigError([ConfigIssue(file=name, path="", message="the file is empty",
                                       line=1, hint="start with 'site: <name>' and 'nodes:'")])
    built = build(_plain(data))
    if built.problems or built.top is None or built.site is None:
        located = load_yaml_text(source, name=name) if isinstance(source, str) else data
        raise ConfigError(_issues(built.problems, located, name))
    top = built.top
    return SiteConfig(site=built.site, policy=top.policy, control=top.control,
                      planner=top.planner, ocpp=top.ocpp, web=top.web, mqtt=top.mqtt,
                      battery=top.battery, source=name)


def parse_site(source: str | Mapping[str, Any], *, name: str = "<inline>") -> Site:
    """Validate YAML text (or a mapping, e.g. a site embedded in a scenario) into a ``Site``."""
    return parse_config(source, name=name).site


def load_config(path: str | os.PathLike[str]) -> SiteConfig:
    """Read and validate a site file; ``ConfigError`` names file, key path and line."""
    return parse_config(read_text(path), name=os.fspath(path))


def load_site(path: str | os.PathLike[str]) -> Site:
    """Read and validate a site file into a ``Site``; ``ConfigError`` carries every issue."""
    return load_config(path).site


def _issues(problems: list[Problem], data: Any, name: str) -> list[ConfigIssue]:
    out = []
    for p in problems:
        path, line = resolve_loc(data, p.loc)
        out.append(ConfigIssue(file=name, path=format_path(path), message=p.message, line=line,
                               hint=p.hint))
    return sorted(out, key=lambda i: (i.line or 0, i.path))


def _plain(value: Any) -> Any:
    """ruamel's commented containers and scalar subclasses as plain Python values."""
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value
