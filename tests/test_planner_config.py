"""The ``planner:`` section of the site file and the planner it builds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from ampshare.config.sections import PlannerSection
from ampshare.config.tariff_files import planner_from_section
from ampshare.core.planner import EnergyPriority, Prefer
from ampshare.core.site import Charger, CircuitNode, Connection, NodeKind, Site, VoltageSystem
from ampshare.core.snapshot import Session

SCE = Path("/work/shared/data/tariffs/acnportal_tou/sce_tou_ev_4_march_2019.json")


def site() -> Site:
    root = CircuitNode(
        id="main",
        kind=NodeKind.SERVICE,
        parent_id=None,
        line_limit_a=(32.0, float("inf"), float("inf")),
    )
    return Site(
        name="s",
        voltage=VoltageSystem.EU_230,
        nodes=(root,),
        chargers=(Charger(id="c0", node_id="main", connection=Connection.L1, max_current_a=32.0),),
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tariff_file": "a.json", "price_file": "b.csv"}, "not both"),
        ({"battery_capacity_kwh": 10.0}, "a battery needs"),
        ({"battery_min_soc_pct": 80.0, "battery_max_soc_pct": 20.0}, "below battery_max"),
        ({"pv_kwp": 5.0}, "go together"),
        ({"slot_s": 10.0}, "greater than or equal to 60"),
        ({"horizon": 24}, "Extra inputs are not permitted"),
        # refused with the way to declare it: a meter under meters: with role: pv
        ({"pv_meter": "pv1"}, "declared under meters: with role: pv"),
        ({"prefer": "cheapest"}, "'energy' or 'ready'"),
    ],
)
def test_bad_planner_sections_are_rejected(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PlannerSection.model_validate(fields)


@pytest.mark.skipif(not SCE.exists(), reason="shared tariff data not present")
def test_section_builds_a_planner_with_tariff_battery_and_defaults() -> None:
    section = PlannerSection(
        enabled=True,
        horizon_h=6.0,
        slot_s=900.0,
        tariff_file=SCE.name,
        timezone="America/Los_Angeles",
        battery_capacity_kwh=20.0,
        battery_max_charge_kw=5.0,
        battery_max_discharge_kw=5.0,
        contracted_capacity_kw=7.0,
        default_dwell_h=4.0,
        priority_factor=10.0,
        max_facet_deg=5.0,
        prefer="ready",
        energy_priority="expected",
    )
    mpc = planner_from_section(section, site(), SCE.parent)
    inp = mpc._input(1.57e9, [], 0.0, None)  # what each solve gets
    assert (inp.priority_factor, inp.max_facet_deg, inp.prefer) == (10.0, 5.0, Prefer.READY)
    assert inp.energy_priority is EnergyPriority.EXPECTED
    assert mpc.tariff is not None
    assert mpc.tariff.demand_charge_per_kw(1.57e9) == pytest.approx(15.51)
    assert mpc.battery is not None
    assert mpc.battery.min_soc_wh == pytest.approx(2000.0)
    assert mpc.battery.max_soc_wh == pytest.approx(18000.0)
    assert mpc.contracted_capacity_w == pytest.approx(7000.0)
    t0 = 1_570_000_000.0
    plan = mpc.step(t0, [Session(session_id="a", charger_id="c0", arrival_s=t0)])
    assert plan.n_slots == 24
    assert plan.sessions[0].departure_s == pytest.approx(t0 + 4 * 3600)  # default stay
    ev_kw = plan.current_a[0] * 0.23
    assert np.all(ev_kw + np.maximum(plan.battery_kw, 0) <= 7.0 + 1e-6)  # contract holds
