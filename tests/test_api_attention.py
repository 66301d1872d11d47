"""What the API says about chargers that need a person: over their limit (from the
controller's events, kept across a restart) and cars that will not be ready by their
departure (the planner's word when it runs, else an estimate at the current limit)."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np

from ampshare.cli.demo import demo_site
from ampshare.clock import VirtualClock
from ampshare.control import Event, EventKind, Severity
from ampshare.core.allocation import (
    Allocation,
    ChargerLimit,
    ChargerLimits,
    NodeHeadroom,
    Reason,
    ReasonKind,
    RotationState,
)
from ampshare.core.planner import Plan, PlanStatus, SessionPlan
from ampshare.core.site import Line
from ampshare.core.snapshot import ChargerState, ChargerStatus, Session
from ampshare.store import open_store
from ampshare.web import InMemoryRuntime
from ampshare.web._readiness import readiness, readiness_index
from ampshare.web._schemas import Activity, activity, charger_out
from test_api import (  # the small site's fixtures: runtime, a real server, its client
    DRIVER,
    READ,
    T0,
    client,
    clock,
    runtime,
    store,
)

__all__ = ["client", "clock", "runtime", "store"]  # fixtures, found by pytest by name


def _event(kind: EventKind, t_s: float) -> Event:
    return Event(t_s=t_s, kind=kind, severity=Severity.ALERT, subject="cp01", message="16 A")


def test_over_the_limit_is_shown_until_compliant_again_and_survives_a_restart(
    client: httpx.Client, runtime: InMemoryRuntime, clock: VirtualClock
) -> None:
    def flags() -> dict[str, bool]:
        return {
            c["id"]: c["noncompliant"] for c in client.get("/api/v1/chargers", headers=READ).json()
        }

    assert flags() == {"cp01": False, "cp02": False, "cp03": False}
    runtime.record_control_events([_event(EventKind.NONCOMPLIANT, T0)])
    assert flags() == {"cp01": True, "cp02": False, "cp03": False}
    runtime.record_control_events([_event(EventKind.COMPLIANT_AGAIN, T0 + 20)])
    assert flags()["cp01"] is False

    # Still over the limit when ampshare restarts: the open alert brings the flag back.
    runtime.record_control_events([_event(EventKind.NONCOMPLIANT, T0 + 40)])
    again = InMemoryRuntime(demo_site(3), clock, runtime.store)
    assert again.view().noncompliant == frozenset()
    again.restore()
    assert again.view().noncompliant == {"cp01"}


def test_late_is_estimated_at_the_current_limit_without_a_plan(client: httpx.Client) -> None:
    def cp01() -> dict[str, object]:
        got: dict[str, object] = client.get("/api/v1/chargers/cp01", headers=READ).json()
        return got

    # 20 kWh wanted, no departure declared: nothing to say.
    assert (cp01()["will_not_be_ready"], cp01()["readiness_from"]) == (None, None)
    # 12 A on 3 phases at 230 V is 8.28 kWh an hour: 2 h are too few, 3 h enough.
    for hours, late in ((2.0, True), (3.0, False)):
        r = client.patch(
            "/api/v1/sessions/s1", headers=DRIVER, json={"departure_s": T0 + hours * 3600}
        )
        assert r.status_code == 200
        assert (cp01()["will_not_be_ready"], cp01()["readiness_from"]) == (late, "estimate")


def _rotation(tmp_path: Path) -> InMemoryRuntime:
    """cp01 and cp02 take turns on the garage's 12 A left per line (6 A each on average)."""
    rt = InMemoryRuntime(demo_site(3), VirtualClock(T0), open_store(str(tmp_path / "r.db")))
    for sid, cid in (("a", "cp01"), ("b", "cp02")):
        rt.start_session(
            Session(
                session_id=sid,
                charger_id=cid,
                arrival_s=T0,
                departure_s=T0 + 3600,
                energy_wanted_wh=4_000.0,
            )
        )
    paused = Reason(kind=ReasonKind.PAUSED_ROTATION, node_id="garage", line=Line.L1)
    rt.set_allocation(
        Allocation(
            limits=ChargerLimits.of(
                (
                    ChargerLimit(charger_id="cp01", limit_a=0.0, phases=3, reason=paused),
                    ChargerLimit(
                        charger_id="cp02",
                        limit_a=12.0,
                        phases=3,
                        reason=Reason(kind=ReasonKind.NODE_LINE, node_id="garage", line=Line.L1),
                    ),
                )
            ),
            headroom=(
                NodeHeadroom(
                    node_id="garage",
                    limit_a=(49.0,) * 3,
                    other_load_a=(37.0,) * 3,
                    ev_load_a=(12.0,) * 3,
                    headroom_a=(0.0,) * 3,
                    measured=False,
                    stale=False,
                ),
            ),
            rotation=RotationState(),
        )
    )
    return rt


