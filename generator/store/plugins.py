"""SQL for the `plugins` table (the specification's DDL, unchanged)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from .db import Connection

COLUMNS = "id, name, version, created_at, updated_at, manifest, image_name, registry_url, is_active"


class PluginRecord(BaseModel):
    """A row of `plugins`."""

    id: str
    name: str
    version: str
    created_at: datetime
    updated_at: datetime
    manifest: str
    image_name: str
    registry_url: str
    is_active: bool


def _one(row: dict[str, Any] | None) -> PluginRecord | None:
    return PluginRecord.model_validate(row) if row else None


def get(conn: Connection, name: str, *, for_update: bool = False) -> PluginRecord | None:
    """The plugin called `name`, active or not."""
    lock = " FOR UPDATE" if for_update else ""
    return _one(
        conn.execute(f"SELECT {COLUMNS} FROM plugins WHERE name = %s{lock}", (name,)).fetchone()
    )


def get_by_id(conn: Connection, plugin_id: str) -> PluginRecord | None:
    """The plugin with this id."""
    return _one(
        conn.execute(f"SELECT {COLUMNS} FROM plugins WHERE id = %s", (plugin_id,)).fetchone()
    )


def list_all(conn: Connection) -> list[PluginRecord]:
    """Every plugin, by name."""
    rows = conn.execute(f"SELECT {COLUMNS} FROM plugins ORDER BY name").fetchall()
    return [PluginRecord.model_validate(r) for r in rows]


def insert(conn: Connection, record: dict[str, Any]) -> PluginRecord | None:
    """Insert unless the name exists (returns None then, so the caller can lock and compare)."""
    row = conn.execute(
        f"""INSERT INTO plugins (id, name, version, manifest, image_name, registry_url)
            VALUES (%(id)s, %(name)s, %(version)s, %(manifest)s, %(image_name)s, %(registry_url)s)
            ON CONFLICT (name) DO NOTHING
            RETURNING {COLUMNS}""",
        record,
    ).fetchone()
    return _one(row)


def update_version(conn: Connection, record: dict[str, Any]) -> PluginRecord:
    """Replace the manifest of an existing plugin with a new version."""
    row = conn.execute(
        f"""UPDATE plugins SET version = %(version)s, manifest = %(manifest)s,
                image_name = %(image_name)s, registry_url = %(registry_url)s,
                updated_at = CURRENT_TIMESTAMP
            WHERE name = %(name)s
            RETURNING {COLUMNS}""",
        record,
    ).fetchone()
    assert row is not None  # noqa: S101 - the caller holds the row lock
    return PluginRecord.model_validate(row)


def set_active(conn: Connection, name: str, active: bool) -> PluginRecord | None:
    """Activate or deactivate; None when no such plugin."""
    row = conn.execute(
        f"""UPDATE plugins SET is_active = %s, updated_at = CURRENT_TIMESTAMP
            WHERE name = %s RETURNING {COLUMNS}""",
        (active, name),
    ).fetchone()
    return _one(row)


def backfill(conn: Connection, name: str | None = None) -> int:
    """Link deployments to the plugin their environment_type names; return how many."""
    sql = """UPDATE deployments AS d SET plugin_id = p.id FROM plugins AS p
             WHERE d.plugin_id IS NULL AND d.environment_type = p.name"""
    params: tuple[str, ...] = ()
    if name is not None:
        sql += " AND p.name = %s"
        params = (name,)
    return conn.execute(sql, params).rowcount
