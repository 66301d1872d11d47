"""Phasor accounting against hand-computed values (balanced delta loads, ACN's Caltech rows)."""

from __future__ import annotations

import cmath
import math

import numpy as np
import pytest

from ampshare.core.electrical import (
    charger_power_w,
    connection_phasors,
    node_line_currents_a,
    primary_line_currents_a,
    primary_matrix,
)
from ampshare.core.site import (
    Charger,
    CircuitNode,
    Connection,
    NodeKind,
    PhaseRotation,
    PrimaryWinding,
    Site,
    TransformerPrimary,
    VoltageSystem,
)

INF = math.inf


def _site(voltage: VoltageSystem, chargers: list[Charger], primary: bool = False) -> Site:
    prim = TransformerPrimary(winding=PrimaryWinding.DELTA, winding_ratio=4.0, line_limit_a=180.5)
    nodes = (
        CircuitNode(
            id="root",
            kind=NodeKind.TRANSFORMER,
            parent_id=None,
            line_limit_a=(400.0, 400.0, 400.0),
            primary=prim if primary else None,
        ),
        CircuitNode(
            id="pod", kind=NodeKind.GROUP, parent_id="root", line_limit_a=(80.0, 80.0, 80.0)
        ),
    )
    return Site(name="t", voltage=voltage, nodes=nodes, chargers=tuple(chargers))


def _c(
    cid: str, conn: Connection, node: str = "pod", rot: PhaseRotation = PhaseRotation.L1L2L3
) -> Charger:
    return Charger(id=cid, node_id=node, connection=conn, phase_rotation=rot, max_current_a=32.0)


def test_line_to_neutral_with_rotation_lands_on_the_rotated_line() -> None:
    c = _c("a", Connection.L1, rot=PhaseRotation.L2L3L1)
    z = connection_phasors(_site(VoltageSystem.EU_230_400, [c]), c)
    assert np.allclose(np.abs(z), [0.0, 1.0, 0.0])
    assert cmath.phase(z[1]) == pytest.approx(math.radians(-120.0))


def test_line_to_line_208_flows_in_phase_with_the_line_voltage_difference() -> None:
    c = _c("ab", Connection.L1_L2)
    z = connection_phasors(_site(VoltageSystem.US_120_208, [c]), c)
    assert math.degrees(cmath.phase(z[0])) == pytest.approx(30.0)
    assert z[1] == pytest.approx(-z[0])
    assert z[2] == 0


def test_balanced_delta_load_gives_sqrt3_line_currents() -> None:
    cs = [_c("ab", Connection.L1_L2), _c("bc", Connection.L2_L3), _c("ca", Connection.L3_L1)]
    site = _site(VoltageSystem.US_120_208, cs)
    cur = node_line_currents_a(site, {"ab": 10.0, "bc": 10.0, "ca": 10.0})
    assert cur["pod"] == pytest.approx((10 * math.sqrt(3),) * 3)
    assert cur["root"] == pytest.approx(cur["pod"])


def test_two_line_to_line_chargers_sharing_a_line_add_as_phasors_not_magnitudes() -> None:
    cs = [_c("ab", Connection.L1_L2), _c("ca", Connection.L3_L1)]
    cur = node_line_currents_a(_site(VoltageSystem.US_120_208, cs), {"ab": 10.0, "ca": 10.0})
    # L1 carries 10∠30° and -10∠150° = 10∠-30°: 60 degrees apart, so 10·√3, not 20.
    assert cur["pod"][0] == pytest.approx(10 * math.sqrt(3))
    assert cur["pod"][1] == pytest.approx(10.0)
    assert cur["pod"][2] == pytest.approx(10.0)


def test_split_phase_240_loads_both_legs_fully() -> None:
    c = _c("x", Connection.L1_L2)
    cur = node_line_currents_a(_site(VoltageSystem.US_120_240, [c]), {"x": 40.0})
    assert cur["root"] == pytest.approx((40.0, 40.0, 0.0))


def test_three_phase_and_one_phase_mode() -> None:
    c = _c("x", Connection.THREE_PHASE, rot=PhaseRotation.L3L1L2)
    site = _site(VoltageSystem.EU_230_400, [c])
    assert node_line_currents_a(site, {"x": 16.0})["pod"] == pytest.approx((16.0,) * 3)
    # One phase: the car uses the charger's L1 terminal, which sits on site L3.
    assert node_line_currents_a(site, {"x": 16.0}, {"x": 1})["pod"] == pytest.approx(
        (0.0, 0.0, 16.0)
    )


def test_delta_primary_reproduces_acn_caltech_rows() -> None:
    cs = [_c("ab", Connection.L1_L2), _c("bc", Connection.L2_L3), _c("ca", Connection.L3_L1)]
    site = _site(VoltageSystem.US_120_208, cs, primary=True)
    row_a = primary_matrix(site.root.primary)[0]
    coef = {c.id: row_a @ connection_phasors(site, c) for c in cs}
    # ACN: Primary A = 0.25·I_ab∠30° - 0.5·I_ca∠150° + 0.25·I_bc∠-90°
    assert coef["ab"] == pytest.approx(0.25 * cmath.exp(1j * math.radians(30)))
    assert coef["ca"] == pytest.approx(-0.5 * cmath.exp(1j * math.radians(150)))
    assert coef["bc"] == pytest.approx(0.25 * cmath.exp(1j * math.radians(-90)))
    prim = primary_line_currents_a(site, {"ab": 32.0, "bc": 0.0, "ca": 0.0})
    # the AB current enters primary B twice (once from each of its secondary lines)
    assert prim["root"] == pytest.approx((8.0, 16.0, 8.0))


def test_power_per_connection() -> None:
    site = _site(VoltageSystem.EU_230_400, [])
    assert charger_power_w(site, _c("x", Connection.THREE_PHASE), 16.0) == pytest.approx(11040.0)
    assert charger_power_w(site, _c("x", Connection.THREE_PHASE), 16.0, 1) == pytest.approx(3680.0)
    us = _site(VoltageSystem.US_120_208, [])
    assert charger_power_w(us, _c("x", Connection.L1_L2), 32.0) == pytest.approx(6656.0)
    assert charger_power_w(us, _c("x", Connection.L2), 16.0) == pytest.approx(1920.0)
