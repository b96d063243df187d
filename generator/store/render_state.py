"""SQL for `render_state`, and the lock that makes one render at a time per database."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from .db import Connection

# One writer per database, whichever process or replica it runs in: each replica commits in its
# own clone, and this lock (held until the render's transaction ends) keeps their commits in
# one line on the remote's main instead of racing each other's pushes.
_WRITER_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('overseer-render', 0))"


def lock_writer(conn: Connection) -> None:
    """Wait for, and hold until `conn`'s transaction ends, the database's render lock."""
    conn.execute(_WRITER_LOCK)


def load(conn: Connection) -> dict[str, Any] | None:
    """The last render's state, with the commit it describes under "commit"; None if none."""
    row = conn.execute("SELECT commit_sha, state FROM render_state").fetchone()
    if row is None or not isinstance(row["state"], dict):
        return None
    return {**row["state"], "commit": str(row["commit_sha"])}


def save(conn: Connection, commit: str, state: dict[str, Any]) -> None:
    """Record that `commit` matches the database as `state` says (in `conn`'s transaction)."""
    conn.execute(
        """INSERT INTO render_state (commit_sha, state) VALUES (%s, %s)
           ON CONFLICT (id) DO UPDATE SET commit_sha = EXCLUDED.commit_sha,
               state = EXCLUDED.state, updated_at = CURRENT_TIMESTAMP
           WHERE render_state.commit_sha <> EXCLUDED.commit_sha
              OR render_state.state <> EXCLUDED.state""",
        (commit, Jsonb(state)),
    )
