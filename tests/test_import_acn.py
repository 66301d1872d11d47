"""ACN topologies imported as site files keep ACN's constraints exactly.

The proof: for random EVSE currents, ACN's ``|constraint_matrix · (I e^{jφ})|`` for every
constraint equals one of our limited quantities (a node's line current or a transformer's
primary line current, computed by ``ampshare.core.electrical``) with the same limit, and every
limited quantity of ours is one of ACN's (or carries no current at all).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from ampshare.cli._app import _register, app
from ampshare.config import load_site, parse_site
from ampshare.config.acn import acn_to_site_dict
from ampshare.core.electrical import node_line_currents_a, primary_line_currents_a
from ampshare.core.site import Connection, Site
from ampshare.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = Path("/work/shared/data/acn_caltech_jpl/acn_network_topology.json")
if not TOPOLOGY.exists():  # a checkout elsewhere: the copy next to the repo
    TOPOLOGY = ROOT.parent / "shared/data/acn_caltech_jpl/acn_network_topology.json"
pytestmark = pytest.mark.skipif(not TOPOLOGY.exists(), reason="ACN topology file not present")

SAMPLES = 25


@pytest.fixture(scope="module")
def topology() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(TOPOLOGY.read_text(encoding="utf-8"))
    return data


def _acn_values(top: dict[str, Any], currents: np.ndarray) -> np.ndarray:
    """ACN's own formula: |A (I e^{jφ})| per constraint (rows) and sample (columns)."""
    phi = np.radians([e["phase_angle_deg"] for e in top["evses"]])
    z = currents * np.exp(1j * phi)[:, None]
    return np.abs(np.asarray(top["constraint_matrix"]) @ z)


def _our_values(site: Site, ids: list[str], currents: np.ndarray
                ) -> list[tuple[str, float, np.ndarray]]:
    """Every limited quantity of the site: (label, limit, value per sample)."""
    per_sample = []
    for k in range(currents.shape[1]):
        amps = dict(zip(ids, currents[:, k].tolist(), strict=True))
        per_sample.append((node_line_currents_a(site, amps), primary_line_currents_a(site, amps)))
    out = []
    for node in site.nodes:
        for x in range(3):
            if math.isfinite(node.line_limit_a[x]):
                vals = np.array([s[0][node.id][x] for s in per_sample])
                out.append((f"{node.id} L{x + 1}", node.line_limit_a[x], vals))
            if node.primary is not None:
                vals = np.array([s[1][node.id][x] for s in per_sample])
                out.append((f"{node.id} primary {x}", node.primary.line_limit_a, vals))
    return out


@pytest.mark.parametrize("name", ["caltech", "jpl", "office001"])
def test_every_acn_constraint_is_an_equal_site_limit(topology: dict[str, Any], name: str) -> None:
    top = topology[name]
    site = parse_site(acn_to_site_dict(topology, name))
    ids = [e["station_id"] for e in top["evses"]]
    rng = np.random.default_rng(7)
    currents = rng.uniform(0, 32, size=(len(ids), SAMPLES)) * (rng.random((len(ids), SAMPLES))
                                                               > 0.3)
    acn = _acn_values(top, currents)
    ours = _our_values(site, ids, currents)
    for r, cid in enumerate(top["constraint_ids"]):
        limit = top["constraint_limits_A"][r]
        match = [lbl for lbl, lim, v in ours
                 if math.isclose(lim, limit, rel_tol=1e-9) and np.allclose(v, acn[r], atol=1e-6)]
        assert match, f"ACN constraint {cid!r} has no equal limit in the site"
    for label, lim, v in ours:
        if np.allclose(v, 0.0):
            continue  # a line no charger of the node uses
        assert any(math.isclose(lim, top["constraint_limits_A"][r], rel_tol=1e-9) and
                   np.allclose(v, acn[r], atol=1e-6) for r in range(len(acn))), \
            f"site limit {label} ({lim} A) is not an ACN constraint"


def _independent_line_currents(site: Site, amps: dict[str, float]) -> dict[str, np.ndarray]:
    """A second, test-local phasor model: V_a - V_b direction for line-to-line chargers."""
    ang = np.radians(site.voltage.line_angles_deg)
    v = np.exp(1j * ang)
    out = {n.id: np.zeros(3, dtype=complex) for n in site.nodes}
    for c in site.chargers:
        lines = [t.index for t in c.site_lines()]
        z = np.zeros(3, dtype=complex)
        if c.connection.is_line_to_line:
            d = v[lines[0]] - v[lines[1]]
            z[lines[0]] += d / abs(d)
            z[lines[1]] -= d / abs(d)
        else:
            z[lines] += v[lines]
        for nid in site.ancestors(c.node_id):
            out[nid] += z * amps[c.id]
    return out


def test_electrical_agrees_with_an_independent_phasor_model(topology: dict[str, Any]) -> None:
    site = parse_site(acn_to_site_dict(topology, "jpl"))
    rng = np.random.default_rng(3)
    amps = {c.id: float(rng.uniform(0, 32)) for c in site.chargers}
    ours = node_line_currents_a(site, amps)
    for nid, z in _independent_line_currents(site, amps).items():
        assert np.allclose(np.abs(z), ours[nid], atol=1e-9)


