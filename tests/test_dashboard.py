"""The dashboard in headless Chromium against a real app on loopback.

Needs Debian's ``chromium`` and the ``playwright`` Python package (never ``playwright
install``). When either is missing these tests FAIL with the command to run, so a machine
without a browser cannot pass them by accident. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ampshare.cli.demo import demo_site
from ampshare.clock import VirtualClock
from ampshare.core.allocate import allocate
from ampshare.core.allocation import Policy, PolicyName
from ampshare.core.planner import PlanInput, plan
from ampshare.core.snapshot import ChargerState, ChargerStatus, MeterReading, Session
from ampshare.store import SqlStore, open_store
from ampshare.web import BatteryStatus, InMemoryRuntime, Role, TokenAuth, create_app
from ampshare.web.testing import serve

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
T0 = 1_750_000_020.0
ADMIN = "admin-token-for-browser"


def _browser_or_fail() -> Any:
    missing = []
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        missing.append("Debian's chromium: apt-get update && apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("playwright: python3 -m pip install -e '.[test]'")
    if missing:
        pytest.fail("browser tests need " + "; ".join(missing), pytrace=False)
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _browser_or_fail()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def site_app(tmp_path: Path) -> Iterator[tuple[str, InMemoryRuntime, SqlStore]]:
    clock = VirtualClock(T0)
    store = open_store(str(tmp_path / "dash.db"))
    rt = InMemoryRuntime(demo_site(3), clock, store, allocator=allocate)
    rt.set_policy(Policy(name=PolicyName.DEADLINE), by="test")
    for sid, cid in (("s1", "cp01"), ("s2", "cp02")):
        rt.start_session(
            Session(
                session_id=sid,
                charger_id=cid,
                arrival_s=T0 - 600,
                departure_s=T0 + 8 * 3600,
                energy_wanted_wh=20_000.0,
            )
        )
    _feed(rt, building_a=40.0)
    app = create_app(
        rt, store, TokenAuth.from_tokens({ADMIN: Role.ADMIN}), clock=clock, live_poll_s=0.1
    )
    with serve(app) as url:
        yield url, rt, store
    store.close()


def _feed(
    rt: InMemoryRuntime, building_a: float, status: ChargerStatus = ChargerStatus.SUSPENDED_EVSE
) -> None:
    """Meter sees the building only: the cars have not started drawing yet."""
    now = T0
    rt.update(
        charger_states=[
            ChargerState(
                charger_id=c,
                t_s=now,
                status=status,
                measured_current_a=(0.0, 0.0, 0.0),
            )
            for c in ("cp01", "cp02", "cp03")
        ],
        meter_readings=[MeterReading(meter_id="m-main", t_s=now, current_a=(building_a,) * 3)],
    )


def _wait(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def _admin_page(browser: Any, url: str, **options: Any) -> tuple[Any, list[str]]:
    """A desktop-sized page on the dashboard with the admin token, and the list its script
    errors go to (every test ends by asserting it is empty)."""
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900}, **options)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/#token={ADMIN}")
    return page, errors


def _limit(page: Any, cid: str) -> float:
    return float(page.get_by_test_id(f"limit-{cid}").inner_text())


def test_dashboard_loads_updates_live_and_edits_move_limits(
    browser: Any, site_app: tuple[str, InMemoryRuntime, SqlStore]
) -> None:
    url, rt, _ = site_app
    ARTIFACTS.mkdir(exist_ok=True)
    page, errors = _admin_page(browser, url)
    page.get_by_test_id("charger-cp01").wait_for()
    # What the browser shows is what the allocator decided.
    assert _limit(page, "cp01") == rt.view().limit("cp01").limit_a == 10.5  # type: ignore[union-attr]
    assert rt.view().limit("cp01").reason.text == "circuit main, line L1"  # type: ignore[union-attr]
    # The reason in words, with the node's name: what bound it and where.
    reason = page.get_by_test_id("reason-cp01").inner_text()
    assert reason == "10.5 A because: Main service L1 is at its limit (shared with the other cars)"
    assert page.get_by_test_id("activity-cp01").inner_text() == "Waiting to start"
    assert page.get_by_test_id("activity-cp03").inner_text() == "Free"  # no car on cp03
    by = _hhmm(page, T0 + 8 * 3600)
    assert page.get_by_test_id("plan-cp01").inner_text() == f"needs 20.0 kWh more by {by}"
    assert page.get_by_test_id("live-status").inner_text().strip() == "live"
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "dashboard-desktop.png"), full_page=True)

    # Live: the building load rises, headroom shrinks, the page follows without a reload.
    seq = int(page.evaluate("document.body.dataset.seq"))
    _feed(rt, building_a=48.0)
    _wait(lambda: _limit(page, "cp01") == 6.5)
    assert int(page.evaluate("document.body.dataset.seq")) > seq

    # Editing s2's departure (sooner) through the sessions table moves current to cp02.
    before = _limit(page, "cp02")
    row = page.locator("tr[data-session=s2]")
    row.locator("input[name=departure]").fill(_local_input(page, T0 + 2 * 3600))
    row.locator("button[name=save]").click()
    row.locator(".msg.saved").wait_for()
    _wait(lambda: _limit(page, "cp02") > before)
    assert _limit(page, "cp02") == rt.view().limit("cp02").limit_a  # type: ignore[union-attr]
    assert _limit(page, "cp01") < _limit(page, "cp02")
    assert rt.view().session_at("cp02").departure_s == T0 + 2 * 3600  # type: ignore[union-attr]
    # The edit is logged in words a manager reads: who, what, when (UTC).
    _wait(lambda: "manager set departure 2025-06-" in page.get_by_test_id("events").inner_text())
    assert page.get_by_test_id("gets-cp02").inner_text() == f"{_limit(page, 'cp02'):.1f} A"
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "dashboard-after-edit.png"), full_page=True)

    # The building takes nearly all: both cars are held at 0 A. A charger may still say
    # "Charging" (its car reacts later); the dashboard says what ampshare decided: paused.
    _feed(rt, building_a=58.0, status=ChargerStatus.CHARGING)
    _wait(lambda: _limit(page, "cp01") == 0.0 and _limit(page, "cp02") == 0.0)
    for cid in ("cp01", "cp02"):
        _wait(lambda c=cid: page.get_by_test_id(f"activity-{c}").inner_text() == "Paused")
        assert page.get_by_test_id(f"gets-{cid}").inner_text() == "paused"
        assert "paused: no room left on Main service" in page.get_by_test_id(
            f"reason-{cid}"
        ).inner_text()
    assert "0 cars" in page.get_by_test_id("stat-charging").inner_text()
    assert "2 paused" in page.get_by_test_id("stat-charging").inner_text()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "dashboard-paused.png"), full_page=True)
    page.close()  # closes the live stream before the server stops
    assert errors == []


def _hhmm(page: Any, t_s: float) -> str:
    return str(
        page.evaluate(
            "(t) => new Date(t * 1000)"
            ".toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'})",
            t_s,
        )
    )


def _local_input(page: Any, t_s: float) -> str:
    """The datetime-local text for ``t_s`` in the browser's own time zone."""
    js = (
        "(t) => { const d = new Date(t * 1000), p = (n) => String(n).padStart(2, '0');"
        " return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`"
        " + `T${p(d.getHours())}:${p(d.getMinutes())}`; }"
    )
    return str(page.evaluate(js, t_s))


