"""SQL for the secret key's fingerprint, and for re-sealing the stored secret values."""

from __future__ import annotations

from .db import Connection


def _bytes(value: object) -> bytes:
    assert isinstance(value, bytes | bytearray | memoryview)  # noqa: S101 - a bytea column
    return bytes(value)


def recorded(conn: Connection) -> str | None:
    """The fingerprint of the key the stored values are sealed with, once recorded."""
    row = conn.execute("SELECT fingerprint FROM secret_key").fetchone()
    return str(row["fingerprint"]) if row else None


def record(conn: Connection, fingerprint: str) -> None:
    """Say which key the stored values are sealed with."""
    conn.execute(
        """INSERT INTO secret_key (fingerprint) VALUES (%s)
           ON CONFLICT (id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,
               updated_at = CURRENT_TIMESTAMP""",
        (fingerprint,),
    )


def one_sealed(conn: Connection) -> bytes | None:
    """Some stored sealed value, if there is any."""
    row = conn.execute(
        "SELECT secret_data FROM deployments WHERE secret_data IS NOT NULL LIMIT 1"
    ).fetchone()
    return _bytes(row["secret_data"]) if row else None


def sealed_after(conn: Connection, after: str, limit: int) -> list[tuple[str, bytes]]:
    """The next `limit` sealed values after deployment id `after`, by id."""
    rows = conn.execute(
        """SELECT id, secret_data FROM deployments
           WHERE secret_data IS NOT NULL AND id > %s ORDER BY id LIMIT %s""",
        (after, limit),
    ).fetchall()
    return [(str(r["id"]), _bytes(r["secret_data"])) for r in rows]


def reseal(conn: Connection, dep_id: str, old: bytes, new: bytes) -> bool:
    """Replace a sealed value, unless it changed meanwhile (an update sealed a new one)."""
    done = conn.execute(
        "UPDATE deployments SET secret_data = %s WHERE id = %s AND secret_data = %s",
        (new, dep_id, old),
    )
    return done.rowcount == 1
