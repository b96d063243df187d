"""Schema migrations with yoyo, from the SQL files in migrations/."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from yoyo import get_backend, read_migrations

from ..errors import DatabaseUnavailable
from ..paths import MIGRATIONS_DIR
from .db import Connection, redact


@dataclass(frozen=True)
class MigrationState:
    """One migration and whether the database has it."""

    id: str
    applied: bool


@contextmanager
def _backend(url: str) -> Iterator[Any]:
    # yoyo picks its driver from the scheme; psycopg 3 is "postgresql+psycopg".
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        url = f"postgresql+psycopg{sep}{rest}"
    try:
        backend = get_backend(url)
    except Exception as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {redact(url)}: {exc}") from None
    try:
        yield backend
    finally:
        backend.connection.close()


def apply(url: str) -> list[str]:
    """Apply every pending migration, under yoyo's lock; return the ids applied."""
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with _backend(url) as backend, backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def status(url: str) -> list[MigrationState]:
    """Every known migration, in order, with its applied flag."""
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with _backend(url) as backend:
        pending = {m.id for m in backend.to_apply(migrations)}
    return [MigrationState(m.id, m.id not in pending) for m in migrations]


def require_current(conn: Connection) -> None:
    """Raise a UserError naming the fix when the schema is behind the code."""
    expected = len(
        [p for p in MIGRATIONS_DIR.glob("*.sql") if not p.name.endswith(".rollback.sql")]
    )
    row = conn.execute("SELECT to_regclass('_yoyo_migration') IS NOT NULL AS has_table").fetchone()
    applied = 0
    if row and row["has_table"]:
        count = conn.execute("SELECT count(*) AS n FROM _yoyo_migration").fetchone()
        applied = int(count["n"]) if count else 0  # type: ignore[call-overload]
    if applied < expected:
        raise DatabaseUnavailable(
            f"the database schema is not up to date ({applied} of {expected} migrations applied)",
            hint="run `overseer db migrate`",
            api_hint="the server's operator runs `overseer db migrate`",
        )