def test_dashboard_fits_a_phone_and_asks_for_a_token(
    browser: Any, site_app: tuple[str, InMemoryRuntime, SqlStore]
) -> None:
    url, _, _ = site_app
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page.goto(url)
    page.locator("#login").wait_for()  # no token yet: the login form, not a broken page
    page.fill("#token-input", "wrong")
    page.click("#login button")
    page.wait_for_timeout(300)
    assert page.locator("#main").is_hidden()
    page.fill("#token-input", ADMIN)
    page.click("#login button")
    page.get_by_test_id("charger-cp02").wait_for()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than the phone"
    # Every session input is on screen: no sideways scrolling inside the table either.
    row = page.locator("tr[data-session=s1]")
    for sel in ("input[name=departure]", "input[name=energy]", "button[name=save]"):
        box = row.locator(sel).bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 390, f"{sel} is off the phone's screen: {box}"
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
    page.close()


def test_a_card_opens_the_chargers_details_by_click_and_by_keyboard(
    browser: Any, site_app: tuple[str, InMemoryRuntime, SqlStore]
) -> None:
    url, rt, _ = site_app
    page, errors = _admin_page(browser, url)
    page.get_by_test_id("charger-cp01").click()
    dialog = page.get_by_test_id("detail")
    dialog.wait_for(state="visible")
    lim = rt.view().limit("cp01")
    assert lim is not None
    assert float(page.get_by_test_id("detail-limit-cp01").inner_text()) == lim.limit_a
    # the dialog's own copy of the card is no button
    assert page.get_by_test_id("detail-charger-cp01").get_attribute("role") is None
    dialog.get_by_role("button", name="close").click()
    dialog.wait_for(state="hidden")
    page.get_by_test_id("charger-cp02").focus()
    page.keyboard.press("Enter")
    dialog.wait_for(state="visible")
    assert page.get_by_test_id("detail-limit-cp02").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-card-detail.png"))
    page.close()
    assert errors == []


