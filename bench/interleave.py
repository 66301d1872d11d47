"""Run a benchmark alternately on this checkout and on a reference commit, N times each.

    python3 bench/interleave.py --ref 88332a6 --bench allocate --runs 8 [-- --repeat 30]
    python3 bench/interleave.py --ref HEAD~5 --bench control --runs 8 [-- --chargers 1000]

Why: this 2-core machine's speed moves by up to 1.7x between runs with nothing else running
on it, so one run's milliseconds say little; runs of the two versions interleaved, with the
ratio taken within each pair, do. The reference is checked out into a temporary git worktree
(removed afterwards) and both versions are timed by *this* checkout's benchmark script, only
``PYTHONPATH`` differs. Progress goes to stderr; stdout gets JSON::

    {"bench": "allocate", "ref": "<sha>", "current": "<sha>", "runs": N,
     "summary": [{"key": "10000", "field": "median_ms", "current_median": x,
                  "current_min": .., "current_max": .., "ref_median": y, ...,
                  "ratio_median": x/y per run, median over runs, "ratio_min": .., "ratio_max": ..}],
     "pairs": [{"current": {...bench JSON...}, "ref": {...}}, ...]}

``key`` is the benchmark's size (``chargers``); ``field`` every timing field it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHES = {"allocate": "allocate.py", "control": "control.py"}


def _git(*args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def _run(script: Path, src: Path, extra: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, str(script), *extra], check=True, capture_output=True, text=True, env=env
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _by_key(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for row in result["results"]:
        key = str(row.get("chargers", row.get("sessions", "")))
        rows[key] = {k: v for k, v in row.items() if k.endswith("_ms")}
    return rows


def summarise(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size and timing field: both versions' median, min and max over the runs, and the
    current/ref ratio taken within each pair (median, min, max over the pairs)."""
    out = []
    first = _by_key(pairs[0]["current"])
    for key, fields in first.items():
        for field in fields:
            cur = [_by_key(p["current"])[key][field] for p in pairs]
            ref = [_by_key(p["ref"]).get(key, {}).get(field) for p in pairs]
            if any(r is None or r <= 0 for r in ref):
                continue
            ratio = [c / r for c, r in zip(cur, ref, strict=True)]  # type: ignore[operator]
            out.append(
                {
                    "key": key,
                    "field": field,
                    "current_median": round(statistics.median(cur), 3),
                    "current_min": round(min(cur), 3),
                    "current_max": round(max(cur), 3),
                    "ref_median": round(statistics.median(ref), 3),  # type: ignore[type-var]
                    "ref_min": round(min(ref), 3),  # type: ignore[type-var]
                    "ref_max": round(max(ref), 3),  # type: ignore[type-var]
                    "ratio_median": round(statistics.median(ratio), 3),
                    "ratio_min": round(min(ratio), 3),
                    "ratio_max": round(max(ratio), 3),
                }
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", required=True, help="the reference commit (any git revision)")
    ap.add_argument("--bench", choices=sorted(BENCHES), default="allocate")
    ap.add_argument("--runs", type=int, default=8, help="pairs of runs")
    ap.add_argument("extra", nargs="*", help="arguments for the benchmark (after --)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    try:
        ref = _git("rev-parse", "--verify", f"{args.ref}^{{commit}}")
    except subprocess.CalledProcessError:
        ap.error(f"--ref {args.ref!r} is not a commit of {ROOT}: give a sha, tag or HEAD~N")
    script = ROOT / "bench" / BENCHES[args.bench]
    with tempfile.TemporaryDirectory(prefix="ampshare-ref-") as tmp:
        tree = Path(tmp) / "ref"
        _git("worktree", "add", "--detach", str(tree), ref)
        try:
            pairs = []
            for i in range(args.runs):
                print(f"run {i + 1}/{args.runs}", file=sys.stderr, flush=True)
                pairs.append(
                    {
                        "ref": _run(script, tree / "src", args.extra),
                        "current": _run(script, ROOT / "src", args.extra),
                    }
                )
        finally:
            _git("worktree", "remove", "--force", str(tree))
    report = {
        "bench": args.bench,
        "ref": ref,
        "current": _git("rev-parse", "HEAD"),
        "runs": args.runs,
        "summary": summarise(pairs),
        "pairs": pairs,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
