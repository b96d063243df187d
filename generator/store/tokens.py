"""SQL for `api_tokens` and `idempotency_keys`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from .db import Connection

COLUMNS = "id, name, scopes, namespaces, expires_at, revoked_at, created_at"


class TokenRecord(BaseModel):
    """A row of `api_tokens`, without its hash."""

    id: str
    name: str
    scopes: list[str]
    namespaces: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


def insert(
    conn: Connection,
    *,
    token_id: str,
    name: str,
    token_hash: str,
    scopes: list[str],
    namespaces: list[str],
    expires_at: datetime | None,
) -> TokenRecord | None:
    """A new token; None when the name is taken."""
    row = conn.execute(
        f"""INSERT INTO api_tokens (id, name, token_hash, scopes, namespaces, expires_at)
            VALUES (%s, %s, %s, %s, %s, %s)
            ON CONFLICT (name) DO NOTHING
            RETURNING {COLUMNS}""",
        (token_id, name, token_hash, scopes, namespaces, expires_at),
    ).fetchone()
    return TokenRecord.model_validate(row) if row else None


def by_hash(conn: Connection, token_hash: str) -> TokenRecord | None:
    """The live token (not revoked, not expired) with this hash."""
    row = conn.execute(
        f"""SELECT {COLUMNS} FROM api_tokens
            WHERE token_hash = %s AND revoked_at IS NULL
              AND (expires_at IS NULL OR expires_at > now())""",
        (token_hash,),
    ).fetchone()
    return TokenRecord.model_validate(row) if row else None


def list_all(conn: Connection) -> list[TokenRecord]:
    """Every token, revoked ones too, by name."""
    rows = conn.execute(f"SELECT {COLUMNS} FROM api_tokens ORDER BY name").fetchall()
    return [TokenRecord.model_validate(r) for r in rows]


def revoke(conn: Connection, name: str) -> TokenRecord | None:
    """Revoke the token called `name`; None when there is no live one."""
    row = conn.execute(
        f"""UPDATE api_tokens SET revoked_at = now()
            WHERE name = %s AND revoked_at IS NULL
            RETURNING {COLUMNS}""",
        (name,),
    ).fetchone()
    return TokenRecord.model_validate(row) if row else None


def any_live(conn: Connection) -> bool:
    """Whether some token was created and is not revoked (then every route needs one)."""
    found = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE revoked_at IS NULL) AS used"
    ).fetchone()
    return bool(found and found["used"])


def claim_key(
    conn: Connection, token_name: str, key: str, body_hash: str, deployment_id: str
) -> tuple[str, str] | None:
    """Record `key` for a new deployment; if the key exists, its (body hash, deployment id).

    A concurrent claim of the same key waits on the primary key until the first commits, so
    of many retries at once exactly one creates.
    """
    row = conn.execute(
        """INSERT INTO idempotency_keys (token_name, key, body_hash, deployment_id)
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (token_name, key) DO NOTHING
           RETURNING deployment_id""",
        (token_name, key, body_hash, deployment_id),
    ).fetchone()
    if row is not None:
        return None
    existing = conn.execute(
        "SELECT body_hash, deployment_id FROM idempotency_keys WHERE token_name = %s AND key = %s",
        (token_name, key),
    ).fetchone()
    assert existing is not None  # noqa: S101 - the insert conflicted with this very row
    return str(existing["body_hash"]), str(existing["deployment_id"])


def forget_keys(conn: Connection, hours: int = 24) -> int:
    """Forget Idempotency-Keys older than `hours` (a retry comes within minutes); how many went."""
    done = conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => %s)",
        (hours,),
    )
    return done.rowcount
