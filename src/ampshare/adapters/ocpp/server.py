"""The central system (CSMS): a websocket server that chargers join, implementing ``ChargerLink``.

``ws(s)://HOST:PORT/ocpp/{charge_point_id}`` (or ``/{charge_point_id}``), subprotocols
``ocpp2.0.1`` and ``ocpp1.6`` on the same port. The HTTP upgrade is where strangers are
turned away: unknown ids (404, unless auto-registration is on), missing or wrong Basic auth
(401). Each connection then gets a per-version handler and a message-rate limit, and nothing
one charger sends can disturb another.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import unquote

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ampshare.adapters.ocpp._base import LinkBase
from ampshare.adapters.ocpp._hub import Hub, LinkOptions
from ampshare.adapters.ocpp._v16 import CsmsV16
from ampshare.adapters.ocpp._v201 import CsmsV201
from ampshare.adapters.ocpp.auth import verify_password
from ampshare.adapters.ocpp.port import (
    CommandOutcome,
    FallbackCommand,
    LimitCommand,
    LinkSnapshot,
    OutcomeStatus,
)
from ampshare.clock import Clock, SystemClock
from ampshare.config.sections import OcppSection
from ampshare.core.site import Site
from ampshare.errors import ConfigError, ConfigIssue, DeviceError

__all__ = ["SUBPROTOCOLS", "CentralSystem", "charge_point_id"]

log = logging.getLogger("ampshare.ocpp")

SUBPROTOCOLS = ("ocpp2.0.1", "ocpp1.6")
C = TypeVar("C", bound=FallbackCommand)
_MAX_ID = 48  # OCPP 2.0.1 identity length; also sane for 1.6
_MAX_FRAME = 256 * 1024


def charge_point_id(path: str) -> str | None:
    """The charge point id in ``/ocpp/{id}`` or ``/{id}``, or None for any other path."""
    path = path.split("?", 1)[0]
    parts = [p for p in path.split("/") if p]
    if len(parts) == 2 and parts[0] == "ocpp":
        cp = parts[1]
    elif len(parts) == 1:
        cp = parts[0]
    else:
        return None
    cp = unquote(cp)
    if not cp or len(cp) > _MAX_ID or not cp.isprintable() or "/" in cp:
        return None
    return cp


class _RateLimited:
    """The connection as the ``ocpp`` library sees it, with a per-connection token bucket.

    Over the limit, frames are dropped (the charger retries its call); a charger that keeps
    flooding is disconnected so it cannot starve the others of CPU.
    """

    def __init__(self, ws: ServerConnection, rate_per_s: float, burst: int) -> None:
        self._ws = ws
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = asyncio.get_running_loop().time()
        self.dropped = 0

    def _take(self) -> bool:
        now = asyncio.get_running_loop().time()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    async def recv(self) -> str:
        while True:
            msg = await self._ws.recv()
            if self._take():
                self.dropped = 0
                return msg if isinstance(msg, str) else msg.decode("utf-8", "replace")
            self.dropped += 1
            if self.dropped > 10 * self._burst:
                await self._ws.close(1008, "message rate limit exceeded")

    async def send(self, message: str) -> None:
        await self._ws.send(message)


class CentralSystem:
    """OCPP 1.6J + 2.0.1 central system; implements ``ChargerLink``.

    Use as ``async with CentralSystem(site=..., settings=...) as cs:``; ``cs.port`` is the
    port actually bound (useful with ``port=0``).
    """

    def __init__(self, *, site: Site | None, settings: OcppSection,
                 clock: Clock | None = None, options: LinkOptions | None = None) -> None:
        self.settings = settings
        self.hub = Hub(site=site, settings=settings, clock=clock or SystemClock(),
                       options=options or LinkOptions())
        self._server: Server | None = None
        self._auth_cache: dict[str, bytes] = {}
        self.port: int = settings.port

    # --- lifecycle ----------------------------------------------------------------------
    def _ssl(self) -> ssl.SSLContext | None:
        s = self.settings
        if s.tls_cert_path is None:
            if s.security_profile >= 2:
                raise ConfigError([ConfigIssue(
                    file="<config>", path="ocpp.tls_cert_path",
                    message="security profile 2 needs a TLS certificate",
                    hint="set ocpp.tls_cert_path and ocpp.tls_key_path")])
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(s.tls_cert_path, s.tls_key_path)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError([ConfigIssue(
                file="<config>", path="ocpp.tls_cert_path",
                message=f"cannot load certificate/key: {e}",
                hint="point tls_cert_path/tls_key_path at PEM files")]) from e
        return ctx

    async def start(self) -> None:
        self._server = await serve(
            self._handle, self.settings.host, self.settings.port,
            subprotocols=list(SUBPROTOCOLS),  # type: ignore[arg-type]
            process_request=self._process_request, ssl=self._ssl(), max_size=_MAX_FRAME,
            compression=None, ping_interval=60, ping_timeout=60)
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        log.info("OCPP central system listening on port %d", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> CentralSystem:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # --- handshake ----------------------------------------------------------------------
    async def _process_request(self, conn: ServerConnection, req: Request) -> Response | None:
        cp = charge_point_id(req.path)
        if cp is None:
            return conn.respond(http.HTTPStatus.NOT_FOUND, "expected /ocpp/{charge_point_id}\n")
        if not self.hub.known(cp) and not self.settings.auto_register:
            log.warning("rejected unknown charge point id %r", cp)
            return conn.respond(http.HTTPStatus.NOT_FOUND, "unknown charge point id\n")
        needs_auth = self.settings.security_profile >= 1 or cp in self.settings.password_hashes
        if needs_auth and not await self._authorised(cp, req.headers):
            log.warning("rejected charge point %r: bad or missing credentials", cp)
            resp = conn.respond(http.HTTPStatus.UNAUTHORIZED, "authentication required\n")
            resp.headers["WWW-Authenticate"] = 'Basic realm="ampshare"'
            return resp
        return None

    async def _authorised(self, cp: str, headers: Headers) -> bool:
        stored = self.settings.password_hashes.get(cp)
        auth = headers.get("Authorization", "")
        if stored is None or not auth.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(auth[6:], validate=True).decode().partition(":")
        except ValueError:
            return False
        if user != cp:
            return False
        # PBKDF2 is slow on purpose; remember a verified password (by digest) so that a
        # reconnect storm of thousands of chargers does not pin the CPU, and run it off-loop.
        digest = hashlib.sha256(password.encode()).digest()
        if self._auth_cache.get(cp) == digest:
            return True
        ok = await asyncio.to_thread(verify_password, password, stored)
        if ok:
            self._auth_cache[cp] = digest
        return ok

    # --- connections --------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        cp = charge_point_id(ws.request.path) if ws.request else None
        if cp is None or ws.subprotocol is None:
            await ws.close(1002, "OCPP subprotocol required: ocpp1.6 or ocpp2.0.1")
            return
        conn = _RateLimited(ws, self.settings.max_messages_per_s, self.settings.max_burst)
        cls = CsmsV16 if ws.subprotocol == "ocpp1.6" else CsmsV201
        link: LinkBase = cls(cp, conn, self.hub)
        link.socket = ws
        old = self.hub.links.get(cp)
        if old is not None:  # the newest connection of an id wins; the old one is stale
            old.cancel_tasks()
            await old.socket.close(1000, "replaced by a new connection")
        self.hub.links[cp] = link
        link.tracker.connected()
        link.tracker.seen(self.hub.clock.now_s())
        self.hub.notify()
        link.spawn(link.startup())
        try:
            await link.start()  # type: ignore[attr-defined]
        except ConnectionClosed:
            pass
        except Exception:  # only here, per connection: one charger must not stop the server
            log.exception("%s: connection handler failed", cp)
        finally:
            link.cancel_tasks()
            if self.hub.links.get(cp) is link:
                del self.hub.links[cp]
                link.tracker.gone(self.hub.clock.now_s())
                self.hub.notify()

    # --- ChargerLink --------------------------------------------------------------------
    def snapshot(self) -> LinkSnapshot:
        trackers = list(self.hub.trackers.values())
        sessions = tuple(s for t in trackers if (s := t.session()) is not None)
        caps = {t.charger.id: t.hard_cap_a for t in trackers if t.hard_cap_a is not None}
        return LinkSnapshot(t_s=self.hub.clock.now_s(),
                            states=tuple(t.state() for t in trackers),
                            sessions=sessions, hard_caps_a=caps)

    async def wait_changed(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self.hub.changed.wait()
        except TimeoutError:
            return False
        self.hub.changed.clear()
        return True

    def connected(self) -> frozenset[str]:
        return frozenset(self.hub.links)

    async def wait_ready(self, cp_id: str, timeout_s: float = 10.0) -> None:
        """Wait until ``cp_id`` is connected and its startup (probe, fallback) is done."""
        async def ready() -> None:
            while (link := self.hub.links.get(cp_id)) is None:
                await asyncio.sleep(0.01)
            await link.ready.wait()
        async with asyncio.timeout(timeout_s):
            await ready()

    def _offline(self, cmd: FallbackCommand) -> CommandOutcome:
        return CommandOutcome(charger_id=cmd.charger_id, status=OutcomeStatus.OFFLINE,
                              t_s=self.hub.clock.now_s(), detail="sent when it reconnects")

    async def _when_ready(self, link: LinkBase,
                          write: Callable[[C], Awaitable[CommandOutcome]],
                          cmd: C) -> CommandOutcome:
        # A command racing the charger's startup waits for it, so it is sent with the probed
        # capabilities (rate unit, stack level) and after the fallback, not before.
        if not link.ready.is_set():
            s = self.settings
            try:
                async with asyncio.timeout(self.hub.options.boot_wait_s + 4 * s.call_timeout_s):
                    await link.ready.wait()
            except TimeoutError:
                return CommandOutcome(charger_id=cmd.charger_id, status=OutcomeStatus.FAILED,
                                      t_s=self.hub.clock.now_s(), detail="startup timed out")
        return await write(cmd)

    async def _guard(self, cmd: FallbackCommand, coro: Any) -> CommandOutcome:
        try:
            result: CommandOutcome = await coro
        except DeviceError as e:
            return CommandOutcome(charger_id=cmd.charger_id, status=OutcomeStatus.FAILED,
                                  t_s=self.hub.clock.now_s(), detail=str(e))
        return result

    async def set_limit(self, cmd: LimitCommand) -> CommandOutcome:
        self.hub.lives[cmd.charger_id] = cmd  # re-asserted on reconnect while the lease runs
        link = self.hub.links.get(cmd.charger_id)
        if link is None:
            return self._offline(cmd)
        return await self._guard(cmd, self._when_ready(link, link.write_live, cmd))

    async def install_fallback(self, cmd: FallbackCommand) -> CommandOutcome:
        self.hub.fallbacks[cmd.charger_id] = cmd
        link = self.hub.links.get(cmd.charger_id)
        if link is None:
            return self._offline(cmd)
        return await self._guard(cmd, self._when_ready(link, link.write_fallback, cmd))

    async def composite_limit(self, charger_id: str) -> float | None:
        """Ask the charger what limit it applies now (GetCompositeSchedule), in its unit."""
        link = self.hub.links.get(charger_id)
        if link is None:
            return None
        tx = link.tracker.transaction
        return await link.composite_limit(tx.connector_id if tx else 1)
