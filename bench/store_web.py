"""Store and API throughput: prints one JSON object.

    python3 bench/store_web.py [--chargers 60] [--requests 200]

- ``samples_per_s``: time-series rows appended per second (one transaction per 1 s cycle of
  ``chargers`` x 2 + 24 node series, as the recorder writes them)
- ``events_per_s``: durable event inserts (one fsync each on SQLite)
- ``history_24h_ms``: one series, 24 h of 1 s samples, read back at 300 s resolution
- ``api_chargers_ms``/``api_site_ms``: GET latency over loopback (median, p95)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from ampshare.cli.demo import demo_site
from ampshare.clock import VirtualClock
from ampshare.core.allocate import allocate
from ampshare.core.snapshot import MeterReading, Session
from ampshare.store import EventRecord, SeriesPoint, open_store
from ampshare.web import InMemoryRuntime, Role, TokenAuth, create_app
from ampshare.web.testing import serve

T0 = 1_749_999_900.0  # a multiple of 300 s, so buckets line up


def _store_numbers(folder: Path, chargers: int) -> dict[str, float]:
    store = open_store(str(folder / "bench.db"))
    per_cycle = chargers * 2 + 24
    cycles = 300
    t = time.perf_counter()
    for i in range(cycles):
        store.append(
            [SeriesPoint(series=f"s{k}", t_s=T0 + i, value=float(k)) for k in range(per_cycle)]
        )
    samples_per_s = cycles * per_cycle / (time.perf_counter() - t)
    n = 200
    t = time.perf_counter()
    for i in range(n):
        store.add_event(EventRecord(t_s=T0 + i, kind="bench", message="x"))
    events_per_s = n / (time.perf_counter() - t)
    day = [SeriesPoint(series="day", t_s=T0 + i, value=float(i % 97)) for i in range(86_400)]
    for i in range(0, len(day), 3600):
        store.append(day[i : i + 3600])
    t = time.perf_counter()
    pts = store.history("day", T0, T0 + 86_400, 300.0)
    history_ms = 1000 * (time.perf_counter() - t)
    assert len(pts) == 288
    store.close()
    return {
        "samples_per_s": round(samples_per_s),
        "events_per_s": round(events_per_s, 1),
        "history_24h_ms": round(history_ms, 1),
    }


def _api_numbers(folder: Path, chargers: int, requests: int) -> dict[str, object]:
    store = open_store(str(folder / "api.db"))
    rt = InMemoryRuntime(
        demo_site(chargers, main_a=400.0, garage_a=300.0),
        VirtualClock(T0),
        store,
        allocator=allocate,
    )
    for i, c in enumerate(demo_site(chargers).chargers[::2]):
        rt.start_session(Session(session_id=f"s{i}", charger_id=c.id, arrival_s=T0))
    rt.update_meter(MeterReading(meter_id="m-main", t_s=T0, current_a=(100.0,) * 3))
    app = create_app(rt, store, TokenAuth.from_tokens({"t": Role.READ}))
    out: dict[str, object] = {}
    with serve(app) as url, httpx.Client(base_url=url, headers={"Authorization": "Bearer t"}) as c:
        for path in ("/api/v1/chargers", "/api/v1/site"):
            times = []
            for _ in range(requests):
                t = time.perf_counter()
                c.get(path).raise_for_status()
                times.append(1000 * (time.perf_counter() - t))
            times.sort()
            key = "api_" + path.rsplit("/", 1)[1] + "_ms"
            out[key] = {
                "median": round(statistics.median(times), 2),
                "p95": round(times[int(0.95 * len(times)) - 1], 2),
            }
    store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chargers", type=int, default=60)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        result = {
            "chargers": args.chargers,
            **_store_numbers(Path(d), args.chargers),
            **_api_numbers(Path(d), args.chargers, args.requests),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
