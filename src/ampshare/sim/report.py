"""The replay report: one self-contained HTML page with the plots embedded as PNG.

Sections: the metrics of every policy side by side (and the offline optimum), site load
against the binding limits over time, per-line currents at the most loaded nodes, a simulated
battery's power and charge against the import it shaved, energy delivered against requested
per session, and bar charts comparing the policies.
Long replays are drawn as hourly envelopes (the maximum in each hour, so no peak hides) with
a zoom on the busiest day.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from ampshare.sim.run import SimOutcome, SimSpec

__all__ = ["render_report", "write_report"]

FloatArray = npt.NDArray[np.float64]
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")
_LINE_COLORS = ("#8c564b", "#111111", "#7f7f7f")  # IEC-ish: brown, black, grey
_PRIMARY_COLORS = ("#1f77b4", "#17becf", "#9467bd")
_TABLE_KEYS = (
    ("energy_delivered_ratio", "energy delivered", "{:.1%}"),
    ("demands_met_ratio", "demands met", "{:.1%}"),
    ("unmet_kwh_p95", "unmet p95 [kWh]", "{:.1f}"),
    ("peak_site_kw", "peak [kW]", "{:.1f}"),
    ("violation_amp_seconds", "violation [A·s]", "{:,.0f}"),
    ("max_violation_a", "max over [A]", "{:.1f}"),
    ("start_stop_events", "start/stops", "{:,}"),
    ("jain_fairness", "Jain fairness", "{:.3f}"),
    ("energy_cost", "energy cost", "{:,.2f}"),
    ("demand_charge", "demand charge", "{:,.2f}"),
    ("wall_s", "wall [s]", "{:.1f}"),
)


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _dates(t_s: FloatArray) -> npt.NDArray[Any]:
    return np.array([datetime.fromtimestamp(float(t), UTC) for t in t_s])


def _envelope(t_s: FloatArray, values: FloatArray, bin_s: float) -> tuple[FloatArray, FloatArray]:
    """Maximum of ``values`` in each ``bin_s`` bin (rows of a 2-D array are time)."""
    if len(t_s) == 0:
        return t_s, values
    bins = np.floor((t_s - t_s[0]) / bin_s).astype(np.int64)
    uniq, inv = np.unique(bins, return_inverse=True)
    out = np.full((len(uniq), *values.shape[1:]), -np.inf)
    np.maximum.at(out, inv, values)
    return t_s[0] + uniq * bin_s, out


def _time_axis(ax: Axes) -> None:
    loc = AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(loc))  # type: ignore[no-untyped-call]
    ax.grid(True, alpha=0.3)


def _binding_rows(outcomes: Sequence[SimOutcome], k: int = 3) -> list[int]:
    """The ``k`` rows that came closest to (or went furthest over) their limit, judged on the
    first controlled policy (uncontrolled runs would nominate every row)."""
    ref = next((o for o in outcomes if o.policy != "uncontrolled"), outcomes[0]).replay
    lim = ref.compiled.limit_a
    finite = np.isfinite(lim)
    util = np.where(finite, ref.seg_rows_a.max(axis=0) / np.where(finite, lim, 1.0), -1.0)
    out: list[int] = []
    seen: set[str] = set()
    for i in np.argsort(-util):  # the most loaded row of each node, most loaded nodes first
        node = ref.compiled.node_of_row[int(i)]
        if util[i] > 0 and node not in seen:
            out.append(int(i))
            seen.add(node)
    return out[:k]


def _load_figure(outcomes: Sequence[SimOutcome], rows: list[int]) -> Figure:
    """One panel per policy: hourly maximum of the binding rows, their limits dashed."""
    n = len(outcomes)
    fig = Figure(figsize=(12, 2.4 * n + 0.6))
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    for ax, o in zip(axes, outcomes, strict=True):
        rep = o.replay
        t, env = _envelope(rep.seg_t_s, rep.seg_rows_a[:, rows], 3600.0)
        for k, row in enumerate(rows):
            color = _COLORS[k % len(_COLORS)]
            ax.plot(_dates(t), env[:, k], lw=0.9, color=color, label=rep.compiled.labels[row])
            ax.axhline(rep.compiled.limit_a[row], color=color, ls="--", lw=1.0)
        over = o.metrics.get("violation_amp_seconds") or 0
        ax.set_title(f"{o.policy} — violation {over:,.0f} A·s", loc="left", fontsize=10)
        ax.set_ylabel("A, hourly max")
        ax.legend(loc="upper left", fontsize=8, ncols=len(rows))
        _time_axis(ax)
    return fig


def _lines_figure(o: SimOutcome, rows: list[int]) -> Figure:
    """Per-line currents of the nodes owning the binding rows, on the busiest day."""
    rep = o.replay
    cs = rep.compiled
    nodes = list(dict.fromkeys(cs.node_of_row[r] for r in rows))[:2]
    day = _busiest_day(rep.seg_t_s, rep.seg_site_kw)
    sel = (rep.seg_t_s >= day) & (rep.seg_t_s < day + 86400)
    fig = Figure(figsize=(12, 2.6 * len(nodes) + 0.4))
    axes = fig.subplots(len(nodes), 1, sharex=True, squeeze=False)[:, 0]
    for ax, node in zip(axes, nodes, strict=True):
        for r, label in enumerate(cs.labels):
            if cs.node_of_row[r] != node or not np.isfinite(cs.limit_a[r]):
                continue
            line = label.rsplit("/", 1)[-1]
            k = int(line[-1]) - 1
            color = _LINE_COLORS[k] if "primary" not in label else _PRIMARY_COLORS[k]
            style = ":" if "primary" in label else "-"
            ax.step(
                _dates(rep.seg_t_s[sel]),
                rep.seg_rows_a[sel, r],
                where="post",
                lw=1,
                color=color,
                ls=style,
                label=label.split("/", 1)[1],
            )
            ax.axhline(cs.limit_a[r], color=color, ls="--", lw=0.8)
        ax.set_title(
            f"{o.policy}: node {node}, busiest day (limits dashed)", loc="left", fontsize=10
        )
        ax.set_ylabel("A")
        ax.legend(loc="upper left", fontsize=8, ncols=6)
        _time_axis(ax)
    return fig


def _busiest_day(t_s: FloatArray, kw: FloatArray) -> float:
    """Start (UTC midnight) of the day holding the highest site load."""
    if len(t_s) == 0:
        return 0.0
    return float(np.floor(t_s[int(np.argmax(kw))] / 86400.0) * 86400.0)


def _sessions_figure(outcomes: Sequence[SimOutcome]) -> Figure:
    n = len(outcomes)
    cols = min(n, 4)
    nrows = (n + cols - 1) // cols
    fig = Figure(figsize=(3.2 * cols, 3.1 * nrows))
    axes = fig.subplots(nrows, cols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax, o in zip(axes, outcomes, strict=False):
        want = np.array([r.energy_wh for r in o.replay.records]) / 1000
        got = np.minimum(o.replay.delivered_wh / 1000, want)
        met = got >= 0.99 * want
        ax.scatter(want[met], got[met], s=5, color="#2ca02c", alpha=0.5, label="met")
        ax.scatter(want[~met], got[~met], s=5, color="#d62728", alpha=0.6, label="short")
        top = float(want.max()) if len(want) else 1.0
        ax.plot([0, top], [0, top], color="#555555", lw=0.8)
        ax.set_title(f"{o.policy}: {met.mean():.0%} met", fontsize=10)
        ax.set_xlabel("requested kWh")
        ax.grid(True, alpha=0.3)
    for ax in axes[len(outcomes) :]:
        ax.set_visible(False)
    axes[0].set_ylabel("delivered kWh")
    axes[0].legend(fontsize=8, loc="upper left")
    return fig


def _bars_figure(runs: Sequence[Mapping[str, Any]]) -> Figure:
    keys = [
        ("energy_delivered_ratio", "energy delivered"),
        ("demands_met_ratio", "demands met"),
        ("peak_site_kw", "peak kW"),
        ("violation_amp_seconds", "violation A·s"),
    ]
    fig = Figure(figsize=(12, 3.0))
    axes = fig.subplots(1, len(keys))
    names = [str(r["policy"]) for r in runs]
    for ax, (key, title) in zip(axes, keys, strict=True):
        vals = [float(r.get(key) or 0.0) for r in runs]
        ax.barh(names, vals, color=[_COLORS[i % len(_COLORS)] for i in range(len(names))])
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
        ax.grid(True, axis="x", alpha=0.3)
        if key.endswith("ratio"):
            ax.set_xlim(0, 1)
        if ax is not axes[0]:
            ax.set_yticklabels([])
    return fig


def _table(runs: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in _TABLE_KEYS)
    body = []
    for r in runs:
        cells = []
        for key, _, fmt in _TABLE_KEYS:
            v = r.get(key)
            cells.append(f"<td>{'–' if v is None else fmt.format(v)}</td>")
        body.append(f"<tr><th>{html.escape(str(r['policy']))}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th>policy</th>{head}</tr>{''.join(body)}</table>"


_CSS = """body{font-family:system-ui,sans-serif;margin:24px;max-width:1320px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px}
.meta{color:#555;font-size:13px}table{border-collapse:collapse;font-size:13px}
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right}
tr th:first-child{text-align:left}img{max-width:100%}"""


def render_report(
    spec: SimSpec, outcomes: Sequence[SimOutcome], optimum: Mapping[str, Any] | None = None
) -> str:
    """The report as one HTML string."""
    runs: list[dict[str, Any]] = [{"policy": o.policy, **o.metrics} for o in outcomes]
    if optimum:
        runs.append({"policy": "offline optimum", **optimum})
    rows = _binding_rows(outcomes)
    rep = outcomes[0].replay
    t0 = datetime.fromtimestamp(float(rep.seg_t_s[0]), UTC) if len(rep.seg_t_s) else None
    t1 = datetime.fromtimestamp(float(rep.seg_t_s[-1] + rep.seg_dt_s[-1]), UTC) if t0 else None
    meta = (
        f"site <b>{html.escape(spec.site.name)}</b> · {len(spec.site.chargers)} chargers · "
        f"{len(spec.sessions)} sessions · {t0:%Y-%m-%d %H:%M} – {t1:%Y-%m-%d %H:%M} UTC · "
        f"step {spec.step_s:g} s · EV model {'basic' if spec.ev.basic else 'taper'}"
    )
    ctrl = next((o for o in outcomes if o.policy != "uncontrolled"), outcomes[0])
    parts = [
        f"<h1>ampshare simulation report</h1><div class='meta'>{meta}</div>",
        "<h2>Metrics</h2>",
        _table(runs),
        "<p class='meta'>Violations are exact phasor line currents above the rated limit "
        "(building load added as a magnitude); demands met = sessions with ≥ 99 % of their "
        "request.</p>",
        "<h2>Policies side by side</h2>",
        _img(_bars_figure(runs)),
        "<h2>Site load</h2>",
        _img(_power_figure(outcomes)),
    ]
    if rows:
        parts += [
            "<h2>Binding limits over time</h2>",
            _img(_load_figure(outcomes, rows)),
            "<h2>Per-line currents</h2>",
            _img(_lines_figure(ctrl, rows)),
        ]
    for o in outcomes:
        if o.replay.seg_battery_kw is not None and o.replay.seg_battery_soc_kwh is not None:
            parts += [f"<h2>Battery ({html.escape(o.policy)})</h2>", _img(_battery_figure(o))]
    parts += [
        "<h2>Energy per session: delivered against requested</h2>",
        _img(_sessions_figure(outcomes)),
    ]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>ampshare simulation"
        f"</title><style>{_CSS}</style></head><body>{''.join(parts)}</body></html>"
    )


def _img(fig: Figure) -> str:
    return f"<img alt='' src='data:image/png;base64,{_png(fig)}'>"


def write_report(
    path: str | Path,
    spec: SimSpec,
    outcomes: Sequence[SimOutcome],
    optimum: Mapping[str, Any] | None = None,
) -> None:
    Path(path).write_text(render_report(spec, outcomes, optimum), encoding="utf-8")


def _power_figure(outcomes: Sequence[SimOutcome]) -> Figure:
    fig = Figure(figsize=(12, 3.4))
    ax = fig.subplots()
    base = outcomes[0].replay
    t, bld = _envelope(base.seg_t_s, base.seg_building_kw, 3600.0)
    ax.fill_between(_dates(t), 0, bld, color="#cccccc", label="building − PV", step="post")
    for o, color in zip(outcomes, _COLORS, strict=False):
        t, kw = _envelope(o.replay.seg_t_s, o.replay.seg_site_kw, 3600.0)
        ax.plot(_dates(t), kw, lw=0.9, color=color, label=o.policy)
    ax.set_ylabel("site kW (hourly max)")
    ax.set_title("Site load: building plus EVs, every policy", loc="left", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, ncols=4)
    _time_axis(ax)
    return fig


def _battery_figure(o: SimOutcome) -> Figure:
    """What a simulated battery did: the site's import with it against the import the same
    replay would have had without its power (hourly maxima, so a shaved peak shows), and its
    power (charge up, discharge down) with its stored energy."""
    rep = o.replay
    assert rep.seg_battery_kw is not None
    assert rep.seg_battery_soc_kwh is not None
    bat_kw = rep.seg_battery_kw
    fig = Figure(figsize=(12, 5.2))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1.1, 1.0]})
    t, with_bat = _envelope(rep.seg_t_s, rep.seg_site_kw, 3600.0)
    _, without = _envelope(rep.seg_t_s, rep.seg_site_kw - bat_kw, 3600.0)
    days = _dates(t)
    top.plot(days, without, lw=0.8, color="#999999", label="import without the battery")
    top.plot(days, with_bat, lw=1.0, color=_COLORS[0], label="import with it")
    top.axhline(float(rep.seg_site_kw.max(initial=0.0)), color=_COLORS[0], ls="--", lw=0.8)
    top.set_ylabel("site kW (hourly max)")
    charged, discharged = rep.battery_kwh or (0.0, 0.0)
    top.set_title(
        f"{o.policy}: peak {float(rep.seg_site_kw.max(initial=0.0)):.1f} kW with the battery, "
        f"{float((rep.seg_site_kw - bat_kw).max(initial=0.0)):.1f} kW without its power · "
        f"{charged:,.1f} kWh in, {discharged:,.1f} kWh out",
        loc="left",
        fontsize=10,
    )
    top.legend(loc="upper right", fontsize=8, ncols=2)
    _time_axis(top)
    _, up = _envelope(rep.seg_t_s, np.maximum(bat_kw, 0.0), 3600.0)
    _, down = _envelope(rep.seg_t_s, np.maximum(-bat_kw, 0.0), 3600.0)
    bottom.fill_between(days, 0, up, step="post", color="#2ca02c", alpha=0.6, label="charging")
    bottom.fill_between(
        days, 0, -down, step="post", color="#ff7f0e", alpha=0.7, label="discharging"
    )
    bottom.axhline(0.0, color="#555555", lw=0.6)
    bottom.set_ylabel("battery kW")
    soc_ax = bottom.twinx()
    soc_ax.plot(
        _dates(rep.seg_t_s + rep.seg_dt_s),
        rep.seg_battery_soc_kwh,
        color="#111111",
        lw=0.9,
        label="stored",
    )
    soc_ax.set_ylabel("stored kWh")
    soc_ax.set_ylim(bottom=0.0)
    handles = bottom.get_legend_handles_labels()
    more = soc_ax.get_legend_handles_labels()
    bottom.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", fontsize=8, ncols=3)
    _time_axis(bottom)
    return fig