def _planned_runtime(
    db: Path, policy: Policy, cars: list[tuple[str, str, int]]
) -> tuple[VirtualClock, SqlStore, InMemoryRuntime]:
    """The 3-charger demo site under ``policy`` with 43 A of building on its 63 A service and
    one car per ``(session, charger, hours to departure)``, each wanting 20 kWh."""
    clock = VirtualClock(T0)
    store = open_store(str(db))
    rt = InMemoryRuntime(demo_site(3), clock, store, allocator=allocate)
    rt.set_policy(policy, by="test")
    for sid, cid, hours in cars:
        rt.start_session(
            Session(
                session_id=sid,
                charger_id=cid,
                arrival_s=T0 - 600,
                departure_s=T0 + hours * 3600,
                energy_wanted_wh=20_000.0,
            )
        )
    _feed(rt, building_a=43.0)
    return clock, store, rt


def test_a_car_held_at_the_plans_demand_peak_says_so_in_words(browser: Any, tmp_path: Path) -> None:
    # The plan wants 10 A for cp01's car and holds the site at 43 A of building plus 12 A of
    # cars (three lines at 230 V) for the demand charge: the car gets 12 A, not the 16 A of
    # its charger, and the dashboard says it is the plan's peak, not an outside cap.
    ceiling_w = (43.0 + 12.0) * 3 * 230
    policy = Policy(
        name=PolicyName.PLANNED, planned_targets_a={"s1": 10.0}, planned_ceiling_w=ceiling_w
    )
    clock, store, rt = _planned_runtime(tmp_path / "peak.db", policy, [("s1", "cp01", 8)])
    held = rt.view().limit("cp01")
    assert held is not None
    assert (held.limit_a, held.reason.kind.value) == (12.0, "plan_peak")
    plugged = rt.view().sessions
    made = plan(
        PlanInput(
            site=rt.view().site,
            start_s=T0,
            slot_s=900.0,
            n_slots=4,
            sessions=plugged,
            demand_charge_per_kw=10.0,
        )
    )
    rt.set_plan(made, held_peak_kw=ceiling_w / 1000)
    app = create_app(rt, store, TokenAuth.from_tokens({ADMIN: Role.ADMIN}), clock=clock)
    with serve(app) as url:
        page, errors = _admin_page(browser, url)
        page.get_by_test_id("charger-cp01").wait_for()
        assert _limit(page, "cp01") == 12.0
        reason = page.get_by_test_id("reason-cp01").inner_text()
        assert reason == (
            "12.0 A because: holding the site's demand peak on Main service; its plan gives it "
            "the rest later"
        )
        assert page.locator("#policy").inner_text() == (
            "policy: planned — following the charging plan · holding the site at 38.0 kW "
            "(demand charge)"
        )
        # The site's import against the held peak, in kW: 43 A of building and the car's
        # 12 A on three lines at 230 V is 37.95 kW, up to the 37.95 kW held (shown 38.0).
        site = httpx.get(f"{url}/api/v1/site", headers={"Authorization": f"Bearer {ADMIN}"})
        assert site.json()["import_kw"] == pytest.approx(37.95)
        row = page.get_by_test_id("import-row")
        assert row.inner_text().split("\n")[-1].endswith("of 38.0 kW")
        tip = row.locator(".bar").get_attribute("title") or ""
        assert "building 29.7 kW, EVs 8.3 kW" in tip
        assert "held at 38.0 kW" in tip
        assert "above" not in (row.locator(".bar").get_attribute("class") or "")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-plan-peak.png"), full_page=True)
        page.close()
    store.close()
    assert errors == []


