"""Independent replays in worker processes (``ampshare capacity``, ``simulate`` with several
policies).

Workers are spawned, not forked: nothing of the parent's threads or locks is copied, and it
works the same on every platform. Each job is a deterministic replay, so the results are those
of running them one after the other, and they come back in the order of the jobs.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from ampshare.errors import AmpshareError

__all__ = ["map_in_processes"]

R = TypeVar("R")


def map_in_processes(
    fn: Callable[..., R],
    jobs: Sequence[tuple[Any, ...]],
    workers: int,
    *,
    on_result: Callable[[R], None] | None = None,
) -> list[R]:
    """``fn(*job)`` for every job, in up to ``workers`` processes (1 or fewer: here, one
    after the other); results in ``jobs`` order. ``on_result`` hears of each as it finishes.
    ``fn`` must be a module-level function and the jobs picklable."""
    if workers <= 1 or len(jobs) <= 1:
        out = []
        for job in jobs:
            out.append(fn(*job))
            if on_result is not None:
                on_result(out[-1])
        return out
    ctx = multiprocessing.get_context("spawn")
    done: dict[int, R] = {}
    try:
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx) as pool:
            futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
            for fut in as_completed(futures):
                done[futures[fut]] = fut.result()
                if on_result is not None:
                    on_result(done[futures[fut]])
    except BrokenProcessPool:
        raise AmpshareError(
            f"a worker process died ({len(done)} of {len(jobs)} replays had finished), most "
            "likely out of memory: run fewer at once (--workers 1 runs them in this process)"
        ) from None
    return [done[i] for i in range(len(jobs))]
