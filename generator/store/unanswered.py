"""SQL for creates whose server has not answered yet (`deployments.answer_pending`)."""

from __future__ import annotations

from .db import Connection


def answered(conn: Connection, dep_ids: list[str]) -> set[str]:
    """Their requests are answered: the rows stay, whatever happens to the server that stored them.

    Returns the ids marked: a row missing from them is gone, and its request must not be told
    it stands.
    """
    rows = conn.execute(
        "UPDATE deployments SET answer_pending = NULL WHERE id = ANY(%s) RETURNING id", (dep_ids,)
    ).fetchall()
    return {str(r["id"]) for r in rows}


def of_server(conn: Connection, server: str) -> list[str]:
    """Rows `server` stored and never answered for, oldest first."""
    rows = conn.execute(
        "SELECT id FROM deployments WHERE answer_pending = %s ORDER BY created_at", (server,)
    ).fetchall()
    return [str(r["id"]) for r in rows]


def pending_servers(conn: Connection) -> list[str]:
    """Servers with requests stored but not answered."""
    rows = conn.execute(
        "SELECT DISTINCT answer_pending AS server FROM deployments WHERE answer_pending IS NOT NULL"
    ).fetchall()
    return [str(r["server"]) for r in rows]
