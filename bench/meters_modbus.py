"""Modbus meter read latency over loopback TCP, per register map, and pure decode throughput.

Usage: python3 bench/meters_modbus.py [--reads N]
Prints one JSON object. Latency is one full ``ModbusMeter.read()`` (all blocks of the map,
decode, plausibility checks) against a pymodbus server in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from ampshare.adapters.meters import (
    BUILTIN_MAPS,
    ModbusMeter,
    ModbusMeterServer,
    ModbusTarget,
    decode_map,
    encode_map,
)
from ampshare.cli.meters import profile_values
from ampshare.clock import SystemClock


async def _latency(model: str, reads: int) -> dict[str, float]:
    values = profile_values(7000.0, energy_wh=1e6)
    server = (ModbusMeterServer.for_sunspec(values) if model == "sunspec"
              else ModbusMeterServer.for_map(BUILTIN_MAPS[model], values))
    port = await server.start()
    meter = ModbusMeter("bench", ModbusTarget(host="127.0.0.1", port=port),
                        None if model == "sunspec" else BUILTIN_MAPS[model], SystemClock())
    await meter.read()  # connect (and SunSpec discovery) outside the timing
    samples = []
    for _ in range(reads):
        t0 = time.perf_counter()
        await meter.read()
        samples.append((time.perf_counter() - t0) * 1000)
    await meter.close()
    await server.stop()
    samples.sort()
    return {"median_ms": round(statistics.median(samples), 3),
            "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 3)}


def _decode_rate(n: int) -> float:
    rmap = BUILTIN_MAPS["sdm630"]
    regs = encode_map(rmap, profile_values(7000.0, energy_wh=1e6))
    t0 = time.perf_counter()
    for _ in range(n):
        decode_map(rmap, regs)
    return n / (time.perf_counter() - t0)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reads", type=int, default=200)
    args = ap.parse_args()
    out = {"reads_per_model": args.reads, "latency": {}}
    for model in [*sorted(BUILTIN_MAPS), "sunspec"]:
        out["latency"][model] = await _latency(model, args.reads)
    out["sdm630_decodes_per_s"] = round(_decode_rate(20_000))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    import logging

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    asyncio.run(main())