def test_a_car_the_plan_holds_back_says_so_in_words(browser: Any, tmp_path: Path) -> None:
    # The plan gives cp01's car (leaving in 2 h) all of its 16 A now and cp02's (leaving in 9 h)
    # nothing. With 43 A of building on the 63 A service, cp02's 6 A minimum does not fit
    # beside that target: it waits for the plan, and the dashboard says why.
    policy = Policy(name=PolicyName.PLANNED, planned_targets_a={"s1": 16.0, "s2": 0.0})
    cars = [("s1", "cp01", 2), ("s2", "cp02", 9)]
    clock, store, rt = _planned_runtime(tmp_path / "plan.db", policy, cars)
    held = rt.view().limit("cp02")
    assert held is not None
    assert (held.limit_a, held.reason.kind.value) == (0.0, "paused_plan")
    app = create_app(rt, store, TokenAuth.from_tokens({ADMIN: Role.ADMIN}), clock=clock)
    with serve(app) as url:
        page, errors = _admin_page(browser, url)
        page.get_by_test_id("charger-cp02").wait_for()
        assert _limit(page, "cp02") == 0.0
        assert _limit(page, "cp01") == 16.0
        reason = page.get_by_test_id("reason-cp02").inner_text()
        assert reason == (
            "0.0 A because: waiting: its plan gives the room on Main service L1 to cars "
            "leaving sooner; it starts when the plan says"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-plan-waiting.png"), full_page=True)
        # The compact view (large sites) names the pause in two words.
        page.get_by_test_id("view-switch").get_by_role("button", name="Compact").click()
        page.get_by_test_id("word-cp02").wait_for()
        assert page.get_by_test_id("word-cp02").inner_text() == "waiting · plan"
        # Held back is not late: 9 h at its turn's share gets it its 20 kWh.
        assert "late" not in page.get_by_test_id("tile-cp02").inner_text()
        assert page.get_by_test_id("tree-note").inner_text() == (
            "1 circuit with chargers: its bars are with its chargers below."
        )
        page.screenshot(path=str(ARTIFACTS / "dashboard-plan-waiting-compact.png"))
        page.close()
    store.close()
    assert errors == []


def test_the_site_manager_changes_how_cars_share_the_site(
    browser: Any, site_app: tuple[str, InMemoryRuntime, SqlStore]
) -> None:
    url, rt, store = site_app
    page, errors = _admin_page(browser, url)
    form = page.get_by_test_id("policy-form")
    form.wait_for()
    sel = form.locator("select[name=policy]")
    _wait(lambda: sel.input_value() == "deadline")  # the live policy
    # No planner runs beside this runtime: "planned" is there but cannot be chosen.
    planned = sel.locator('option[value="planned"]')
    assert planned.is_disabled()
    assert "no planner runs" in planned.inner_text()
    sel.select_option("fcfs")
    assert page.locator("#policy-explain").inner_text().startswith("Cars that plugged in first")
    form.locator("button[name=apply]").click()
    _wait(lambda: page.get_by_test_id("policy-msg").inner_text() == "applied: fcfs")
    assert rt.view().policy.name is PolicyName.FCFS  # the runtime's, not just the page's
    assert (store.get_setting("policy") or {})["name"] == "fcfs"
    _wait(lambda: page.locator("#policy").inner_text().startswith("policy: fcfs"))
    rt.set_planner_on(True)  # what the supervisor says when a planner runs
    _wait(lambda: not planned.is_disabled())
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-policy-form.png"), clip={
        "x": 0, "y": 0, "width": 1280, "height": 420})
    page.close()
    assert errors == []


def test_the_site_manager_downloads_a_month_of_sessions_for_billing(
    browser: Any, site_app: tuple[str, InMemoryRuntime, SqlStore], tmp_path: Path
) -> None:
    url, rt, _ = site_app
    rt.update_energy("s1", 12_345.0)
    page, errors = _admin_page(browser, url, accept_downloads=True)
    form = page.get_by_test_id("export-form")
    form.wait_for()
    form.locator("input[name=month]").fill("2025-06")  # T0 is in June 2025
    with page.expect_download() as got:
        form.locator("button[name=download]").click()
    saved = tmp_path / "june.csv"
    got.value.save_as(saved)
    assert got.value.suggested_filename == "ampshare-sessions-2025-06.csv"
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert sorted(r["session_id"] for r in rows) == ["s1", "s2"]
    assert {r["session_id"]: r["energy_kwh"] for r in rows}["s1"] == "12.345"
    _wait(lambda: page.get_by_test_id("export-msg").inner_text() == "2 sessions downloaded")
    # Another month has none of them.
    form.locator("input[name=month]").fill("2025-07")
    with page.expect_download() as got:
        form.locator("button[name=download]").click()
    got.value.save_as(saved)
    assert list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8")))) == []
    page.close()
    assert errors == []


