"""The one error hierarchy of ampshare, named by what the caller can do about it.

::

    AmpshareError                     root: only the supervisor catches this broadly
    ├── ConfigError                   a config file is wrong: fix the file (carries every issue)
    ├── InputError                    a request, frame or data file is wrong: reject it, keep going
    ├── DeviceError                   a meter or charger misbehaved: retry / mark stale
    │   ├── DeviceUnavailable         no answer (timeout, refused, disconnected)
    │   └── DeviceProtocolError       an answer we cannot use (garbage, CallError, bad frame)
    ├── StoreError                    persistence failed: the operation did not happen
    └── InfeasibleError               a solver or allocator could not satisfy hard constraints

Adapters translate foreign exceptions (pymodbus, websockets, sqlite3 …) into these at the
boundary, so code above them never imports a driver's exception type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "AmpshareError",
    "ConfigError",
    "ConfigIssue",
    "DeviceError",
    "DeviceProtocolError",
    "DeviceUnavailable",
    "InfeasibleError",
    "InputError",
    "StoreError",
]


class AmpshareError(Exception):
    """Root of every error ampshare raises on purpose."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigIssue:
    """One problem in a config file: where it is, what is wrong, and what would be valid.

    ``path`` is the key path such as ``nodes[2].limit_a``; ``line`` is 1-based (None when the
    problem is not tied to one place in the file).
    """

    file: str
    path: str
    message: str
    line: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        text = f"{where}: {self.path or '<root>'}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class ConfigError(AmpshareError):
    """A configuration file is invalid; ``issues`` lists every problem found, not just the first."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues) or "invalid configuration")


class InputError(AmpshareError):
    """Bad external input (API request, OCPP payload, data file): reject it and keep running."""


class DeviceError(AmpshareError):
    """A device (meter, charger) failed; the caller retries later or treats its data as stale."""


class DeviceUnavailable(DeviceError):
    """The device did not answer: timeout, connection refused or dropped."""


class DeviceProtocolError(DeviceError):
    """The device answered with something unusable: garbage registers, a CallError, a bad frame."""


class StoreError(AmpshareError):
    """The store could not complete an operation; nothing was half-written."""


class InfeasibleError(AmpshareError):
    """Hard constraints cannot all be met (for example a plan with no feasible solution)."""
