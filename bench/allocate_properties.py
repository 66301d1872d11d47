"""The allocator's properties on many more examples than the test suite runs.

    python3 bench/allocate_properties.py [--examples 20000] [--start 0]

Each property of ``tests/test_allocate_properties.py`` is run on ``--examples`` seeded random
cases (the same generator the suite's Hypothesis strategy seeds). Prints JSON with, per
property, how many examples ran and the seeds that failed (reproduce one with
``--start SEED --examples 1``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_allocate_properties as props
from test_allocate_strategies import _input, _site

ALL = ["equal", "fcfs", "priority", "deadline", "planned"]


def _case(seed: int, policies: list[str], **kw: bool) -> tuple[random.Random, object]:
    rnd = random.Random(seed)
    site = _site(rnd, primary=kw.get("primary", True), power=kw.get("power", True))
    return rnd, _input(rnd, site, policies)


def _runs() -> list[tuple[str, Callable[[int], None]]]:
    def inner(name: str) -> Callable[..., None]:
        return getattr(props, name).hypothesis.inner_test  # type: ignore[no-any-return]

    def safety(seed: int) -> None:
        inner("test_every_node_line_primary_power_within_headroom_and_floor_respected")(
            _case(seed, ALL)[1]
        )

    def deterministic(seed: int) -> None:
        inner("test_deterministic")(_case(seed, ALL)[1])

    def work(seed: int) -> None:
        inner("test_work_conserving_up_to_one_step")(_case(seed, ALL)[1])

    def monotone(seed: int) -> None:
        rnd, inp = _case(seed, ["equal"], primary=False)
        inner("test_more_headroom_never_lowers_the_total")(inp, 1.0 + 2.0 * rnd.random())

    def fair(seed: int) -> None:
        _, inp = _case(seed, ["equal"], primary=False, power=False)
        inner("test_equal_is_max_min_fair")(inp)

    def plan_peak(seed: int) -> None:
        rnd, inp = _case(seed, ["planned"])
        inner("test_a_plan_peak_stops_only_current_beyond_the_targets")(inp, 1.2 * rnd.random())

    return [
        ("safety_and_floor", safety),
        ("deterministic", deterministic),
        ("work_conserving", work),
        ("more_headroom_more_total", monotone),
        ("equal_max_min_fair", fair),
        ("plan_peak_beyond_targets_only", plan_peak),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--examples", type=int, default=20000)
    ap.add_argument("--start", type=int, default=0)
    args = ap.parse_args()
    out = []
    for name, run in _runs():
        t0 = time.perf_counter()
        failed = []
        for seed in range(args.start, args.start + args.examples):
            try:
                run(seed)
            except AssertionError:
                failed.append(seed)
        out.append(
            {
                "property": name,
                "examples": args.examples,
                "failed_seeds": failed[:50],
                "failures": len(failed),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)  # progress on long runs
    print(json.dumps({"results": out}))


if __name__ == "__main__":
    main()
