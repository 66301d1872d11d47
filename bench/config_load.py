"""How long validating a large site file takes (load_site, dump_site, the check tree).

    python3 bench/config_load.py [--chargers 5000] [--panels 100] [--expanded]

``--expanded`` writes one line per charger (as ``import-acn`` does) instead of ``count:`` rows.

Prints one JSON object with the timings in seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console

from ampshare.cli.check import render_site_tree
from ampshare.cli.import_acn import site_yaml
from ampshare.config import dump_site, load_site, parse_site


def site_text(chargers: int, panels: int) -> str:
    per = chargers // panels
    lines = ["site: bench", 'voltage: "230/400"', "nodes:", "  - {id: service, limit_a: 4000}"]
    lines += [f"  - {{id: p{k}, parent: service, limit_a: 400}}" for k in range(panels)]
    lines.append("chargers:")
    lines += [f'  - {{id: "p{k}-{{n}}", count: {per}, node: p{k}, connection: L1, '
              'rotation: cycle, max_a: 32}' for k in range(panels)]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chargers", type=int, default=5000)
    ap.add_argument("--panels", type=int, default=100)
    ap.add_argument("--expanded", action="store_true")
    args = ap.parse_args()
    text = site_text(args.chargers, args.panels)
    if args.expanded:
        text = site_yaml(dump_site(parse_site(text)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        path.write_text(text, encoding="utf-8")
        t0 = time.perf_counter()
        site = load_site(path)
        t1 = time.perf_counter()
        dump_site(site)
        t2 = time.perf_counter()
        Console(file=io.StringIO(), width=200).print(render_site_tree(site))
        t3 = time.perf_counter()
    print(json.dumps({"chargers": len(site.chargers), "expanded": args.expanded,
                      "nodes": len(site.nodes),
                      "load_site_s": round(t1 - t0, 3), "dump_site_s": round(t2 - t1, 3),
                      "check_tree_s": round(t3 - t2, 3)}))


if __name__ == "__main__":
    main()
