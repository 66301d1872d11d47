"""OCPP fan-out: N simulated chargers on one ampshare central system; how long from a new
allocation until every SetChargingProfile is confirmed?

    python3 bench/ocpp_fanout.py                 # N = 100, 1000, 5000, OCPP 1.6
    python3 bench/ocpp_fanout.py --n 100 --protocol 2.0.1

Prints JSON ``{"results": [{"chargers": N, "confirm_all_ms": x, "rss_mb": y, "cpu_s": z,
...}, ...]}``. The central system runs in this process; the simulated charge points run in
``--workers`` separate processes (so that their CPU is not charged to the server), each
connecting its share, booting and starting a transaction. Then, per round, this process sends
one live limit to every charger at once and waits for all N confirmations.

``confirm_all_ms`` is the median over ``--rounds``; ``cpu_s`` the server's CPU time spent in
the measured rounds divided by their number (one round's cost); ``rss_mb`` the server's resident
memory with N connections held; ``connect_s`` how long the fleet took to connect, boot and
start (probe, metering configuration and fallback install included).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import logging
import os
import pstats
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from ampshare.adapters.ocpp import (
    CentralSystem,
    LinkOptions,
    SetLimit,
    SimOptions,
    connect_sim,
)
from ampshare.app import tune_gc
from ampshare.clock import SystemClock
from ampshare.config.sections import OcppSection

PROFILE = bool(os.environ.get("AMPSHARE_BENCH_PROFILE"))  # server hot spots to stderr
FREEZE = bool(os.environ.get("AMPSHARE_BENCH_GC_FREEZE"))  # experiment: gc.freeze() first
THRESHOLD = int(os.environ.get("AMPSHARE_BENCH_GC_THRESHOLD", "0"))  # experiment: gen-0 size
UNTUNED = bool(os.environ.get("AMPSHARE_BENCH_GC_DEFAULT"))  # Python's default GC thresholds


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _rss_mb() -> float:
    # Current (not peak) resident set size, from /proc: pages * page size.
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# --- worker: a share of the fleet ---------------------------------------------------------
async def _worker(url: str, first: int, count: int, protocol: str) -> None:
    # A charger answers fast (no schema validation) and is patient with a busy server.
    opts = SimOptions(meter_interval_s=3600, validate=False, response_timeout_s=300)
    cps: list[Any] = []
    for i in range(first, first + count, 100):
        batch = range(i, min(first + count, i + 100))
        cps += await asyncio.gather(*(connect_sim(url, f"cp{j}", protocol, options=opts)
                                      for j in batch))
    for i in range(0, len(cps), 100):
        await asyncio.gather(*(cp.start_transaction() for cp in cps[i:i + 100]))
    print(json.dumps({"ready": len(cps)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until told
    for cp in cps:
        await cp.close()


# --- server: one ampshare central system ------------------------------------------------
async def _start_workers(url: str, n: int, workers: int, protocol: str) -> list[Any]:
    procs = []
    share = -(-n // workers)
    for w in range(workers):
        first, count = 1 + w * share, min(share, n - w * share)
        if count <= 0:
            break
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker", "--url", url, "--first", str(first),
            "--count", str(count), "--protocol", protocol,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))
    for p in procs:
        line = await asyncio.wait_for(p.stdout.readline(), 900)
        if not line:
            raise RuntimeError("a worker died while connecting")
    return procs


async def _round(cs: CentralSystem, ids: list[str], limit_a: float) -> float:
    lease = time.time() + 120
    t0 = time.perf_counter()
    outs = await asyncio.gather(*(cs.set_limit(SetLimit(charger_id=i, limit_a=limit_a,
                                                        phases=3, lease_until_s=lease))
                                  for i in ids))
    dt = time.perf_counter() - t0
    bad = [o for o in outs if not o.ok]
    if bad:
        raise RuntimeError(f"{len(bad)} not confirmed, e.g. {bad[0]}")
    return dt


async def _measure(n: int, workers: int, rounds: int, protocol: str) -> dict[str, Any]:
    settings = OcppSection(host="127.0.0.1", port=0, auto_register=True,
                           min_write_interval_s=0, call_timeout_s=60,
                           max_messages_per_s=1000, max_burst=1000)
    async with CentralSystem(site=None, settings=settings, clock=SystemClock(),
                             options=LinkOptions(boot_wait_s=5.0)) as cs:
        t0 = time.perf_counter()
        procs = await _start_workers(f"ws://127.0.0.1:{cs.port}/ocpp", n, workers, protocol)
        ids = [f"cp{j}" for j in range(1, n + 1)]
        for i in ids:
            await cs.wait_ready(i, timeout_s=600)
        connect_s = time.perf_counter() - t0
        await _round(cs, ids, 6.0)  # warm-up: first profiles, caches
        if FREEZE:
            gc.freeze()  # the connections' long-lived objects leave the GC's young generations
        if THRESHOLD:
            gc.set_threshold(THRESHOLD, 50, 100)
        cpu0 = _cpu_s()
        prof = cProfile.Profile() if PROFILE else None
        if prof is not None:
            prof.enable()
        times = [await _round(cs, ids, 8.0 + r) for r in range(rounds)]
        cpu = (_cpu_s() - cpu0) / rounds
        if prof is not None:
            prof.disable()
            pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(30)
        rss = _rss_mb()
        for p in procs:
            p.stdin.close()
        await asyncio.gather(*(p.wait() for p in procs))
    return {"chargers": n, "confirm_all_ms": round(statistics.median(times) * 1000, 1),
            "confirm_max_ms": round(max(times) * 1000, 1), "rss_mb": round(rss, 1),
            "cpu_s": round(cpu, 3), "connect_s": round(connect_s, 1), "protocol": protocol,
            "workers": workers, "rounds": rounds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="*", default=[100, 1000, 5000])
    ap.add_argument("--protocol", default="1.6", choices=["1.6", "2.0.1"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    _raise_fd_limit()
    logging.basicConfig(level=logging.ERROR)
    if not UNTUNED:
        tune_gc()  # what ``ampshare run`` does (workers too: they stand in for chargers)
    if args.worker:
        asyncio.run(_worker(args.url, args.first, args.count, args.protocol))
        return
    results = []
    for n in args.n:
        try:
            results.append(asyncio.run(_measure(n, min(args.workers, max(1, n // 50)),
                                                args.rounds, args.protocol)))
        except Exception as e:  # report the failure for this N and go on with the next
            results.append({"chargers": n, "error": repr(e)})
    print(json.dumps({"results": results}, indent=1))


if __name__ == "__main__":
    main()
