"""Decision-step latency: from a meter reading that shows an overload to the last decrease.

For N chargers (3-phase, 32 A, groups of 50 under sub-panels, all with a car), the controller
is brought to a steady state (limits sent, acknowledged and confirmed), then one meter
reading arrives showing the building load jumped so that every car must be lowered. We time
``step`` on that input — it includes ``core.allocate`` and yields one decrease per charger.
``step`` is pure, so the same (state, input) pair is timed repeatedly.

Prints JSON: {"results": [{"chargers": N, "decision_median_ms": x, "decision_p99_ms": y,
"decision_cpu_median_ms": CPU time of the step (less sensitive to a shared machine),
"allocate_median_ms": z (the allocator's share of the step), "control_cpu_median_ms": CPU
time of the step without ``allocate`` (measured inside each timed step),
"tracks_read_cpu_median_ms": CPU time to read every charger's track of the new state once
(``state.tracks`` builds a ``ChargerTrack`` when first read: what a reader of all of them,
such as the MQTT publisher or the simulator, pays after the step), ...}, ...]}
Run: python3 bench/control.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import ampshare.control._step as _step_module
from ampshare.control import (
    CommandAck,
    ControlInputs,
    ControlSettings,
    InstallFallback,
    SetLimit,
    initial_state,
    step,
)
from ampshare.core.allocation import Policy
from ampshare.core.site import (
    Charger,
    CircuitNode,
    Connection,
    Measurand,
    MeterSpec,
    NodeKind,
    Site,
    VoltageSystem,
)
from ampshare.core.snapshot import ChargerState, MeterReading, Session

T0 = 1_700_000_000.0


def build_site(n: int) -> Site:
    groups = max(1, n // 50)
    per_group_a = 50 * 8.0  # room for 8 A per car in each group
    nodes = [
        CircuitNode(
            id="main", kind=NodeKind.SERVICE, parent_id=None, line_limit_a=(n * 8.0 + 100.0,) * 3
        )
    ]
    nodes += [
        CircuitNode(
            id=f"g{g}", kind=NodeKind.GROUP, parent_id="main", line_limit_a=(per_group_a,) * 3
        )
        for g in range(groups)
    ]
    chargers = tuple(
        Charger(
            id=f"c{i}",
            node_id=f"g{i % groups}",
            connection=Connection.THREE_PHASE,
            max_current_a=32,
        )
        for i in range(n)
    )
    meter = MeterSpec(
        id="m",
        node_id="main",
        measures=frozenset({Measurand.CURRENT_PER_LINE}),
        fallback_line_a=(100.0,) * 3,
    )
    return Site(
        name=f"bench-{n}",
        voltage=VoltageSystem.EU_230_400,
        nodes=tuple(nodes),
        chargers=chargers,
        meters=(meter,),
    )


def steady(site: Site, settings: ControlSettings, policy: Policy):  # type: ignore[no-untyped-def]
    """Run the controller until every car has its limit, acknowledged and confirmed."""
    n = len(site.chargers)
    sessions = tuple(
        Session(session_id=f"s{c.id}", charger_id=c.id, arrival_s=T0) for c in site.chargers
    )
    state = initial_state(site, settings)
    now = T0
    res = step(
        site,
        settings,
        policy,
        state,
        ControlInputs(
            readings=(MeterReading(meter_id="m", t_s=now, current_a=(50.0,) * 3),),
            sessions=sessions,
        ),
        now,
    )
    limits = {c.charger_id: c.limit_a for c in res.commands if isinstance(c, SetLimit)}
    acks = tuple(
        CommandAck(
            charger_id=c.charger_id,
            t_s=now + 0.2,
            limit_a=c.limit_a,
            fallback=isinstance(c, InstallFallback),
        )
        for c in res.commands
    )
    now += 1.0
    total = 50.0 + sum(limits.values())
    states = tuple(
        ChargerState(charger_id=cid, t_s=now, measured_current_a=(a, a, a), installed_limit_a=a)
        for cid, a in limits.items()
    )
    res = step(
        site,
        settings,
        policy,
        res.state,
        ControlInputs(
            acks=acks,
            charger_states=states,
            readings=(MeterReading(meter_id="m", t_s=now, current_a=(total,) * 3),),
        ),
        now,
    )
    assert len(limits) == n, f"only {len(limits)} of {n} cars got a limit"
    return res.state, limits, now


def measure(n: int, repeat: int) -> dict[str, float | int]:
    site = build_site(n)
    settings, policy = ControlSettings(), Policy()
    state, limits, now = steady(site, settings, policy)
    # the building jumps by 40 % of the EV load: every car must give some up
    jump = 0.4 * sum(limits.values()) / 3
    total = 50.0 + sum(limits.values()) + jump
    overload = ControlInputs(
        readings=(MeterReading(meter_id="m", t_s=now + 0.5, current_a=(total,) * 3),)
    )
    times, cpu, rest = [], [], []
    inner: list[float] = []
    real = _step_module.allocate

    def timed(inp):  # type: ignore[no-untyped-def]
        t0 = time.process_time()
        out = real(inp)
        inner.append((time.process_time() - t0) * 1000.0)
        return out

    _step_module.allocate = timed
    try:
        for _ in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            res = step(site, settings, policy, state, overload, now + 0.5)
            cpu.append((time.process_time() - c) * 1000.0)
            times.append((time.perf_counter() - t) * 1000.0)
            rest.append(cpu[-1] - inner[-1])
    finally:
        _step_module.allocate = real
    alloc_ms = _allocate_alone(site, settings, policy, state, overload, now + 0.5, repeat)
    read = _tracks_read(site, settings, policy, state, overload, now + 0.5, repeat)
    decreases = [
        c for c in res.commands if isinstance(c, SetLimit) and c.limit_a < limits[c.charger_id]
    ]
    assert len(decreases) == n, f"{len(decreases)} decreases for {n} chargers"
    times.sort()
    return {
        "chargers": n,
        "decision_median_ms": round(statistics.median(times), 3),
        "decision_p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))], 3),
        "decision_cpu_median_ms": round(statistics.median(cpu), 3),
        "allocate_median_ms": round(alloc_ms, 3),
        "control_cpu_median_ms": round(statistics.median(rest), 3),
        "tracks_read_cpu_median_ms": round(read, 3),
        "repeat": repeat,
    }


def _allocate_alone(site, settings, policy, state, inputs, now, repeat):  # type: ignore[no-untyped-def]
    """Median time of ``core.allocate`` on the very input the step built (captured once)."""
    captured = []
    real = _step_module.allocate

    def capture(inp):  # type: ignore[no-untyped-def]
        captured.append(inp)
        return real(inp)

    _step_module.allocate = capture
    try:
        step(site, settings, policy, state, inputs, now)
    finally:
        _step_module.allocate = real
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        real(captured[0])
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def _tracks_read(site, settings, policy, state, inputs, now, repeat):  # type: ignore[no-untyped-def]
    """Median CPU time of reading every track of a fresh step's new state once."""
    times = []
    for _ in range(repeat):
        res = step(site, settings, policy, state, inputs, now)
        c = time.process_time()
        for track in res.state.tracks.values():
            assert track.limit_a is not None
        times.append((time.process_time() - c) * 1000.0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--chargers", type=int, nargs="*", default=[100, 1000])
    args = parser.parse_args()
    print(json.dumps({"results": [measure(n, args.repeat) for n in args.chargers]}))


if __name__ == "__main__":
    main()
