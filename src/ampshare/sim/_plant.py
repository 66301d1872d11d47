"""The simulated plant around the controller: the building meter and the replay's records.

``Building`` turns the building-load and PV series into what the site meter sees (per-line
magnitudes at the metered node, balanced at unity power factor for kW series); ``Battery``
is a stationary battery at the root that follows its setpoint within its limits and charge
bounds; ``Recorder`` keeps one row per segment; ``metered_site`` gives a site without a meter
one at its root.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ampshare.core.planner import Battery as BatteryModel
from ampshare.core.site import Measurand, MeterSpec, Site
from ampshare.core.snapshot import BatteryReading
from ampshare.sim.series import TimeSeries

__all__ = ["SIM_BATTERY_ID", "SIM_METER_ID", "Battery", "Building", "Recorder", "metered_site"]

FloatArray = npt.NDArray[np.float64]
SIM_METER_ID = "sim-main"
SIM_BATTERY_ID = "sim-battery"


@dataclass(slots=True)
class Battery:
    """A stationary battery at the root: it takes its setpoint at once, within its power
    limits, and stops at its charge bounds (as its management system would). ``power_w``
    charge positive; ``charged_wh``/``discharged_wh`` count what went in and out at the
    terminals."""

    model: BatteryModel
    soc_wh: float
    power_w: float = 0.0
    charged_wh: float = 0.0
    discharged_wh: float = 0.0

    @property
    def top_wh(self) -> float:
        m = self.model
        return m.capacity_wh if m.max_soc_wh is None else m.max_soc_wh

    def set(self, power_w: float) -> None:
        m = self.model
        self.power_w = min(max(power_w, -m.max_discharge_w), m.max_charge_w)
        if (self.power_w > 0 and self.soc_wh >= self.top_wh) or (
            self.power_w < 0 and self.soc_wh <= m.min_soc_wh
        ):
            self.power_w = 0.0

    def step(self, dt_s: float) -> float:
        """Run ``dt_s`` at the power set; returns the mean power over it [W] (less than set
        where a charge bound is reached inside, after which it stops)."""
        m = self.model
        h = dt_s / 3600.0
        if h <= 0.0 or self.power_w == 0.0:  # (a dt so short its hours underflow to 0)
            return 0.0
        if self.power_w > 0:
            room_wh = max(0.0, self.top_wh - self.soc_wh) / m.charge_efficiency
            wh = min(self.power_w * h, room_wh)
            self.soc_wh += wh * m.charge_efficiency
            self.charged_wh += wh
        else:
            left_wh = max(0.0, self.soc_wh - m.min_soc_wh) * m.discharge_efficiency
            wh = -min(-self.power_w * h, left_wh)
            self.soc_wh += wh / m.discharge_efficiency
            self.discharged_wh -= wh
        mean_w = wh / h
        if abs(mean_w) < abs(self.power_w) - 1e-9:
            self.power_w = 0.0  # a bound reached: its management system stops it
        return mean_w

    def reading(self, t_s: float) -> BatteryReading:
        return BatteryReading(
            battery_id=SIM_BATTERY_ID,
            t_s=t_s,
            soc_pct=100.0 * self.soc_wh / self.model.capacity_wh,
            power_w=self.power_w,
        )


@dataclass(slots=True)
class Recorder:
    keep_ev: bool
    t: list[float] = field(default_factory=list)
    dt: list[float] = field(default_factory=list)
    rows: list[FloatArray] = field(default_factory=list)
    site_kw: list[float] = field(default_factory=list)
    bld_kw: list[float] = field(default_factory=list)
    bld_a: list[FloatArray] = field(default_factory=list)
    battery_kw: list[float] = field(default_factory=list)
    battery_soc_kwh: list[float] = field(default_factory=list)
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
        battery_kw: float = 0.0,
        battery_soc_kwh: float = 0.0,
    ) -> None:
        self.t.append(t)
        self.dt.append(dt)
        self.rows.append(rows)
        self.site_kw.append(site_kw)
        self.bld_a.append(bld[0])
        self.bld_kw.append(bld[1])
        self.battery_kw.append(battery_kw)
        self.battery_soc_kwh.append(battery_soc_kwh)
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
