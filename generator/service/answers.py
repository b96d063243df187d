"""Creates whose answer never left the server: discarded, never deployed.

An API create stores its row before the round that commits its chart, and answers after. A
server killed in between leaves a row whose client saw a reset connection, and would retry: the
row must not become a live deployment. So each row is marked with the server that holds its
request until the answer goes out. A server holds a PostgreSQL advisory lock on its own id for
as long as it lives; any server (or itself, restarted) that finds marked rows whose server's lock
is free discards them. A row whose chart was committed already is deleted instead, so the next
render removes the chart.
"""

from __future__ import annotations

import logging
import threading

import psycopg

from ..ids import new_id
from ..store import db, unanswered
from . import deployments as deployments_service
from .context import Context

log = logging.getLogger("overseer.api")
_LOCK = "SELECT pg_advisory_lock(hashtextextended(%s, 0))"
_TRY = "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0)) AS free"


def _key(server: str) -> str:
    return f"overseer-server:{server}"


class Presence:
    """A server's id, and the connection whose advisory lock says the server is alive."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.server = new_id()
        self._conn: db.Connection | None = None
        self._lock = threading.Lock()

    def hold(self) -> None:
        """Take (or take again, after the database came back) this server's lock."""
        with self._lock:
            if self._conn is not None and not self._conn.closed:
                try:
                    self._conn.execute("SELECT 1")
                    return
                except psycopg.Error:  # gone with a restart of the database
                    self._conn.close()
            self._conn = db.connect(self.ctx.database_url, autocommit=True)
            self._conn.execute(_LOCK, (_key(self.server),))

    def release(self) -> None:
        """Let go of the lock (the server is stopping)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def sweep(ctx: Context, own: str) -> int:
    """Discard the rows of servers that died before answering; how many went."""
    with ctx.transaction() as conn:
        servers = [s for s in unanswered.pending_servers(conn) if s != own]
    swept = 0
    for server in servers:
        with ctx.transaction() as conn:
            # Held only for this transaction: free means no live server holds that id.
            row = conn.execute(_TRY, (_key(server),)).fetchone()
            if not row or not row["free"]:
                continue
            ids = unanswered.of_server(conn, server)
        for dep_id in ids:
            if not deployments_service.discard(ctx, dep_id):  # its chart is on main already
                deployments_service.withdraw(ctx, dep_id)
            swept += 1
    if swept:
        log.warning("discarded %d deployment(s) whose create was never answered", swept)
    return swept
