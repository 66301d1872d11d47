"""Who may connect, and what a bad frame does: unknown ids, Basic auth, TLS, rate limit."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ampshare.adapters.ocpp import (
    CentralSystem,
    LinkOptions,
    SimOptions,
    charge_point_id,
    connect_sim,
    hash_password,
    verify_password,
)
from ampshare.adapters.ocpp.sim import open_sim_socket
from ampshare.clock import VirtualClock
from ampshare.config.sections import OcppSection
from ampshare.core.site import Charger, CircuitNode, Connection, NodeKind, Site, VoltageSystem
from ampshare.errors import ConfigError, DeviceUnavailable

T0 = 1_700_000_000.0
PW_HASH = hash_password("s3cret", iterations=1000)  # cheap for tests; format is the same


def make_site() -> Site:
    root = CircuitNode(id="main", kind=NodeKind.SERVICE, parent_id=None,
                       line_limit_a=(63.0, 63.0, 63.0))
    chargers = tuple(Charger(id=i, node_id="main", connection=Connection.THREE_PHASE)
                     for i in ("cp1", "cp2"))
    return Site(name="t", voltage=VoltageSystem.EU_230_400, nodes=(root,), chargers=chargers)


def server(**kw: object) -> CentralSystem:
    settings = OcppSection(host="127.0.0.1", port=0, min_write_interval_s=0,
                           **kw)  # type: ignore[arg-type]
    return CentralSystem(site=make_site(), settings=settings, clock=VirtualClock(T0),
                         options=LinkOptions(boot_wait_s=0.1))


def test_charge_point_id_from_path() -> None:
    assert charge_point_id("/ocpp/CP-1") == "CP-1"
    assert charge_point_id("/CP%201") == "CP 1"
    assert charge_point_id("/ocpp/a/b") is None
    assert charge_point_id("/") is None
    assert charge_point_id("/" + "x" * 49) is None


def test_password_hash_roundtrip() -> None:
    h = hash_password("pw", iterations=1000)
    assert "pw" not in h.split("$")[2:]
    assert verify_password("pw", h)
    assert not verify_password("other", h)
    with pytest.raises(ConfigError, match="password_hashes"):
        verify_password("pw", "plaintext")


@pytest.mark.parametrize("protocol", ["1.6", "2.0.1"])
async def test_unknown_id_rejected_unless_auto_registration(protocol: str) -> None:
    async with server() as cs:
        with pytest.raises(DeviceUnavailable, match="404"):
            await connect_sim(f"ws://127.0.0.1:{cs.port}/ocpp", "stranger", protocol)
        assert "stranger" not in cs.connected()
    async with server(auto_register=True) as cs:
        cp = await connect_sim(f"ws://127.0.0.1:{cs.port}/ocpp", "stranger", protocol)
        await cs.wait_ready("stranger")
        assert cs.snapshot().state("stranger") is not None
        await cp.close()


async def test_no_subprotocol_is_refused() -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async with server() as cs:
        with pytest.raises(InvalidStatus, match="400"):
            await connect(f"ws://127.0.0.1:{cs.port}/ocpp/cp1")


@pytest.mark.parametrize("protocol", ["1.6", "2.0.1"])
async def test_basic_auth(protocol: str) -> None:
    async with server(security_profile=1, password_hashes={"cp1": PW_HASH}) as cs:
        base = f"ws://127.0.0.1:{cs.port}/ocpp"
        with pytest.raises(DeviceUnavailable, match="401"):
            await connect_sim(base, "cp1", protocol, options=SimOptions(password="wrong"))
        with pytest.raises(DeviceUnavailable, match="401"):
            await connect_sim(base, "cp1", protocol)  # no credentials at all
        # cp2 is in the site but has no password: profile 1 turns it away too.
        with pytest.raises(DeviceUnavailable, match="401"):
            await connect_sim(base, "cp2", protocol, options=SimOptions(password="s3cret"))
        cp = await connect_sim(base, "cp1", protocol, options=SimOptions(password="s3cret"))
        await cs.wait_ready("cp1")
        assert "cp1" in cs.connected()
        await cp.close()


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_p, key_p = tmp / "cert.pem", tmp / "key.pem"
    cert_p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_p.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    return cert_p, key_p


@pytest.mark.parametrize("protocol", ["1.6", "2.0.1"])
async def test_tls_security_profile_2(tmp_path: Path, protocol: str) -> None:
    cert, key = _self_signed(tmp_path)
    async with server(security_profile=2, password_hashes={"cp1": PW_HASH},
                      tls_cert_path=str(cert), tls_key_path=str(key)) as cs:
        ctx = ssl.create_default_context(cafile=str(cert))
        cp = await connect_sim(f"wss://localhost:{cs.port}/ocpp", "cp1", protocol,
                               options=SimOptions(password="s3cret"), ssl_context=ctx)
        await cs.wait_ready("cp1")
        await cp.start_transaction()
        assert cp.tx_id is not None
        await cp.close()
        with pytest.raises(DeviceUnavailable):  # plain ws to a TLS port fails
            await connect_sim(f"ws://localhost:{cs.port}/ocpp", "cp1", protocol,
                              options=SimOptions(password="s3cret"))


def test_profile_2_without_certificate_is_a_config_error() -> None:
    cs = server(security_profile=2)
    with pytest.raises(ConfigError, match="tls_cert_path"):
        asyncio.run(cs.start())


async def _call(ws: Any, frame: str | bytes) -> list[Any] | None:
    """Send ``frame`` and return the answer to it, skipping the server's own CALLs (its
    startup probe arrives on this raw socket too); None when nothing answers."""
    await ws.send(frame)
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.5
    while (left := end - loop.time()) > 0:
        try:
            msg = json.loads(await asyncio.wait_for(ws.recv(), left))
        except TimeoutError:
            return None
        if msg[0] != 2:
            return msg  # type: ignore[no-any-return]
    return None


@pytest.mark.parametrize(("protocol", "format_code"),
                         [("1.6", "FormationViolation"), ("2.0.1", "FormatViolation")])
async def test_malformed_frames_answered_or_dropped(protocol: str, format_code: str) -> None:
    async with server() as cs:
        base = f"ws://127.0.0.1:{cs.port}/ocpp"
        other = await connect_sim(base, "cp2", protocol)
        ws = await open_sim_socket(base, "cp1", protocol)
        assert await _call(ws, "this is not json") is None  # no id: dropped
        assert await _call(ws, '{"an": "object"}') is None
        assert await _call(ws, "[7, \"x\"]") is None
        missing = await _call(ws, '[2, "m1", "Heartbeat"]')
        assert missing is not None
        assert missing[:3] == [4, "m1", format_code]
        bad = await _call(ws, '[2, "m2", "BootNotification", {"bogus": 1}]')
        assert bad is not None
        assert bad[0] == 4
        assert bad[1] == "m2"
        unknown = await _call(ws, '[2, "m3", "NoSuchAction", {}]')
        assert unknown is not None
        assert unknown[:2] == [4, "m3"]
        assert await _call(ws, "[3, \"nobody-asked\", {}]") is None  # stray result: ignored
        assert await _call(ws, b"\xff\xfe binary garbage") is None
        # The same connection still works, and so does everyone else's.
        ok = await _call(ws, '[2, "m4", "Heartbeat", {}]')
        assert ok is not None
        assert ok[:2] == [3, "m4"]
        await other.start_transaction()
        assert other.tx_id is not None
        await ws.close()
        await other.close()


async def test_message_rate_limit_drops_floods() -> None:
    async with server(max_messages_per_s=1.0, max_burst=5) as cs:
        ws = await open_sim_socket(f"ws://127.0.0.1:{cs.port}/ocpp", "cp1", "1.6")
        for i in range(20):
            await ws.send(f'[2, "h{i}", "Heartbeat", {{}}]')
        answered = 0
        while True:
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 0.3))
            except TimeoutError:
                break
            answered += msg[0] == 3  # the server's own probe CALLs do not count
        assert 5 <= answered <= 6  # the burst, plus at most one token refilled meanwhile
        await ws.close()
