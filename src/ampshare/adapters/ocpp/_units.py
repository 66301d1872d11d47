"""Pure translation helpers: OCPP sampled values and times in, SI values out; limits out.

Both OCPP versions report the same measurands with different shapes (1.6: a string value and a
unit name such as ``kW``; 2.0.1: a number and ``unitOfMeasure {unit, multiplier}``). Both are
turned into ``Sample`` values in SI units (A, W, Wh, %, V), with the phase named by the
*charger's* terminal; the tracker maps terminals to site lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from ampshare.core.site import Charger, Line
from ampshare.errors import InputError

__all__ = [
    "Sample",
    "format_time",
    "parse_time",
    "round_limit_a",
    "sample_from_v16",
    "sample_from_v201",
    "to_si",
]

# Unit name -> factor to the SI unit the core uses (W, Wh, A, V, %). Data, not if-chains.
_UNIT_FACTORS: dict[str, float] = {
    "W": 1.0, "kW": 1e3, "MW": 1e6,
    "Wh": 1.0, "kWh": 1e3, "MWh": 1e6,
    "A": 1.0, "mA": 1e-3, "kA": 1e3,
    "V": 1.0, "mV": 1e-3, "kV": 1e3,
    "Percent": 1.0, "%": 1.0,
}
# OCPP leaves the unit out when it is the measurand's default.
_DEFAULT_UNIT = {"Current": "A", "Power": "W", "Energy": "Wh", "SoC": "Percent", "Voltage": "V"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One sampled value in SI units; ``terminal`` is the charger's own line, if per phase."""

    t_s: float
    measurand: str
    value: float
    terminal: Line | None = None
    context: str | None = None


def parse_time(text: str) -> float:
    """ISO 8601 (``2024-01-01T12:00:00Z``) -> seconds since the epoch; naive means UTC."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError) as e:
        raise InputError(f"bad OCPP timestamp {text!r}: expected ISO 8601") from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def format_time(t_s: float) -> str:
    """Seconds since the epoch -> ISO 8601 UTC with millisecond precision and a ``Z``."""
    dt = datetime.fromtimestamp(t_s, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def to_si(value: float, measurand: str, unit: str | None, multiplier: int = 0) -> float:
    """Scale ``value`` given in ``unit`` (x 10**multiplier) to the measurand's SI unit."""
    name = unit or _DEFAULT_UNIT.get(measurand.split(".", maxsplit=1)[0], "")
    factor = _UNIT_FACTORS.get(name)
    if factor is None:
        raise InputError(f"unsupported unit {name!r} for {measurand}")
    out = value * factor * (10.0**multiplier)
    if not math.isfinite(out):
        raise InputError(f"non-finite value for {measurand}")
    return out


def _terminal(phase: str | None) -> Line | None:
    # "L1", "L1-N" both mean the charger's L1 terminal; "N" or line-to-line values are not
    # a per-terminal current, so they carry no terminal.
    if phase and phase[:2] in ("L1", "L2", "L3") and (len(phase) == 2 or phase[2:] == "-N"):
        return Line(phase[:2])
    return None


def sample_from_v16(t_s: float, sv: dict[str, object]) -> Sample:
    """A 1.6 ``sampledValue`` (snake_case keys) -> ``Sample``; raises ``InputError``."""
    measurand = str(sv.get("measurand") or "Energy.Active.Import.Register")
    try:
        raw = float(str(sv["value"]))
    except (KeyError, ValueError) as e:
        raise InputError(f"sampled value without a number: {sv!r}") from e
    unit = sv.get("unit")
    value = to_si(raw, measurand, str(unit) if unit else None)
    phase = sv.get("phase")
    ctx = sv.get("context")
    return Sample(t_s=t_s, measurand=measurand, value=value,
                  terminal=_terminal(str(phase) if phase else None),
                  context=str(ctx) if ctx else None)


def sample_from_v201(t_s: float, sv: dict[str, object]) -> Sample:
    """A 2.0.1 ``sampledValue`` (snake_case keys) -> ``Sample``; raises ``InputError``."""
    measurand = str(sv.get("measurand") or "Energy.Active.Import.Register")
    raw = sv.get("value")
    if not isinstance(raw, int | float):
        raise InputError(f"sampled value without a number: {sv!r}")
    uom = sv.get("unit_of_measure")
    unit: str | None = None
    mult = 0
    if isinstance(uom, dict):
        unit = str(uom["unit"]) if uom.get("unit") else None
        mult = int(uom.get("multiplier") or 0)
    value = to_si(float(raw), measurand, unit, mult)
    phase = sv.get("phase")
    ctx = sv.get("context")
    return Sample(t_s=t_s, measurand=measurand, value=value,
                  terminal=_terminal(str(phase) if phase else None),
                  context=str(ctx) if ctx else None)


def round_limit_a(charger: Charger, limit_a: float) -> float:
    """The highest value the charger accepts that is not above ``limit_a``.

    Rounds *down* (never over the decided limit): to ``allowed_currents_a`` when the charger
    has a finite set, else to its ``resolution_a`` (0.1 A, whole amps). A result below the
    charger's minimum becomes 0 (pause) when it can pause, else the minimum — the controller
    has already counted a non-pausing charger at its minimum.
    """
    limit_a = min(max(limit_a, 0.0), charger.max_current_a)
    if charger.allowed_currents_a:
        fits = [a for a in charger.allowed_currents_a if a <= limit_a + 1e-9]
        out = max(fits) if fits else 0.0
    else:
        step = charger.resolution_a if charger.resolution_a > 0 else 0.1
        # The epsilon keeps 15.999999 (float noise) from becoming 15.9.
        out = math.floor(limit_a / step + 1e-6) * step
        out = round(out, 1)
    if out < charger.min_current_a:
        return 0.0 if charger.zero_pauses else charger.min_current_a
    return out
