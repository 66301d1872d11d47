"""The simulated plant around the controller: the building meter and the replay's records.

``Building`` turns the building-load and PV series into what the site meter sees (per-line
magnitudes at the metered node, balanced at unity power factor for kW series); ``Recorder``
keeps one row per segment; ``metered_site`` gives a site without a meter one at its root.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ampshare.core.site import Measurand, MeterSpec, Site
from ampshare.sim.series import TimeSeries

__all__ = ["SIM_METER_ID", "Building", "Recorder", "metered_site"]

FloatArray = npt.NDArray[np.float64]
SIM_METER_ID = "sim-main"


@dataclass(slots=True)
class Recorder:
    keep_ev: bool
    t: list[float] = field(default_factory=list)
    dt: list[float] = field(default_factory=list)
    rows: list[FloatArray] = field(default_factory=list)
    site_kw: list[float] = field(default_factory=list)
    bld_kw: list[float] = field(default_factory=list)
    bld_a: list[FloatArray] = field(default_factory=list)
    ev: list[FloatArray] = field(default_factory=list)
    single: list[npt.NDArray[np.bool_]] = field(default_factory=list)

    def add(
        self,
        *,
        t: float,
        dt: float,
        rows: FloatArray,
        site_kw: float,
        bld: tuple[FloatArray, float],
        ev: FloatArray,
        single: npt.NDArray[np.bool_],
    ) -> None:
        self.t.append(t)
        self.dt.append(dt)
        self.rows.append(rows)
        self.site_kw.append(site_kw)
        self.bld_a.append(bld[0])
        self.bld_kw.append(bld[1])
        if self.keep_ev:
            self.ev.append(ev.astype(np.float32))
            self.single.append(single.copy())


class Building:
    """Building load minus PV: per-line magnitudes [A] at the metered node and kW."""

    def __init__(self, site: Site, load: TimeSeries | None, pv: TimeSeries | None) -> None:
        self.site = site
        self.load = load
        self.pv = pv
        self.n_lines = len(site.voltage.lines)
        self.v_ln = site.voltage.line_to_neutral_v
        self.mask = np.array([1.0 if k < self.n_lines else 0.0 for k in range(3)])
        if site.voltage.lines and len(site.voltage.lines) == 2:
            self.mask = np.array([1.0, 1.0, 0.0])

    def at(self, t_s: float) -> tuple[FloatArray, float]:
        """(per-line signed current [A], net kW) at ``t_s``; balanced at unity power factor."""
        kw = 0.0
        line_a = np.zeros(3)
        if self.load is not None:
            v = self.load.at(np.array([t_s]))[0]
            if self.load.per_line:
                line_a = np.asarray(v, dtype=np.float64) * self.mask
                kw = float(line_a.sum()) * self.v_ln / 1000.0
            else:
                kw = float(v)
                line_a = self.mask * kw * 1000.0 / (self.n_lines * self.v_ln)
        if self.pv is not None:
            pv_kw = float(self.pv.at(np.array([t_s]))[0])
            kw -= pv_kw
            line_a = line_a - self.mask * pv_kw * 1000.0 / (self.n_lines * self.v_ln)
        return line_a, kw

    def stamps_between(self, a: float, b: float) -> list[float]:
        out: set[float] = set()
        for s in (self.load, self.pv):
            if s is not None:
                i0, i1 = np.searchsorted(s.t_s, [a, b], side="right")
                out.update(float(x) for x in s.t_s[i0:i1] if a < x < b)
        return sorted(out)


def metered_site(site: Site) -> tuple[Site, str]:
    """The site with a meter at its root when it has none (the simulator's building meter
    must be somewhere the controller can read it), and the building node id."""
    if site.meters:
        return site, site.meters[0].node_id
    meter = MeterSpec(
        id=SIM_METER_ID,
        node_id=site.root.id,
        measures=frozenset({Measurand.CURRENT_PER_LINE, Measurand.POWER_TOTAL}),
    )
    return dataclasses.replace(site, meters=(meter,)), site.root.id
