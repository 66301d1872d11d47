"""A picture of a scenario run: node line currents against their limits, and every charger's
limit and its car's draw, on one time axis."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ampshare.errors import InputError
from ampshare.scenario._runner import RunResult

__all__ = ["plot_result"]

MAX_NODES = 4


def plot_result(result: RunResult, path: str | Path, node_ids: list[str]) -> Path:
    """Save a PNG of a run made with ``trace=True``; ``node_ids`` in site order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = result.trace
    if tr is None:
        raise InputError("this run kept no trace: run it with trace=True to plot it")
    t = np.asarray(tr.t_s)
    cur = np.stack(tr.node_a)  # ticks x nodes x 3
    lim = np.stack(tr.limit_a)
    shown = node_ids[:MAX_NODES]
    fig, axes = plt.subplots(
        len(shown) + 1, 1, figsize=(10, 2.6 * (len(shown) + 1)), sharex=True, squeeze=False
    )
    for row, nid in enumerate(shown):
        ax = axes[row][0]
        j = node_ids.index(nid)
        for k, name in enumerate(("L1", "L2", "L3")):
            if np.isfinite(lim[:, j, k]).any():
                ax.plot(t, cur[:, j, k], lw=1.2, label=f"{name} current")
        ax.plot(
            t,
            np.nanmin(np.where(np.isfinite(lim[:, j, :]), lim[:, j, :], np.nan), axis=1),
            "k--",
            lw=1,
            label="limit",
        )
        ax.set_ylabel(f"{nid} [A]")
        ax.legend(loc="upper right", fontsize=7, ncol=4)
        ax.grid(alpha=0.3)
    ax = axes[-1][0]
    many = len(tr.charger_draw_a) > 8
    for cid, draw in tr.charger_draw_a.items():
        (line,) = ax.plot(t, draw, lw=1, label=None if many else f"{cid} draw")
        if not many:
            ax.plot(
                t,
                tr.charger_limit_a[cid],
                "--",
                lw=0.8,
                color=line.get_color(),
                label=f"{cid} limit",
            )
    ax.set_ylabel("per charger [A]")
    ax.set_xlabel("scenario time [s]")
    if not many:
        ax.legend(loc="upper right", fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    verdict = "PASS" if result.passed else "FAIL"
    fig.suptitle(f"{result.name}  [{verdict}]", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
