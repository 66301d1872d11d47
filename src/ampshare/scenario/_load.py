"""Reading scenario files: YAML, the ``base`` chain merged, validated, the site resolved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ampshare.config import load_config, parse_config
from ampshare.config.sections import ControlSection, PolicySection
from ampshare.control import ControlSettings
from ampshare.core.allocation import Policy, PolicyName
from ampshare.core.site import Site
from ampshare.errors import ConfigError, ConfigIssue
from ampshare.scenario._model import ScenarioDecl

__all__ = ["Scenario", "load_scenario", "parse_scenario"]

#: Keys that append to the base's list instead of replacing it.
APPEND_KEYS = {"more_events": "events", "more_expect": "expect", "more_evs": "evs"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A validated scenario, ready to run."""

    decl: ScenarioDecl
    site: Site
    settings: ControlSettings
    policy: Policy
    source: str


def _issue(
    file: str, path: str, message: str, hint: str | None = None, line: int | None = None
) -> ConfigError:
    return ConfigError([ConfigIssue(file=file, path=path, message=message, hint=hint, line=line)])


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _issue(
            str(path),
            "",
            f"cannot read: {exc.strerror or exc}",
            "check the path (relative to the scenario file)",
        ) from exc
    try:
        return YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise _issue(
            str(path), "", f"not valid YAML: {getattr(exc, 'problem', exc)}", line=line
        ) from exc


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key, anything else (lists too) is replaced."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def _resolve(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], Any]:
    """The merged mapping of ``path`` and its base chain; also the raw YAML (for lines)."""
    raw = _read_yaml(path)
    if not isinstance(raw, Mapping):
        raise _issue(str(path), "", "a scenario file must be a mapping (key: value)")
    data = _plain(raw)
    base_ref = data.pop("base", None)
    merged: dict[str, Any] = {}
    if base_ref is not None:
        base_path = (path.parent / str(base_ref)).resolve()
        if base_path in seen:
            raise _issue(str(path), "base", f"base chain loops back to {base_path}")
        merged, _ = _resolve(base_path, (*seen, base_path))
        merged["site"] = _rebase_site(merged.get("site"), base_path.parent, path.parent)
    extra = {k: data.pop(k) for k in list(data) if k in APPEND_KEYS}
    merged = _merge(merged, data)
    for key, target in APPEND_KEYS.items():
        if key in extra:
            if not isinstance(extra[key], list):
                raise _issue(str(path), key, "must be a list", line=_line(raw, [key]))
            merged[target] = [*merged.get(target, []), *extra[key]]
    return merged, raw


def _rebase_site(site: Any, base_dir: Path, here: Path) -> Any:
    """A site path in a base file is relative to the base file, not to the one using it."""
    if isinstance(site, str):
        return str((base_dir / site).resolve())
    del here
    return site


def _line(raw: Any, loc: Sequence[Any]) -> int | None:
    """1-based line of the key path in the ruamel tree, as deep as it can follow."""
    node, line = raw, None
    for key in loc:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None and isinstance(node, Mapping) and key in node:
                line = lc.key(key)[0] + 1
            elif lc is not None and isinstance(node, list) and isinstance(key, int):
                line = lc.item(key)[0] + 1
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    return line


def _validation_error(
    exc: ValidationError, file: str, raw: Any, prefix: Sequence[Any] = ()
) -> ConfigError:
    issues = []
    for err in exc.errors():
        loc = [*prefix, *(p for p in err["loc"] if not isinstance(p, str) or p[0] != "_")]
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        issues.append(ConfigIssue(file=file, path=path, message=err["msg"], line=_line(raw, loc)))
    return ConfigError(issues)


def parse_scenario(
    data: Mapping[str, Any], *, source: str, raw: Any = None, here: Path | None = None
) -> Scenario:
    """Validate an already merged scenario mapping and resolve its site."""
    try:
        decl = ScenarioDecl.model_validate(dict(data))
    except ValidationError as exc:
        raise _validation_error(exc, source, raw) from exc
    if isinstance(decl.site, str):
        cfg = load_config((here or Path.cwd()) / decl.site)
    else:
        cfg = parse_config(decl.site, name=f"{source}: site")
    try:
        control = ControlSection(**{**cfg.control.model_dump(), **decl.control})
    except ValidationError as exc:
        raise _validation_error(exc, source, raw, ("control",)) from exc
    try:
        pol = PolicySection(**{**cfg.policy.model_dump(), **decl.policy})
    except ValidationError as exc:
        raise _validation_error(exc, source, raw, ("policy",)) from exc
    names = [p.value for p in PolicyName]
    if pol.name not in names:
        raise _issue(
            source,
            "policy.name",
            f"unknown policy {pol.name!r}",
            f"one of: {', '.join(names)}",
            line=_line(raw, ["policy", "name"]),
        )
    policy = Policy(
        name=PolicyName(pol.name),
        rotation_interval_s=pol.rotation_interval_s,
        deadline_mode=pol.deadline_mode,
    )
    return Scenario(
        decl=decl,
        site=cfg.site,
        settings=ControlSettings(**control.model_dump()),
        policy=policy,
        source=source,
    )


def load_scenario(path: str | Path) -> Scenario:
    """Read ``path`` (and its ``base`` chain) into a ``Scenario``; ``ConfigError`` names the
    file, key path and line of every problem."""
    p = Path(path).resolve()
    merged, raw = _resolve(p, (p,))
    return parse_scenario(merged, source=str(path), raw=raw, here=p.parent)
