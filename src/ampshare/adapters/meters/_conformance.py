"""The driver conformance check: one contract for every ``MeterSource``, the fake included.

Run it against a healthy meter (``require_reading=True``) and against a failing one
(``require_reading=False``): either way a source may only return well-formed readings or raise
``DeviceError``; ``close`` is idempotent and a read after ``close`` reconnects.
"""

from __future__ import annotations

import math

from ampshare.adapters.meters._port import MeterSource
from ampshare.clock import Clock
from ampshare.core.snapshot import MeterReading
from ampshare.errors import DeviceError

__all__ = ["check_conformance"]


def _reading_problems(source: MeterSource, r: MeterReading, now_s: float) -> list[str]:
    bad: list[str] = []
    if r.meter_id != source.meter_id:
        bad.append(f"reading.meter_id {r.meter_id!r} != source.meter_id {source.meter_id!r}")
    if not math.isfinite(r.t_s) or r.t_s > now_s:
        bad.append(f"reading.t_s {r.t_s} is not a finite time at or before now ({now_s})")
    for name in ("current_a", "voltage_v", "power_per_line_w"):
        lines = getattr(r, name)
        if lines is None:
            continue
        if len(lines) != 3:
            bad.append(f"{name} has {len(lines)} entries, not 3 (L1, L2, L3)")
        for v in lines:
            if v is not None and not math.isfinite(v):
                bad.append(f"{name} holds a non-finite value {v}")
            if v is not None and name != "power_per_line_w" and v < 0:
                bad.append(f"{name} holds a negative magnitude {v}")
    for name in ("power_w", "energy_wh"):
        v = getattr(r, name)
        if v is not None and not math.isfinite(v):
            bad.append(f"{name} is not finite: {v}")
    if (r.current_a, r.power_w, r.voltage_v, r.energy_wh, r.power_per_line_w) == (None,) * 5:
        bad.append("reading measures nothing")
    return bad


async def _one_read(source: MeterSource, clock: Clock, problems: list[str]) -> bool:
    try:
        reading = await source.read()
    except DeviceError:
        return False
    except Exception as exc:  # the point is to report foreign errors
        problems.append(f"read raised {type(exc).__name__} (not a DeviceError): {exc}")
        return False
    if not isinstance(reading, MeterReading):
        problems.append(f"read returned {type(reading).__name__}, not MeterReading")
        return False
    problems.extend(_reading_problems(source, reading, clock.now_s()))
    return True


async def check_conformance(source: MeterSource, clock: Clock, *, reads: int = 3,
                            require_reading: bool = True) -> list[str]:
    """Problems found with ``source`` (an empty list means it conforms)."""
    problems: list[str] = []
    if not isinstance(source, MeterSource):
        return [f"{type(source).__name__} does not implement MeterSource"]
    if not isinstance(source.meter_id, str) or not source.meter_id:
        problems.append("meter_id must be a non-empty string")
    ok = [await _one_read(source, clock, problems) for _ in range(reads)]
    try:
        await source.close()
        await source.close()
    except Exception as exc:
        problems.append(f"close is not idempotent: {type(exc).__name__}: {exc}")
    ok.append(await _one_read(source, clock, problems))
    if require_reading and not all(ok):
        problems.append(f"expected every read to succeed, got {ok} (last read is after close)")
    await source.close()
    return problems
