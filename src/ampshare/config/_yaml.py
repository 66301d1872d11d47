"""Reading YAML with positions, and finding the line of a key path inside it.

ruamel.yaml's round-trip loader keeps the line and column of every mapping key and sequence
item (``.lc``), which is what lets every error name the line it is about.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from ampshare.errors import ConfigError, ConfigIssue

__all__ = ["Loc", "format_path", "line_of", "load_yaml_fast", "load_yaml_text", "resolve_loc"]

Loc = tuple[str | int, ...]


def load_yaml_fast(text: str, *, name: str) -> Any:
    """Parse YAML text into plain values without positions (the C parser when installed,
    ~4x faster on large sites, else or when it refuses YAML 1.2 the pure-Python one); a syntax
    error is re-read with positions to name its line.

    Both loaders are ruamel's YAML 1.2, so the values are the same as ``load_yaml_text``'s.
    """
    try:
        return YAML(typ="safe").load(text)
    except YAMLError:
        pass
    # libyaml (the C parser) keeps a few YAML 1.1 rules, e.g. it refuses ':' inside a plain
    # scalar in a flow mapping ({topic: shelly/status/em:0}); the pure-Python parser reads
    # YAML 1.2 as the position-keeping loader does. Only a file both refuse is an error.
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        load_yaml_text(text, name=name)  # a syntax error: ConfigError with the line
        # Accepted with positions but not as plain data: a tag such as !!python/object.
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError([ConfigIssue(
            file=name, path="", message=f"YAML value not allowed here: {exc}".splitlines()[0],
            line=mark.line + 1 if mark is not None else None,
            hint="use plain YAML values: numbers, strings, lists and mappings")]) from exc


def load_yaml_text(text: str, *, name: str) -> Any:
    """Parse YAML text keeping positions; a syntax error is a ``ConfigError`` with its line."""
    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            [ConfigIssue(file=name, path="", message=f"YAML syntax error: {problem}", line=line,
                         hint="check indentation, colons and quotes around this line")]
        ) from exc
    except YAMLError as exc:  # e.g. duplicate keys reported without a mark
        raise ConfigError(
            [ConfigIssue(file=name, path="", message=f"YAML error: {exc}", line=None)]
        ) from exc


def _line_in(container: Any, key: str | int) -> int | None:
    lc = getattr(container, "lc", None)
    if lc is None:
        return None
    try:
        pos = lc.key(key) if isinstance(container, Mapping) else lc.item(key)
    except (KeyError, IndexError, TypeError):
        return None
    if pos is None:
        return None
    return int(pos[0]) + 1


def resolve_loc(data: Any, loc: Loc) -> tuple[Loc, int | None]:
    """Follow ``loc`` into ``data`` as far as it goes: the display path and the best line.

    Components that are not in the data (pydantic's union tags such as ``modbus`` in
    ``meters.0.driver.modbus.host``) are dropped from the path, except the last one, which is
    the missing or unexpected key the message is about.
    """
    path: list[str | int] = []
    line = _own_line(data)
    node = data
    for i, comp in enumerate(loc):
        last = i == len(loc) - 1
        found = _child(node, comp)
        if found is _MISSING:
            if last:
                path.append(comp)
            continue
        path.append(comp)
        line = _line_in(node, comp) or line
        node = found
    return tuple(path), line


_MISSING = object()


def _child(node: Any, comp: str | int) -> Any:
    if isinstance(node, Mapping) and comp in node:
        return node[comp]
    if (isinstance(node, Sequence) and not isinstance(node, str) and isinstance(comp, int)
            and 0 <= comp < len(node)):
        return node[comp]
    return _MISSING


def _own_line(node: Any) -> int | None:
    lc = getattr(node, "lc", None)
    line = getattr(lc, "line", None)
    return int(line) + 1 if isinstance(line, int) else None


def line_of(data: Any, loc: Loc) -> int | None:
    """The 1-based line of the deepest part of ``loc`` present in ``data`` (None: no positions)."""
    return resolve_loc(data, loc)[1]


def format_path(loc: Loc) -> str:
    """``("nodes", 2, "limit_a")`` -> ``nodes[2].limit_a``."""
    out = ""
    for comp in loc:
        if isinstance(comp, int):
            out += f"[{comp}]"
        else:
            out += f".{comp}" if out else comp
    return out
