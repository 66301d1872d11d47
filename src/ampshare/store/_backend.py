"""The two SQL backends behind one small interface: SQLite (default, WAL) and PostgreSQL.

Only this module imports ``sqlite3`` and ``psycopg``; it turns their errors into
``StoreError`` so that nothing above it sees a driver exception. Queries are written once with
``?`` placeholders and translated for psycopg, so the repository code is backend-neutral.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ampshare.errors import InputError, StoreError

__all__ = ["Backend", "Cursor", "Dialect", "open_backend", "redact"]

Row = tuple[Any, ...]


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchall(self) -> list[Row]: ...
    def fetchone(self) -> Row | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialect:
    """Spellings that differ between the backends (DDL types, integer division)."""

    name: str
    serial_pk: str
    real: str
    least: str
    greatest: str

    def bucket(self, col: str) -> str:
        """SQL for ``floor(col / ?) * ?`` (the bucket start), two parameters."""
        if self.name == "sqlite":
            return f"(CAST(({col}) / ? AS INTEGER) * ?)"
        return f"(floor(({col}) / ?) * ?)"


SQLITE = Dialect(
    name="sqlite",
    serial_pk="INTEGER PRIMARY KEY AUTOINCREMENT",
    real="REAL",
    least="MIN",
    greatest="MAX",
)
POSTGRES = Dialect(
    name="postgresql",
    serial_pk="BIGSERIAL PRIMARY KEY",
    real="DOUBLE PRECISION",
    least="LEAST",
    greatest="GREATEST",
)


class _PgCursor:
    """Wraps a psycopg cursor so that repository SQL can keep ``?`` placeholders."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cur.execute(sql.replace("?", "%s"), tuple(params))

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        return self._cur.executemany(sql.replace("?", "%s"), [tuple(p) for p in params])

    def fetchall(self) -> list[Row]:
        return list(self._cur.fetchall())

    def fetchone(self) -> Row | None:
        row = self._cur.fetchone()
        return None if row is None else tuple(row)


class Backend:
    """One connection, serialised by a lock (FastAPI runs sync routes on worker threads).

    Every ``transaction()`` is all-or-nothing: on any error it rolls back and raises
    ``StoreError``, so a failed call never leaves half a write behind.
    """

    def __init__(self, conn: Any, dialect: Dialect, url: str) -> None:
        self._conn = conn
        self.dialect = dialect
        self.url = redact(url)
        self._lock = threading.RLock()
        self._closed = False
        self._durable = True

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[Cursor]:
        """``durable=False`` is for telemetry that the next cycle rewrites anyway (samples,
        running energy): on SQLite it skips the fsync, so it survives a kill -9 (the WAL is in
        the OS cache) but maybe not a power cut; the next durable commit syncs it too."""
        with self._lock:
            if self._closed:
                raise StoreError(f"store {self.url} is closed")
            try:
                if self.dialect is SQLITE:
                    yield from self._sqlite_tx(durable)
                else:
                    yield from self._pg_tx()
            except StoreError:
                raise
            except OverflowError as exc:  # an integer wider than 64 bits: the caller's input
                raise InputError(f"a number is too large to store: {exc}") from exc
            except Exception as exc:
                if _is_driver_error(exc):
                    raise StoreError(f"store {self.url}: {exc}") from exc
                raise

    def _sqlite_tx(self, durable: bool) -> Iterator[Cursor]:
        if durable != self._durable:
            self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._durable = durable
        cur = self._conn.cursor()
        # IMMEDIATE takes the write lock up front, so two processes never deadlock on upgrade.
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            self._conn.rollback()
            raise
        self._conn.commit()

    def _pg_tx(self) -> Iterator[Cursor]:
        with self._conn.transaction(), self._conn.cursor() as cur:
            yield _PgCursor(cur)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url)


def _is_driver_error(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.Error):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a declared dependency
        return False
    return isinstance(exc, psycopg.Error)


def open_backend(url: str) -> Backend:
    """Open ``url``: ``sqlite:///path.db``, ``sqlite:///:memory:``, a bare path, or
    ``postgresql://user@host:port/db``. Raises ``StoreError`` naming the URL when it fails."""
    if url.startswith(("postgresql://", "postgres://")):
        return _open_postgres(url)
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:") else url
    if url.startswith("sqlite:") and not url.startswith("sqlite:///"):
        raise StoreError(f"store URL {url!r}: write sqlite:///relative/or/absolute/path.db")
    return _open_sqlite(path, url)


def _open_sqlite(path: str, url: str) -> Backend:
    if path != ":memory:":
        parent = Path(path).expanduser().resolve().parent
        if not parent.is_dir():
            raise StoreError(f"store URL {url!r}: folder {parent} does not exist; create it first")
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        # WAL: readers never block the writer; a kill -9 loses nothing already committed.
        # synchronous=FULL also keeps commits through a power cut, at one fsync per commit.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as exc:
        raise StoreError(f"store URL {url!r}: cannot open SQLite file: {exc}") from exc
    return Backend(conn, SQLITE, url)


def _open_postgres(url: str) -> Backend:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise StoreError('PostgreSQL store needs psycopg: pip install "psycopg[binary]"') from exc
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreError(f"store URL {redact(url)!r}: cannot connect to PostgreSQL: {exc}") from exc
    return Backend(conn, POSTGRES, url)
