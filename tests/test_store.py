"""The store against real SQLite files (and PostgreSQL on loopback when it runs)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ampshare.core.snapshot import Session
from ampshare.errors import InputError, StoreError
from ampshare.store import (
    MIGRATIONS,
    ChargerRecord,
    EventRecord,
    InstalledProfile,
    SeriesPoint,
    SessionRecord,
    Severity,
    SqlStore,
    open_store,
)

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _pg_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not running on 127.0.0.1:5432 ({exc})")
    name = f"ampshare_test_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'a.db'}")
        yield s
        s.close()
        return
    gen = _pg_url()
    url = next(gen)
    s = open_store(url)
    yield s
    s.close()
    with pytest.raises(StopIteration):
        next(gen)


def _sess(sid: str = "s1", charger: str = "cp1", arrival: float = 1000.0) -> SessionRecord:
    return SessionRecord(
        session=Session(
            session_id=sid,
            charger_id=charger,
            arrival_s=arrival,
            energy_wanted_wh=20000.0,
            vehicle_phases=3,
        )
    )


def test_sessions_roundtrip_and_edit(store: SqlStore) -> None:
    store.save_session(_sess("s1", arrival=1000.0))
    store.save_session(_sess("s2", charger="cp2", arrival=2000.0))
    edited = store.edit_session(
        "s1", {"departure_s": 9000.0, "priority": 2}, by="driver", t_s=1500.0
    )
    assert edited.session.departure_s == 9000.0
    assert edited.session.priority == 2
    assert edited.edited_by == "driver"
    assert edited.session.energy_wanted_wh == 20000.0  # untouched fields stay
    store.record_energy("s1", 1234.5)
    store.end_session("s2", 3000.0)
    active = store.sessions(active=True)
    assert [r.session.session_id for r in active] == ["s1"]
    assert active[0].session.energy_delivered_wh == 1234.5
    assert [r.session.session_id for r in store.sessions()] == ["s2", "s1"]  # newest first
    # A window on the arrival: since inclusive, until exclusive (the billing export's month).
    assert [r.session.session_id for r in store.sessions(since_s=1000.0, until_s=2000.0)] == [
        "s1"
    ]
    assert [r.session.session_id for r in store.sessions(until_s=2000.5)] == ["s2", "s1"]
    assert store.sessions(since_s=2000.5) == ()
    assert store.session("s2") is not None
    assert store.session("s2").ended_s == 3000.0  # type: ignore[union-attr]


def test_bad_edit_changes_nothing(store: SqlStore) -> None:
    store.save_session(_sess())
    with pytest.raises(InputError, match="arrival_s"):
        store.edit_session("s1", {"arrival_s": 5.0}, by="manager", t_s=1.0)
    with pytest.raises(InputError, match="no session"):
        store.edit_session("nope", {"priority": 1}, by="manager", t_s=1.0)
    rec = store.session("s1")
    assert rec is not None
    assert rec.session.arrival_s == 1000.0
    assert rec.edited_by is None


def test_events_and_alerts(store: SqlStore) -> None:
    a = store.add_event(
        EventRecord(
            t_s=10.0,
            kind="limit",
            message="cp1 to 10 A",
            subject="cp1",
            reason="circuit main, line L2",
            data={"limit_a": 10.0},
        )
    )
    b = store.add_event(
        EventRecord(
            t_s=20.0,
            kind="meter_stale",
            message="meter m1 stale",
            severity=Severity.WARNING,
            subject="m1",
        )
    )
    assert b.event_id > a.event_id > 0
    assert [e.event_id for e in store.events()] == [b.event_id, a.event_id]
    assert store.events(kind="limit")[0].data == {"limit_a": 10.0}
    assert store.events(kind="limit")[0].reason == "circuit main, line L2"
    assert [e.kind for e in store.events(alerts_only=True, open_only=True)] == ["meter_stale"]
    assert store.resolve_alert(b.event_id, 30.0).resolved_s == 30.0
    assert store.events(alerts_only=True, open_only=True) == ()
    assert [e.kind for e in store.events(since_s=15.0)] == ["meter_stale"]
    with pytest.raises(InputError):
        store.resolve_alert(99999, 1.0)


def test_chargers_profiles_settings(store: SqlStore) -> None:
    store.upsert_charger(ChargerRecord(charger_id="cp1", protocol="ocpp1.6", status="Available"))
    store.upsert_charger(
        ChargerRecord(charger_id="cp1", protocol="ocpp1.6", status="Charging", last_seen_s=5.0)
    )
    assert store.chargers() == (
        ChargerRecord(charger_id="cp1", protocol="ocpp1.6", status="Charging", last_seen_s=5.0),
    )
    p = InstalledProfile(
        charger_id="cp1",
        purpose="tx",
        limit_a=12.5,
        installed_s=1.0,
        lease_until_s=121.0,
        reason="circuit main, line L1",
    )
    store.save_profile(p)
    store.save_profile(
        InstalledProfile(charger_id="cp1", purpose="fallback", limit_a=6.0, installed_s=1.0)
    )
    assert p in store.profiles()
    assert len(store.profiles()) == 2
    store.put_setting("policy", {"name": "deadline"})
    assert store.get_setting("policy") == {"name": "deadline"}
    assert store.get_setting("missing") is None


def test_history_merges_raw_and_downsampled(store: SqlStore) -> None:
    t0 = 1_700_000_000.0 // 900 * 900
    store.recent_retention_s = 600.0
    pts = [
        SeriesPoint(series="node:main:L1:total_a", t_s=t0 + i, value=float(i % 60))
        for i in range(1800)
    ]  # half an hour of 1 s samples
    store.append(pts)
    minute = store.history("node:main:L1:total_a", t0, t0 + 1800, 60.0)
    assert len(minute) == 30
    assert minute[0].value == pytest.approx(29.5)
    assert (minute[0].min_value, minute[0].max_value, minute[0].n) == (0.0, 59.0, 60)
    folded = store.compact(now_s=t0 + 1800)
    assert folded == 1200  # everything older than 10 minutes
    after = store.history("node:main:L1:total_a", t0, t0 + 1800, 60.0)
    assert [(p.t_s, p.value, p.n) for p in after] == [(p.t_s, p.value, p.n) for p in minute]
    coarse = store.history("node:main:L1:total_a", t0, t0 + 1800, 900.0)
    assert [p.n for p in coarse] == [900, 900]
    assert store.series_names() == ("node:main:L1:total_a",)
    with pytest.raises(InputError):
        store.history("x", 10.0, 5.0, 1.0)


def test_migrations_recorded_and_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    s = open_store(str(path))
    assert s.schema_version == MIGRATIONS[-1][0]
    s.close()
    open_store(str(path)).close()  # reopening does not re-run migrations
    con = sqlite3.connect(path)
    assert con.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (len(MIGRATIONS),)
    con.execute("INSERT INTO schema_version VALUES (999, 'from the future')")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer than this ampshare"):
        open_store(str(path))


@pytest.mark.service
def test_postgres_migrations_recorded_and_newer_schema_refused() -> None:
    psycopg = pytest.importorskip("psycopg")
    gen = _pg_url()
    url = next(gen)
    try:
        s = open_store(url)
        assert s.schema_version == MIGRATIONS[-1][0]
        s.close()
        open_store(url).close()  # reopening does not re-run migrations
        with psycopg.connect(url, autocommit=True) as con:
            count = con.execute("SELECT COUNT(*) FROM schema_version").fetchone()
            assert count == (len(MIGRATIONS),)
            con.execute("INSERT INTO schema_version VALUES (999, 'from the future')")
        with pytest.raises(StoreError, match="newer than this ampshare"):
            open_store(url)
    finally:
        with pytest.raises(StopIteration):
            next(gen)


def test_sqlite_uses_wal_and_bad_urls_are_explained(tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path / 'w.db'}")
    s.close()
    con = sqlite3.connect(tmp_path / "w.db")
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    con.close()
    with pytest.raises(StoreError, match="does not exist"):
        open_store(str(tmp_path / "no" / "such" / "dir.db"))
    with pytest.raises(StoreError, match="sqlite:///"):
        open_store("sqlite:/x.db")


def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    s = open_store(str(tmp_path / "c.db"))
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.chargers()


def test_postgres_errors_never_show_the_password() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(StoreError) as info:
        open_store("postgresql://ampshare:s3cret@127.0.0.1:1/nowhere")
    assert "s3cret" not in str(info.value)
    assert "ampshare:***@127.0.0.1" in str(info.value)


def test_public_api_is_pinned_and_store_imports_no_web() -> None:
    import ast

    import ampshare.store as st

    assert sorted(st.__all__) == sorted(
        [
            "EDITABLE_SESSION_FIELDS",
            "MIGRATIONS",
            "ChargerRecord",
            "EventRecord",
            "InstalledProfile",
            "SeriesPoint",
            "SessionRecord",
            "Severity",
            "SqlStore",
            "open_store",
        ]
    )
    for path in Path(st.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(
                    ("ampshare.web", "ampshare.app", "fastapi", "ampshare.cli")
                ), (path, node.module)