def test_the_site_manager_sets_and_removes_a_temporary_limit(
    browser: Any, site_app: tuple[str, InMemoryRuntime, SqlStore]
) -> None:
    url, rt, _ = site_app
    page, errors = _admin_page(browser, url)
    form = page.get_by_test_id("cap-form")
    form.wait_for()
    form.locator("select[name=node]").select_option(label="Garage panel")
    form.locator("input[name=amps]").fill("20")
    form.locator("select[name=hours]").select_option("4")
    form.locator("button[name=set]").click()
    _wait(lambda: page.get_by_test_id("cap-msg").inner_text() == "limit set")
    caps = rt.view().external_caps
    assert len(caps) == 1
    cap = caps[0]
    assert (cap.node_id, cap.source, cap.line_limit_a) == ("garage", "dashboard", (20.0,) * 3)
    assert cap.until_s == pytest.approx(T0 + 4 * 3600)  # the site's clock, not the browser's
    item = page.get_by_test_id("cap-dashboard-garage")
    item.wait_for()
    assert re.match(
        r"Garage panel: 20 A per line · until \S+ \d{1,2}:\d{2}( [AP]M)? \(dashboard\) remove$",
        item.inner_text(),
    ), item.inner_text()
    # The allocation takes it: the garage's bars now end at 20 A, and the two cars share it.
    _wait(lambda: sum(_limit(page, c) for c in ("cp01", "cp02")) <= 20.0 + 1e-6)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-cap.png"), clip={
        "x": 0, "y": 0, "width": 1280, "height": 560})
    item.locator("button").click()
    _wait(lambda: page.get_by_test_id("cap-msg").inner_text() == "limit removed")
    assert rt.view().external_caps == ()
    _wait(lambda: page.get_by_test_id("cap-dashboard-garage").count() == 0)
    page.close()
    assert errors == []


def test_the_battery_and_the_pv_show_with_the_site(
    browser: Any, site_app: tuple[str, InMemoryRuntime, SqlStore]
) -> None:
    url, rt, _ = site_app
    rt.set_assets(
        battery=BatteryStatus(
            battery_id="battery",
            soc_pct=62.4,
            power_w=-2960.0,
            command_w=-3000.0,
            reason="discharging as planned",
            credit_w=2960.0,
        ),
        pv_kw=3.24,
    )
    page, errors = _admin_page(browser, url)
    page.get_by_test_id("battery").wait_for()
    shown = " ".join(page.get_by_test_id("battery").inner_text().split())
    assert shown == "Battery 62 % · discharging 3.0 kW — discharging as planned"
    assert " ".join(page.get_by_test_id("pv").inner_text().split()) == "PV 3.2 kW"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-battery.png"), full_page=False)
    site = httpx.get(f"{url}/api/v1/site", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert site["battery"]["soc_pct"] == 62.4
    assert site["pv_kw"] == 3.24
    # The controller counted the 2.96 kW discharge back as load: the import shown is without it.
    rt.set_assets(battery=None, pv_kw=3.24)
    _wait(lambda: not page.get_by_test_id("battery").count())
    counted = httpx.get(f"{url}/api/v1/site", headers={"Authorization": f"Bearer {ADMIN}"})
    assert site["import_kw"] == pytest.approx(counted.json()["import_kw"] - 2.96)
    rt.set_assets(
        battery=BatteryStatus(
            battery_id="battery",
            soc_pct=None,
            power_w=None,
            command_w=0.0,
            reason="battery not read: idle",
        ),
        pv_kw=None,
    )
    _wait(lambda: "not read" in page.get_by_test_id("battery").inner_text())
    assert page.get_by_test_id("pv").count() == 0
    page.close()
    assert errors == []