def test_caltech_shape(topology: dict[str, Any]) -> None:
    site = parse_site(acn_to_site_dict(topology, "caltech"))
    root = site.root
    assert root.kind.value == "transformer"
    assert root.line_limit_a == pytest.approx((416.6667, 416.6667, 416.6667), rel=1e-4)
    assert root.primary is not None
    assert (root.primary.winding.value, root.primary.winding_ratio) == ("delta", 4.0)
    assert root.primary.line_limit_a == pytest.approx(180.505, rel=1e-4)
    pods = {n.name: n for n in site.nodes[1:]}
    assert set(pods) == {"CC Pod", "AV Pod"}
    assert all(n.line_limit_a == (80.0, 80.0, 80.0) for n in pods.values())
    cc = [c for c in site.chargers if c.node_id == pods["CC Pod"].id]
    assert len(cc) == 8
    assert all(c.allowed_currents_a == (8.0, 16.0, 24.0, 32.0) for c in cc)
    assert all(c.connection is Connection.L1_L2 for c in cc)
    conns = [c.connection.value for c in site.chargers]
    assert (conns.count("L1-L2"), conns.count("L2-L3"), conns.count("L3-L1")) == (26, 14, 14)


def test_jpl_tree_is_derived_from_the_matrix(topology: dict[str, Any]) -> None:
    site = parse_site(acn_to_site_dict(topology, "jpl"))
    assert site.root.line_limit_a == (math.inf,) * 3  # ACN does not limit the service
    transformers = [n for n in site.nodes if n.primary is not None]
    assert sorted(n.line_limit_a[0] for n in transformers) == pytest.approx([125.0, 416.667],
                                                                            rel=1e-4)
    panels = sorted((n.line_limit_a[0], len(site.children(n.id)), n.parent_id)
                    for n in site.nodes if n.kind.value == "subpanel")
    assert [p[0] for p in panels] == [100.0, 100.0, 225.0, 225.0]
    assert len(site.chargers) == 52


def test_example_is_the_current_import(topology: dict[str, Any]) -> None:
    assert load_site(ROOT / "examples" / "workplace-caltech.yaml") == \
        parse_site(acn_to_site_dict(topology, "caltech"))


def _broken(topology: dict[str, Any], edit: Any) -> dict[str, Any]:
    bad = copy.deepcopy(topology)
    edit(bad["caltech"])
    return bad


def _mix_angles(top: dict[str, Any]) -> None:
    # CC Pod's row also counts one L2-L3 EVSE with +1: not the line current of any node.
    row = top["constraint_matrix"][0]
    other = next(i for i, e in enumerate(top["evses"]) if e["phase_angle_deg"] == -90.0)
    row[other] = 1.0


def _overlap(top: dict[str, Any]) -> None:
    # AV Pod takes two of CC Pod's EVSEs but not the others: the sets are not nested.
    cc = [i for i, x in enumerate(top["constraint_matrix"][0]) if x]
    for i in cc[:2]:
        top["constraint_matrix"][1][i] = 1.0


def _uneven_primary(top: dict[str, Any]) -> None:
    top["constraint_limits_A"][5] = 150.0  # Primary A alone lower than B and C


@pytest.mark.parametrize("edit", [_mix_angles, _overlap, _uneven_primary])
def test_inexpressible_constraints_fail_loudly(topology: dict[str, Any], edit: Any) -> None:
    with pytest.raises(InputError, match=r"cannot be expressed|not nested|overlap|primary"):
        acn_to_site_dict(_broken(topology, edit), "caltech")


def test_cli_writes_a_site_file_that_checks(tmp_path: Path) -> None:
    _register()
    out = tmp_path / "jpl.yaml"
    runner = CliRunner()
    result = runner.invoke(app, ["import-acn", str(TOPOLOGY), "--site", "jpl", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "52 chargers" in result.output
    site = load_site(out)
    assert len(site.chargers) == 52
    assert runner.invoke(app, ["check", str(out)]).exit_code == 0


def test_cli_rejects_unknown_site_and_missing_file(tmp_path: Path) -> None:
    _register()
    runner = CliRunner()
    out = tmp_path / "x.yaml"
    bad_site = runner.invoke(app, ["import-acn", str(TOPOLOGY), "--site", "mit", "-o", str(out)])
    assert bad_site.exit_code == 2
    assert "caltech, jpl, office001" in bad_site.output
    missing = runner.invoke(app, ["import-acn", str(tmp_path / "no.json"), "--site", "jpl",
                                  "-o", str(out)])
    assert missing.exit_code == 2
    assert "file not found" in missing.output
    assert not out.exists()


@pytest.mark.parametrize(("topology", "text"), [
    ([1], "JSON object of sites"),
    ({"caltech": {"evses": []}}, "lacks constraint_ids, constraint_limits_A, constraint_matrix"),
    ({"caltech": {"evses": [{"station_id": "x"}], "constraint_ids": [],
                  "constraint_limits_A": [], "constraint_matrix": []}}, "KeyError: 'voltage_V'"),
])
def test_a_malformed_topology_is_an_input_error(topology: Any, text: str) -> None:
    with pytest.raises(InputError, match=text):
        acn_to_site_dict(topology, "caltech")


def test_cli_reports_an_unwritable_output(tmp_path: Path) -> None:
    _register()
    result = CliRunner().invoke(app, ["import-acn", str(TOPOLOGY), "--site", "caltech",
                                      "-o", str(tmp_path / "no-such-dir" / "x.yaml")])
    assert result.exit_code == 1
    assert "cannot write" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
