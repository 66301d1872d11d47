"""The REST API: auth roles, the live read model, session edits, admin changes, bad input."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ampshare.cli.demo import demo_site
from ampshare.clock import VirtualClock
from ampshare.core.allocation import (
    Allocation,
    ChargerLimit,
    ChargerLimits,
    NodeHeadroom,
    Reason,
    ReasonKind,
    RotationState,
)
from ampshare.core.site import Line
from ampshare.core.snapshot import ChargerState, ChargerStatus, MeterReading, Session
from ampshare.store import SqlStore, open_store
from ampshare.web import InMemoryRuntime, Role, TokenAuth, create_app, record_once
from ampshare.web.testing import serve

T0 = 1_750_000_020.0  # a whole minute, so history buckets line up
TOKENS = {"r-token": Role.READ, "d-token": Role.DRIVER, "a-token": Role.ADMIN}
READ = {"Authorization": "Bearer r-token"}
DRIVER = {"Authorization": "Bearer d-token"}
ADMIN = {"Authorization": "Bearer a-token"}


def _allocation(limit_cp01: float) -> Allocation:
    inf = float("inf")
    return Allocation(
        limits=ChargerLimits.of(
            (
                ChargerLimit(
                    charger_id="cp01",
                    limit_a=limit_cp01,
                    phases=3,
                    reason=Reason(kind=ReasonKind.NODE_LINE, node_id="garage", line=Line.L2),
                ),
                ChargerLimit(
                    charger_id="cp02",
                    limit_a=0.0,
                    phases=3,
                    reason=Reason(kind=ReasonKind.NO_SESSION),
                ),
            )
        ),
        headroom=(
            NodeHeadroom(
                node_id="main",
                limit_a=(61.0, 61.0, 61.0),
                other_load_a=(30.0, 25.0, 20.0),
                ev_load_a=(limit_cp01,) * 3,
                headroom_a=(31.0 - limit_cp01, 36.0 - limit_cp01, 41.0 - limit_cp01),
                measured=True,
                stale=False,
            ),
            NodeHeadroom(
                node_id="garage",
                limit_a=(49.0, 49.0, inf),
                other_load_a=(0.0,) * 3,
                ev_load_a=(limit_cp01,) * 3,
                headroom_a=(49.0 - limit_cp01,) * 3,
                measured=False,
                stale=False,
            ),
        ),
        rotation=RotationState(),
    )


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(str(tmp_path / "api.db"))
    yield s
    s.close()


@pytest.fixture
def runtime(store: SqlStore, clock: VirtualClock) -> InMemoryRuntime:
    rt = InMemoryRuntime(demo_site(3), clock, store)
    rt.start_session(
        Session(session_id="s1", charger_id="cp01", arrival_s=T0 - 600, energy_wanted_wh=20_000.0)
    )
    rt.update_charger(
        ChargerState(
            charger_id="cp01",
            t_s=T0 - 1,
            status=ChargerStatus.CHARGING,
            measured_current_a=(12.0, 11.5, 11.8),
            offered_current_a=12.0,
        )
    )
    rt.update_meter(
        MeterReading(meter_id="m-main", t_s=T0 - 2, current_a=(42.0, 37.0, 32.0), power_w=25_000.0)
    )
    rt.set_allocation(_allocation(12.0))
    rt.reassert_limits()
    return rt


@pytest.fixture
def client(
    runtime: InMemoryRuntime, store: SqlStore, clock: VirtualClock
) -> Iterator[httpx.Client]:
    app = create_app(runtime, store, TokenAuth.from_tokens(TOKENS), clock=clock)
    with serve(app) as url, httpx.Client(base_url=url, timeout=10.0) as c:
        yield c


def test_every_route_needs_a_known_token(client: httpx.Client) -> None:
    for path in ("/api/v1/site", "/api/v1/chargers", "/api/v1/sessions", "/metrics"):
        r = client.get(path)
        assert r.status_code == 401, path
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path, headers=READ).status_code == 200, path


def test_site_tree_shows_headroom_per_node_and_line(client: httpx.Client) -> None:
    site = client.get("/api/v1/site", headers=READ).json()
    assert [n["id"] for n in site["nodes"]] == ["main", "garage"]
    main = site["nodes"][0]
    assert main["parent_id"] is None
    assert main["headroom"]["other_load_a"] == [30.0, 25.0, 20.0]
    assert main["headroom"]["headroom_a"] == [19.0, 24.0, 29.0]
    garage = site["nodes"][1]
    assert garage["headroom"]["limit_a"] == [49.0, 49.0, None]  # no limit: null, not Infinity


def test_charger_shows_limit_reason_current_and_lease(client: httpx.Client) -> None:
    cp = client.get("/api/v1/chargers/cp01", headers=READ).json()
    assert cp["limit_a"] == 12.0
    assert cp["reason"] == "circuit garage, line L2"
    assert cp["status"] == "Charging"
    assert cp["measured_current_a"] == [12.0, 11.5, 11.8]
    assert cp["offered_current_a"] == 12.0
    assert cp["lease_until_s"] == T0 + 120.0
    assert cp["session"]["session_id"] == "s1"
    assert cp["activity"] == "charging"
    assert (cp["reason_kind"], cp["reason_node_id"], cp["reason_line"]) == (
        "node_line",
        "garage",
        "L2",
    )
    other = client.get("/api/v1/chargers/cp03", headers=READ).json()
    assert other["status"] == "Unknown"
    assert other["activity"] == "unknown"
    assert other["online"] is False


def test_a_car_held_at_zero_is_paused_whatever_the_charger_says(
    client: httpx.Client, runtime: InMemoryRuntime
) -> None:
    # The charger still reports Charging and some current (its car reacts within seconds),
    # but ampshare decided 0 A: the API says "paused", with the charger's word kept apart.
    runtime.set_allocation(_allocation(0.0))
    cp = client.get("/api/v1/chargers/cp01", headers=READ).json()
    assert (cp["status"], cp["activity"], cp["limit_a"]) == ("Charging", "paused", 0.0)
    runtime.update_charger(
        ChargerState(
            charger_id="cp02",
            t_s=T0,
            status=ChargerStatus.AVAILABLE,
            measured_current_a=(0.0, 0.0, 0.0),
        )
    )
    assert client.get("/api/v1/chargers/cp02", headers=READ).json()["activity"] == "no_car"
    runtime.set_allocation(_allocation(12.0))
    runtime.update_charger(
        ChargerState(
            charger_id="cp01",
            t_s=T0,
            status=ChargerStatus.SUSPENDED_EV,
            measured_current_a=(0.0, 0.0, 0.0),
        )
    )
    assert client.get("/api/v1/chargers/cp01", headers=READ).json()["activity"] == (
        "car_not_drawing"
    )
    assert client.get("/api/v1/chargers/nope", headers=READ).status_code == 404


def test_meters_report_age_and_staleness(client: httpx.Client, clock: VirtualClock) -> None:
    m = client.get("/api/v1/meters", headers=READ).json()[0]
    assert (m["age_s"], m["stale"], m["current_a"]) == (2.0, False, [42.0, 37.0, 32.0])
    clock.advance(20.0)
    m = client.get("/api/v1/meters", headers=READ).json()[0]
    assert (m["age_s"], m["stale"]) == (22.0, True)


def test_driver_sets_departure_manager_sets_priority(
    client: httpx.Client, store: SqlStore, runtime: InMemoryRuntime
) -> None:
    dep = T0 + 3600
    r = client.patch("/api/v1/sessions/s1", headers=DRIVER, json={"departure_s": dep})
    assert r.status_code == 200, r.text
    assert r.json()["departure_s"] == dep
    assert r.json()["edited_by"] == "driver"
    assert runtime.view().session_at("cp01").departure_s == dep  # type: ignore[union-attr]
    assert store.session("s1").session.departure_s == dep  # type: ignore[union-attr]
    r = client.patch("/api/v1/sessions/s1", headers=DRIVER, json={"priority": 2})
    assert r.status_code == 403
    assert (
        client.patch("/api/v1/sessions/s1", headers=READ, json={"departure_s": 1.0}).status_code
        == 403
    )
    r = client.patch(
        "/api/v1/sessions/s1", headers=ADMIN, json={"priority": 2, "energy_wanted_wh": None}
    )
    assert r.status_code == 200
    body = r.json()
    assert (body["priority"], body["energy_wanted_wh"], body["departure_s"]) == (2, None, dep)
    kinds = [e["kind"] for e in client.get("/api/v1/events", headers=READ).json()]
    assert kinds.count("session_edited") == 2


def test_bad_session_edits_get_field_errors_and_change_nothing(
    client: httpx.Client, store: SqlStore
) -> None:
    r = client.patch("/api/v1/sessions/s1", headers=ADMIN, json={"departure": T0})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "departure"]
    r = client.patch("/api/v1/sessions/s1", headers=ADMIN, json={"energy_wanted_wh": -5})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "energy_wanted_wh"]
    assert client.patch("/api/v1/sessions/s1", headers=ADMIN, json={}).status_code == 422
    assert (
        client.patch("/api/v1/sessions/zzz", headers=ADMIN, json={"priority": 1}).status_code == 404
    )
    r = client.patch(
        "/api/v1/sessions/s1",
        headers=ADMIN,
        content=b"{not json",
    )
    assert r.status_code == 422
    rec = store.session("s1")
    assert rec is not None
    assert rec.edited_by is None
    assert rec.session.energy_wanted_wh == 20_000.0


def test_admin_policy_and_caps(client: httpx.Client, store: SqlStore) -> None:
    body = {"name": "deadline", "rotation_interval_s": 600, "deadline_mode": "llf"}
    assert client.put("/api/v1/policy", headers=DRIVER, json=body).status_code == 403
    assert client.put("/api/v1/policy", headers=ADMIN, json=body).status_code == 200
    assert client.get("/api/v1/policy", headers=READ).json()["name"] == "deadline"
    assert store.get_setting("policy") == {
        "name": "deadline",
        "rotation_interval_s": 600.0,
        "deadline_mode": "llf",
    }
    bad = client.put("/api/v1/policy", headers=ADMIN, json={"name": "fastest"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "name"]
    cap = {"node_id": "main", "source": "dso", "line_limit_a": [40, 40, 40]}
    assert client.put("/api/v1/caps", headers=ADMIN, json=cap).status_code == 200
    assert client.get("/api/v1/caps", headers=ADMIN).json()[0]["line_limit_a"] == [40, 40, 40]
    assert (
        client.put("/api/v1/caps", headers=ADMIN, json={**cap, "node_id": "roof"}).status_code
        == 404
    )
    assert client.put("/api/v1/caps", headers=ADMIN, json={"node_id": "main"}).status_code == 422
    assert client.delete("/api/v1/caps/dso/main", headers=ADMIN).status_code == 204
    assert client.delete("/api/v1/caps/dso/main", headers=ADMIN).status_code == 404
    assert client.get("/api/v1/caps", headers=ADMIN).json() == []
    alerts = client.get("/api/v1/events?alerts_only=true&open_only=true", headers=READ).json()
    assert [a["kind"] for a in alerts] == ["limit_changed"]
    r = client.post(f"/api/v1/alerts/{alerts[0]['event_id']}/resolve", headers=ADMIN)
    assert r.json()["resolved_s"] is not None
    assert client.get("/api/v1/events?alerts_only=true&open_only=true", headers=READ).json() == []


def test_a_session_named_again_is_resumed_not_overwritten(
    runtime: InMemoryRuntime, store: SqlStore
) -> None:
    # A restart or a reconnect: the charger names a transaction the store already holds.
    runtime.edit_session("s1", {"departure_s": T0 + 3600.0}, by="manager")
    runtime.update(energy_wh={"s1": 5000.0})
    runtime.end_session("s1")
    runtime.start_session(Session(session_id="s1", charger_id="cp01", arrival_s=T0 + 100))
    rec = store.session("s1")
    assert rec is not None
    assert rec.active
    assert (rec.session.departure_s, rec.edited_by) == (T0 + 3600.0, "manager")
    assert (rec.session.arrival_s, rec.session.energy_delivered_wh) == (T0 - 600, 5000.0)
    assert rec.session.energy_wanted_wh == 20_000.0
    live = runtime.view().session_at("cp01")
    assert live is not None
    assert live.departure_s == T0 + 3600.0
    assert store.events(limit=1)[0].kind == "session_resumed"


def test_sessions_list_and_limit_events_with_reasons(
    client: httpx.Client, runtime: InMemoryRuntime
) -> None:
    runtime.start_session(Session(session_id="s2", charger_id="cp02", arrival_s=T0))
    runtime.end_session("s2")
    active = client.get("/api/v1/sessions?active=true", headers=READ).json()
    assert [s["session_id"] for s in active] == ["s1"]
    everything = client.get("/api/v1/sessions", headers=READ).json()
    assert {s["session_id"]: s["active"] for s in everything} == {"s1": True, "s2": False}
    limits = client.get("/api/v1/events?kind=charger_limit", headers=READ).json()
    assert {e["subject"]: e["reason"] for e in limits}["cp01"] == "circuit garage, line L2"
    # Routine limit changes can be left out (the dashboard does by default).
    quiet = client.get(
        "/api/v1/events",
        params={"exclude_kind": ["charger_limit", "session_started"]},
        headers=READ,
    ).json()
    kinds = {e["kind"] for e in quiet}
    assert "session_ended" in kinds
    assert not kinds & {"charger_limit", "session_started"}


def test_history_over_a_range_at_a_resolution(
    client: httpx.Client, runtime: InMemoryRuntime, store: SqlStore, clock: VirtualClock
) -> None:
    for i in range(120):
        runtime.set_allocation(_allocation(6.0 if i < 60 else 10.0))
        record_once(runtime, store, clock.now_s())
        clock.advance(1.0)
    q = {"series": "charger:cp01:limit_a", "start_s": T0, "end_s": T0 + 120, "resolution_s": 60}
    pts = client.get("/api/v1/history", headers=READ, params=q).json()["points"]
    assert [(p["value"], p["n"]) for p in pts] == [(6.0, 60), (10.0, 60)]
    assert "node:main:L1:other_a" in client.get("/api/v1/history/series", headers=READ).json()
    bad = client.get("/api/v1/history", headers=READ, params={**q, "end_s": T0 - 1})
    assert bad.status_code == 422
    too_many = client.get(
        "/api/v1/history", headers=READ, params={**q, "end_s": T0 + 1e6, "resolution_s": 1}
    )
    assert too_many.status_code == 422
    assert client.get("/api/v1/history", headers=READ, params={"series": "x"}).status_code == 422
    typo = client.get("/api/v1/sessions", headers=READ, params={"activ": "true"})
    assert typo.status_code == 422
    assert typo.json()["detail"][0]["loc"] == ["query", "activ"]


def test_metrics_expose_headroom_limits_and_alerts(client: httpx.Client) -> None:
    text = client.get("/metrics", headers=READ).text
    assert 'ampshare_node_headroom_amperes{line="L1",node="main"} 19.0' in text
    assert 'ampshare_charger_limit_amperes{charger="cp01",reason="node_line"} 12.0' in text
    assert 'ampshare_charger_current_amperes{charger="cp01",line="L2"} 11.5' in text
    assert "ampshare_sessions_active 1.0" in text
    assert 'ampshare_meter_age_seconds{meter="m-main"} 2.0' in text


def test_openapi_is_versioned_and_dashboard_served(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert all(p.startswith("/api/v1/") for p in spec["paths"])
    assert "/api/v1/sessions/{session_id}" in spec["paths"]
    html = client.get("/").text
    assert "<title>ampshare" in html
    assert client.get("/static/app.js").status_code == 200


def test_tokens_from_the_site_file_are_hashes_with_roles() -> None:
    from ampshare.config.sections import WebSection
    from ampshare.web import hash_token

    section = WebSection.model_validate(
        {
            "tokens": [
                {"name": "manager", "sha256": hash_token("m-secret"), "role": "admin"},
                {"name": "wallboard", "sha256": hash_token("w-secret")},
            ]
        }
    )
    auth = TokenAuth.from_section(section)
    assert auth.role_of("m-secret") is Role.ADMIN
    assert auth.role_of("w-secret") is Role.READ
    assert auth.role_of(hash_token("m-secret")) is None  # the hash itself is not a token
    with pytest.raises(ValueError, match="sha256"):
        WebSection.model_validate({"tokens": [{"name": "x", "sha256": "plain-token"}]})


def test_controller_events_become_alerts_and_recoveries_resolve_them(
    client: httpx.Client, runtime: InMemoryRuntime
) -> None:
    from ampshare.control import Event, EventKind, Severity

    runtime.record_control_events(
        [
            Event(
                t_s=T0,
                kind=EventKind.METER_STALE,
                severity=Severity.ALERT,
                subject="m-main",
                message="no reading for 12 s (timeout 10 s): node main counted at its worst case",
            ),
            Event(
                t_s=T0,
                kind=EventKind.CHARGER_OFFLINE,
                severity=Severity.WARNING,
                subject="cp02",
                message="offline",
            ),
        ]
    )
    open_alerts = client.get(
        "/api/v1/events", headers=READ, params={"alerts_only": "true", "open_only": "true"}
    ).json()
    assert {(a["kind"], a["severity"]) for a in open_alerts} == {
        ("meter_stale", "critical"),
        ("charger_offline", "warning"),
    }
    assert "worst case" in next(a["reason"] for a in open_alerts if a["kind"] == "meter_stale")
    runtime.record_control_events(
        [
            Event(
                t_s=T0 + 5,
                kind=EventKind.METER_RECOVERED,
                severity=Severity.INFO,
                subject="m-main",
                message="fresh readings again",
            ),
        ]
    )
    still_open = client.get(
        "/api/v1/events", headers=READ, params={"alerts_only": "true", "open_only": "true"}
    ).json()
    assert [a["kind"] for a in still_open] == ["charger_offline"]


def test_web_public_api_is_pinned() -> None:
    import ampshare.web as web

    assert sorted(web.__all__) == sorted(
        [
            "API_VERSION",
            "Allocator",
            "BatteryStatus",
            "InMemoryRuntime",
            "Role",
            "RuntimeView",
            "SiteRuntime",
            "TokenAuth",
            "create_app",
            "hash_token",
            "new_token",
            "record_once",
            "run_recorder",
            "samples_of",
        ]
    )


def test_a_single_valued_query_parameter_given_twice_is_refused(client: httpx.Client) -> None:
    """``?kind=a&kind=b`` is not silently read as ``kind=b``; a list parameter may repeat."""
    r = client.get(
        "/api/v1/events", params=[("kind", "charger_limit"), ("kind", "x")], headers=READ
    )
    assert r.status_code == 422
    assert "'kind' was given 2 times" in r.text
    ok = client.get(
        "/api/v1/events", params=[("exclude_kind", "a"), ("exclude_kind", "b")], headers=READ
    )
    assert ok.status_code == 200
    assert (
        client.get("/api/v1/events", params={"kind": "charger_limit"}, headers=READ).status_code
        == 200
    )


def test_event_filters_too_long_or_too_many_are_refused(client: httpx.Client) -> None:
    """The text filters' invalid forms (the fuzzer's wrong types arrive as valid text)."""
    long_kind = client.get("/api/v1/events", params={"kind": "k" * 101}, headers=READ)
    assert long_kind.status_code == 422
    assert "kind" in long_kind.text
    many = [("exclude_kind", f"k{i}") for i in range(21)]
    too_many = client.get("/api/v1/events", params=many, headers=READ)
    assert too_many.status_code == 422
    assert "exclude_kind" in too_many.text
    assert client.get("/api/v1/events", params=many[:20], headers=READ).status_code == 200


def test_a_boolean_or_text_for_a_number_in_a_body_is_refused(client: httpx.Client) -> None:
    """``true`` is not 1 s and ``"5"`` not 5: the 422 names the field; the policy is kept."""
    before = client.get("/api/v1/policy", headers=READ).json()
    for bad in (True, "5"):
        r = client.put(
            "/api/v1/policy",
            json={"name": "static", "rotation_interval_s": bad},
            headers=ADMIN,
        )
        assert r.status_code == 422
        assert "rotation_interval_s" in r.text
    assert client.get("/api/v1/policy", headers=READ).json() == before
    edit = client.patch("/api/v1/sessions/s1", json={"priority": True}, headers=ADMIN)
    assert edit.status_code == 422
    assert "priority" in edit.text
    ok = client.put(
        "/api/v1/policy", json={"name": "equal", "rotation_interval_s": 600}, headers=ADMIN
    )
    assert ok.status_code == 200
    assert ok.json()["rotation_interval_s"] == 600.0


def test_planned_policy_needs_a_running_planner(
    client: httpx.Client, runtime: InMemoryRuntime, store: SqlStore
) -> None:
    # Without a planner the cars would share like ``equal`` while the site says "planned":
    # refused, and nothing changes.
    r = client.put("/api/v1/policy", headers=ADMIN, json={"name": "planned"})
    assert r.status_code == 409
    assert "planner: {enabled: true}" in r.json()["detail"]
    assert client.get("/api/v1/policy", headers=READ).json()["name"] != "planned"
    assert (store.get_setting("policy") or {}).get("name") != "planned"
    runtime.set_planner_on(True)  # what the supervisor says when it runs one
    r = client.put("/api/v1/policy", headers=ADMIN, json={"name": "planned"})
    assert r.status_code == 200, r.text
    assert client.get("/api/v1/policy", headers=READ).json()["name"] == "planned"


def test_sessions_export_for_billing(
    client: httpx.Client, runtime: InMemoryRuntime, clock: VirtualClock
) -> None:
    # s1 (fixture) arrived at T0 - 600 and is still plugged in; a second car came, took
    # 7.5 kWh and left; its charge tag would run as a formula in a spreadsheet.
    runtime.start_session(
        Session(session_id="s2", charger_id="cp02", arrival_s=T0, user_id="=HYPERLINK(1)")
    )
    runtime.update_energy("s1", 4_200.0)
    runtime.update_energy("s2", 7_500.0)
    clock.advance(2 * 3600)
    runtime.end_session("s2")
    assert client.get("/api/v1/sessions.csv", headers=READ).status_code == 403  # names users
    r = client.get("/api/v1/sessions.csv", headers=ADMIN, params={"tz": "Europe/Oslo"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["session_id"] for row in rows] == ["s1", "s2"]  # oldest arrival first
    s1, s2 = rows
    assert s1["status"] == "plugged in"
    assert s1["ended"] == ""
    assert s1["energy_kwh"] == "4.200"
    assert s1["energy_wanted_kwh"] == "20.000"
    assert s1["plugged_in_h"] == "2.17"  # 10 minutes before T0 to two hours after
    assert s2["status"] == "ended"
    assert s2["energy_kwh"] == "7.500"
    assert s2["plugged_in_h"] == "2.00"
    assert s2["user_id"] == "'=HYPERLINK(1)"  # not a formula
    # In Oslo's summer time (UTC+2): T0 is 2025-06-15 15:07:00 UTC.
    assert s2["arrival"] == "2025-06-15T17:07:00+02:00"
    assert s2["ended"] == "2025-06-15T19:07:00+02:00"
    assert s2["charger_name"]  # the site's name for cp02 (its id without one)
    # Only arrivals in [since_s, until_s)
    only = client.get(
        "/api/v1/sessions.csv", headers=ADMIN, params={"since_s": T0, "until_s": T0 + 1}
    )
    assert [row["session_id"] for row in csv.DictReader(io.StringIO(only.text))] == ["s2"]
    bad = client.get("/api/v1/sessions.csv", headers=ADMIN, params={"tz": "Mars/Olympus"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "tz"]
    backwards = client.get(
        "/api/v1/sessions.csv", headers=ADMIN, params={"since_s": T0, "until_s": T0 - 1}
    )
    assert backwards.status_code == 422