def test_a_car_waiting_its_turn_is_judged_at_its_average_share(tmp_path: Path) -> None:
    rt = _rotation(tmp_path)
    v = rt.view()
    index = readiness_index(v)
    assert index.turn_share_a[("garage", "L1")] == 6.0  # 12 A left over 2 cars
    # 6 A x 3 x 230 V for 1 h = 4.14 kWh >= 4 kWh: paused now, ready in time all the same.
    assert readiness(v, v.limit("cp01"), v.session_at("cp01"), index) == (False, "estimate")
    rt.edit_session("a", {"energy_wanted_wh": 5_000.0}, by="test")
    v = rt.view()
    assert readiness(v, v.limit("cp01"), v.session_at("cp01"), readiness_index(v)) == (
        True,
        "estimate",
    )
    rt.store.close()


def test_the_plan_decides_when_a_planner_runs(
    client: httpx.Client, runtime: InMemoryRuntime
) -> None:
    client.patch("/api/v1/sessions/s1", headers=DRIVER, json={"departure_s": T0 + 2 * 3600})
    assert client.get("/api/v1/chargers/cp01", headers=READ).json()["will_not_be_ready"] is True
    # The planner expects enough (say the building frees up later): the plan's word counts.
    runtime.set_plan(
        Plan(
            status=PlanStatus.OPTIMAL,
            start_s=T0,
            slot_s=900.0,
            n_slots=8,
            session_ids=("s1",),
            current_a=np.zeros((1, 8)),
            sessions=(
                SessionPlan(
                    session_id="s1",
                    charger_id="cp01",
                    departure_s=T0 + 2 * 3600,
                    requested_wh=20_000.0,
                    expected_wh=20_000.0,
                    will_not_be_ready=False,
                    departure_in_horizon=True,
                ),
            ),
            grid_kw=np.zeros(8),
            battery_kw=np.zeros(8),
            peak_kw=0.0,
        )
    )
    cp = client.get("/api/v1/chargers/cp01", headers=READ).json()
    assert (cp["will_not_be_ready"], cp["readiness_from"]) == (False, "plan")


def test_a_full_car_paused_by_the_controller_is_not_flagged_late(tmp_path: Path) -> None:
    """A car its charger reports SuspendedEV, held at 0 A by the controller (reason
    ``car_full``): the API says so (reason, detail, activity "car not taking power") and does not
    flag it as a car that will not be ready — nothing for a manager to act on; a car paused
    for lack of room still is."""
    rt = _rotation(tmp_path)
    full = Reason(
        kind=ReasonKind.CAR_FULL,
        detail="the car takes no current (SuspendedEV); it is offered some now and then",
    )
    before = rt.view()
    rt.edit_session("a", {"energy_wanted_wh": 30_000.0}, by="test")  # far more than 1 h gives
    rt.set_allocation(
        Allocation(
            limits=ChargerLimits.of(
                (
                    ChargerLimit(charger_id="cp01", limit_a=0.0, phases=3, reason=full),
                    *before.limits[1:],
                )
            ),
            headroom=before.headroom,
            rotation=RotationState(),
        )
    )
    v = rt.view()
    out = charger_out(v, "cp01")
    assert out.reason_kind == "car_full"
    assert out.reason_detail is not None
    assert out.reason_detail.startswith("the car takes no current (SuspendedEV")
    assert out.will_not_be_ready is False
    assert charger_out(v, "cp02").reason_detail is None
    # offered nothing, its charger says SuspendedEVSE: still "car not taking power", not "paused"
    idle = ChargerState(
        charger_id="cp01", t_s=T0, status=ChargerStatus.SUSPENDED_EVSE,
        measured_current_a=(0.0, 0.0, 0.0),
    )
    lim = v.limit("cp01")
    assert activity(v.site.charger("cp01"), idle, lim, v.session_at("cp01")) is (
        Activity.CAR_NOT_DRAWING
    )
    # the same car paused for lack of room: flagged
    rt.set_allocation(
        Allocation(
            limits=ChargerLimits.of(
                (
                    ChargerLimit(
                        charger_id="cp01",
                        limit_a=0.0,
                        phases=3,
                        reason=Reason(kind=ReasonKind.PAUSED_NO_HEADROOM, node_id="garage"),
                    ),
                    *before.limits[1:],
                )
            ),
            headroom=before.headroom,
            rotation=RotationState(),
        )
    )
    assert charger_out(rt.view(), "cp01").will_not_be_ready is True
