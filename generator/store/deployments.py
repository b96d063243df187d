"""SQL for the `deployments` table."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from ..chart_path import ChartPath
from ..status import Status
from .db import Connection
from .plugins import PluginRecord

# secret_data is deliberately absent: it is read only by `secret_data()`. Its revision, a short
# sha256 of the ciphertext (see `secret_revision`), is what apply compares and what a pulled
# chart's record digests.
SECRET_REVISION = "left(encode(sha256(d.secret_data), 'hex'), 16) AS secret_revision"  # noqa: S105
COLUMNS = (
    "d.id, d.deployment_id, d.environment_type, d.plugin_id, d.status, d.status_reason, "
    "d.config, d.namespace, d.ttl_seconds, d.expires_at, d.deleted_at, d.created_at, "
    "d.updated_at, d.rendered_commit, d.applied_commit, d.helm_revision, "
    f"{SECRET_REVISION}, d.applied_secret_revision, "
    "d.applied_tree, d.requested_by"
)
LIVE = "d.deleted_at IS NULL AND (d.expires_at IS NULL OR d.expires_at > CURRENT_TIMESTAMP)"


class DeploymentRecord(BaseModel):
    """A row of `deployments`, without its sealed secret values."""

    id: str
    deployment_id: str
    environment_type: str
    plugin_id: str | None
    status: Status
    status_reason: str | None
    config: str
    namespace: str
    ttl_seconds: int | None
    expires_at: datetime | None
    deleted_at: datetime | None
    created_at: datetime
    updated_at: datetime
    rendered_commit: str | None
    applied_commit: str | None
    helm_revision: int | None
    secret_revision: str | None
    applied_secret_revision: str | None
    applied_tree: str | None = None  # the chart's tree on main that apply installed
    requested_by: str | None = None  # the token that asked for the latest change, if one did

    @property
    def chart_path(self) -> ChartPath:
        """Where its chart lives in the GitOps repository."""
        return ChartPath.of(self.namespace, self.deployment_id)


def insert(conn: Connection, args: dict[str, Any], durable: bool = True) -> DeploymentRecord | None:
    """Insert a row (its `insert_args`, validated against their plugin); None when not stored.

    Nothing is stored when the release name is taken, or when the plugin is no longer that one
    (changed, deactivated, removed): the caller reads it again and retries.

    Not `durable`: the commit does not wait for the WAL to reach the disk. Only for a row whose
    request is answered after a durable commit that finds it (a server's `answered` mark, which
    returns the rows it marked): PostgreSQL writes the WAL in order, so that commit makes this
    one durable too, and a row lost with a crash before it is found missing there, its request
    answered 503. The setting lives in the statement (set_config, local to its transaction): no
    extra round trip.
    """
    source = "" if durable else "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS s"
    result = conn.execute(_INSERT.format(source=source, returning=COLUMNS), args).fetchone()
    return DeploymentRecord.model_validate(result) if result else None


def insert_rendered(
    conn: Connection, rows: Sequence[dict[str, Any]]
) -> Callable[[], dict[str, dict[str, Any]]]:
    """Insert rows (their `insert_args`) that the render in this transaction renders.

    The statements are only queued in the pipeline `conn` is in, to go with the render's lock
    (`render_state.queue_lock_and_load`, queued first: they run once it is held). Returns what
    reads the stored rows, by id, once sent. Each carries its plugin's name, version and
    manifest besides COLUMNS, as a render reads them, and none is left to answer. A row is left
    out as `insert` leaves it out.

    Their change is stamped with no transaction, not this one: the render that records this
    transaction's state covers them, and the next render must not take them for changed since
    (the render's own read of changed rows leaves them out too).
    """
    statement = f"""WITH d AS ({_INSERT.format(source="", returning="d.*")})
        SELECT {COLUMNS}, p.name AS plugin_name, p.version AS plugin_version, p.manifest,
               ({LIVE}) AS live
        FROM d JOIN plugins p ON p.id = d.plugin_id"""
    # One statement each, not executemany: with its rows asked back, that one waits for them
    # at once, a round trip of its own.
    cursors = [
        conn.execute(statement, {**args, "answer_pending": None, "changed": _COVERED})
        for args in rows
    ]

    def stored() -> dict[str, dict[str, Any]]:
        found = (cur.fetchone() for cur in cursors)
        return {str(row["id"]): row for row in found if row is not None}

    return stored


_COVERED = "0"  # no transaction: below every xmin a render records
_INSERT = """INSERT INTO deployments AS d (id, deployment_id, environment_type, plugin_id, status,
        config, namespace, secret_data, ttl_seconds, expires_at, answer_pending, requested_by,
        changed_xid)
    SELECT %(id)s, %(deployment_id)s, %(environment_type)s, %(plugin_id)s, %(status)s,
        %(config)s, %(namespace)s, %(secret_data)s, %(ttl_seconds)s,
        CASE WHEN %(ttl_seconds)s::int IS NULL THEN NULL
             ELSE CURRENT_TIMESTAMP + make_interval(secs => %(ttl_seconds)s::int) END,
        %(answer_pending)s, %(requested_by)s,
        coalesce(%(changed)s::text::xid8, pg_current_xact_id())
    {source}
    WHERE EXISTS (SELECT FROM plugins p WHERE p.id = %(plugin)s AND p.is_active
                  AND p.version = %(version)s AND p.updated_at = %(updated)s)
    ON CONFLICT (deployment_id) DO NOTHING
    RETURNING {returning}"""


def insert_args(row: dict[str, Any], plugin: PluginRecord) -> dict[str, Any]:
    """A row's parameters for the insert: its columns, and the plugin it was validated against."""
    return {
        **row,
        "plugin": plugin.id,
        "version": plugin.version,
        "updated": plugin.updated_at,  # every change of a plugin sets it
        "changed": None,  # the transaction's own id, as the column's default
    }


def get(conn: Connection, ident: str, *, for_update: bool = False) -> DeploymentRecord | None:
    """By `id` or by `deployment_id` (the release name); `for_update` locks the row."""
    lock = " FOR UPDATE" if for_update else ""
    row = conn.execute(
        f"SELECT {COLUMNS} FROM deployments d WHERE d.id = %s OR d.deployment_id = %s{lock}",
        (ident, ident),
    ).fetchone()
    return DeploymentRecord.model_validate(row) if row else None


def is_live(conn: Connection, dep_id: str) -> bool:
    """Neither deleted nor past its expiry (by the database's clock), though not yet reaped."""
    row = conn.execute(f"SELECT {LIVE} AS live FROM deployments d WHERE d.id = %s", (dep_id,))
    found = row.fetchone()
    return bool(found and found["live"])


@dataclass(frozen=True)
class Filter:
    """Which deployments a listing wants; every field left empty matches all."""

    namespaces: Sequence[str] | None = None
    plugin: str | None = None
    status: str | None = None
    after: tuple[datetime, str] | None = None  # the (created_at, id) of the previous page's last
    limit: int | None = None


def list_all(
    conn: Connection, *, include_gone: bool = False, where: Filter | None = None
) -> list[DeploymentRecord]:
    """Deployments, oldest first; deleted ones only when asked; a page of them with `where`."""
    where = where or Filter()
    clauses = [] if include_gone else ["d.deleted_at IS NULL"]
    args: list[Any] = []
    if where.namespaces is not None:
        clauses.append("d.namespace = ANY(%s)")
        args.append(list(where.namespaces))
    if where.plugin is not None:
        clauses.append("d.environment_type = %s")
        args.append(where.plugin)
    if where.status is not None:
        clauses.append("d.status = %s")
        args.append(where.status)
    if where.after is not None:
        clauses.append("(d.created_at, d.id) > (%s, %s)")
        args += list(where.after)
    condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    limit = f" LIMIT {int(where.limit)}" if where.limit is not None else ""
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM deployments d {condition} ORDER BY d.created_at, d.id{limit}", args
    ).fetchall()
    return [DeploymentRecord.model_validate(r) for r in rows]


def release_args(paths: Sequence[str]) -> dict[str, list[str]]:
    """Chart paths as query parameters: the release (unique, indexed) and the whole path."""
    return {"releases": [ChartPath(p).release for p in paths], "paths": list(paths)}


def mark_deleted(
    conn: Connection, dep_id: str, requested_by: str | None = None
) -> DeploymentRecord | None:
    """Mark deleted and drop its sealed secrets, which nothing needs any more."""
    row = conn.execute(
        f"""UPDATE deployments AS d SET deleted_at = CURRENT_TIMESTAMP, status = '{Status.DELETED}',
                secret_data = NULL, updated_at = CURRENT_TIMESTAMP, requested_by = %s
            WHERE d.id = %s AND d.deleted_at IS NULL
            RETURNING {COLUMNS}""",
        (requested_by, dep_id),
    ).fetchone()
    return DeploymentRecord.model_validate(row) if row else None


def update(
    conn: Connection,
    dep_id: str,
    config: str,
    secret_data: bytes | None,
    ttl_seconds: int | None,
    requested_by: str | None = None,
) -> DeploymentRecord | None:
    """Store a live deployment's new inputs; a TTL given restarts from now. It awaits apply."""
    row = conn.execute(
        f"""UPDATE deployments AS d SET config = %(config)s, secret_data = %(secret_data)s,
                ttl_seconds = COALESCE(%(ttl)s::int, d.ttl_seconds),
                expires_at = CASE WHEN %(ttl)s::int IS NULL THEN d.expires_at
                    ELSE CURRENT_TIMESTAMP + make_interval(secs => %(ttl)s::int) END,
                status = '{Status.UPDATING}', status_reason = NULL, updated_at = CURRENT_TIMESTAMP,
                requested_by = %(by)s
            WHERE d.id = %(id)s AND {LIVE}
            RETURNING {COLUMNS}""",
        {
            "config": config,
            "secret_data": secret_data,
            "ttl": ttl_seconds,
            "id": dep_id,
            "by": requested_by,
        },
    ).fetchone()
    return DeploymentRecord.model_validate(row) if row else None


def secret_revision(sealed: bytes | None) -> str | None:
    """The revision of sealed secret values: the same as the `secret_revision` column."""
    return hashlib.sha256(bytes(sealed)).hexdigest()[:16] if sealed else None


def secret_data(conn: Connection, dep_id: str) -> bytes | None:
    """The sealed secret values of one deployment."""
    row = conn.execute("SELECT secret_data FROM deployments WHERE id = %s", (dep_id,)).fetchone()
    value = row["secret_data"] if row else None
    return bytes(value) if isinstance(value, bytes | memoryview) else None


def set_status(
    conn: Connection, dep_id: str, status: Status, reason: str | None = None, **fields: Any
) -> None:
    """Record a lifecycle status (and, e.g., helm_revision or applied_commit) for one deployment."""
    allowed = {"helm_revision", "applied_commit"}
    assert set(fields) <= allowed  # noqa: S101 - column names are never user input
    sets = ", ".join(f"{name} = %({name})s" for name in fields)
    conn.execute(
        f"""UPDATE deployments SET status = %(status)s, status_reason = %(reason)s,
                updated_at = CURRENT_TIMESTAMP{", " + sets if sets else ""}
            WHERE id = %(id)s""",
        {"status": status, "reason": reason, "id": dep_id, **fields},
    )


def start_apply(conn: Connection, d: DeploymentRecord) -> bool:
    """Mark a deployment APPLYING if it is still live and as `d` saw it; False otherwise.

    A delete, an expiry or a refresh between reading the candidates and this point wins: the
    next pass looks at the row again.
    """
    row = conn.execute(
        f"""UPDATE deployments AS d SET status = '{Status.APPLYING}', updated_at = CURRENT_TIMESTAMP
            WHERE d.id = %(id)s AND d.status = %(seen)s AND {LIVE}
            RETURNING d.id""",
        {"id": d.id, "seen": d.status},
    ).fetchone()
    return row is not None


def refresh_status(
    conn: Connection, d: DeploymentRecord, status: Status, reason: str | None, revision: int | None
) -> bool:
    """Record what the cluster says unless the row changed since `d` was read; False if it did."""
    row = conn.execute(
        """UPDATE deployments SET status = %(status)s, status_reason = %(reason)s,
                helm_revision = %(revision)s, updated_at = CURRENT_TIMESTAMP
            WHERE id = %(id)s AND status = %(seen)s AND updated_at = %(seen_at)s
            RETURNING id""",
        {
            "status": status,
            "reason": reason,
            "revision": revision,
            "id": d.id,
            "seen": d.status,
            "seen_at": d.updated_at,
        },
    ).fetchone()
    return row is not None


def finish_apply(
    conn: Connection, dep_id: str, status: Status, reason: str | None = None, **fields: Any
) -> None:
    """Record what an apply did, unless the deployment changed while helm ran.

    The release revision is always kept: uninstall needs it. The status, its reason and the
    applied commit are written only while the row still says APPLYING; an update (UPDATING) or a
    delete made meanwhile keeps its status, so the next pass applies or uninstalls again.
    """
    allowed = {"helm_revision", "applied_commit", "applied_secret_revision", "applied_tree"}
    assert set(fields) <= allowed  # noqa: S101 - column names are never user input
    applying = f"status = '{Status.APPLYING}'"  # SET expressions all see the row as it was
    sets = [
        f"status = CASE WHEN {applying} THEN %(status)s ELSE status END",
        f"status_reason = CASE WHEN {applying} THEN %(reason)s ELSE status_reason END",
        "updated_at = CURRENT_TIMESTAMP",
    ]
    if "helm_revision" in fields:
        sets.append("helm_revision = %(helm_revision)s")
    for name in ("applied_commit", "applied_secret_revision", "applied_tree"):
        if name in fields:
            sets.append(f"{name} = CASE WHEN {applying} THEN %({name})s ELSE {name} END")
    conn.execute(
        f"UPDATE deployments SET {', '.join(sets)} WHERE id = %(id)s",
        {"status": status, "reason": reason, "id": dep_id, **fields},
    )


def apply_candidates(conn: Connection, idents: Sequence[str] = ()) -> list[DeploymentRecord]:
    """Live deployments (or the named ones) whose chart is rendered, oldest first."""
    where = f"{LIVE} AND d.rendered_commit IS NOT NULL"
    params: dict[str, Any] = {}
    if idents:
        where += " AND (d.id = ANY(%(idents)s) OR d.deployment_id = ANY(%(idents)s))"
        params["idents"] = list(idents)
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM deployments d WHERE {where} ORDER BY d.created_at, d.id", params
    ).fetchall()
    return [DeploymentRecord.model_validate(r) for r in rows]


def installed(conn: Connection) -> list[DeploymentRecord]:
    """Deployments (live or gone) whose release is installed."""
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM deployments d WHERE d.helm_revision IS NOT NULL"
    ).fetchall()
    return [DeploymentRecord.model_validate(r) for r in rows]


def due(conn: Connection) -> list[DeploymentRecord]:
    """Live deployments past their TTL, locked until the transaction ends."""
    rows = conn.execute(
        f"""SELECT {COLUMNS} FROM deployments d
            WHERE d.deleted_at IS NULL AND d.expires_at <= CURRENT_TIMESTAMP FOR UPDATE"""
    ).fetchall()
    return [DeploymentRecord.model_validate(r) for r in rows]


def expire_due(conn: Connection) -> list[DeploymentRecord]:
    """Mark deployments past their TTL as EXPIRED (and drop their secrets); return them."""
    rows = conn.execute(
        f"""UPDATE deployments AS d SET status = '{Status.EXPIRED}', deleted_at = CURRENT_TIMESTAMP,
                secret_data = NULL, updated_at = CURRENT_TIMESTAMP
            WHERE d.deleted_at IS NULL AND d.expires_at <= CURRENT_TIMESTAMP
            RETURNING {COLUMNS}"""
    ).fetchall()
    return [DeploymentRecord.model_validate(r) for r in rows]


def mark_uninstalled(conn: Connection, dep_id: str) -> None:
    """Forget the release of a deployment that is gone from the cluster."""
    conn.execute(
        """UPDATE deployments SET helm_revision = NULL, applied_commit = NULL, applied_tree = NULL
           WHERE id = %s""",
        (dep_id,),
    )


def discard(conn: Connection, dep_id: str) -> None:
    """Delete a row outright; only for deployments never rendered."""
    conn.execute("DELETE FROM deployments WHERE id = %s AND rendered_commit IS NULL", (dep_id,))


def live_configs(conn: Connection, plugin_id: str) -> list[tuple[str, str]]:
    """(deployment_id, config) of every live deployment of a plugin."""
    rows = conn.execute(
        f"SELECT d.deployment_id, d.config FROM deployments d WHERE {LIVE} AND d.plugin_id = %s",
        (plugin_id,),
    ).fetchall()
    return [(str(r["deployment_id"]), str(r["config"])) for r in rows]


def by_releases(conn: Connection, releases: Sequence[str]) -> dict[str, DeploymentRecord]:
    """Deployments (live or gone) by chart path, for the given release names."""
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM deployments d WHERE d.deployment_id = ANY(%s)", (list(releases),)
    ).fetchall()
    records = [DeploymentRecord.model_validate(r) for r in rows]
    return {r.chart_path: r for r in records}


def reject(conn: Connection, dep_id: str, reason: str) -> None:
    """A proposed deployment a reviewer turned down: never applied, no longer live."""
    conn.execute(
        f"""UPDATE deployments SET status = '{Status.REJECTED}', status_reason = %s, secret_data = NULL,
                deleted_at = COALESCE(deleted_at, CURRENT_TIMESTAMP), updated_at = CURRENT_TIMESTAMP
           WHERE id = %s""",
        (reason, dep_id),
    )


def restore(
    conn: Connection, dep_id: str, previous: dict[str, Any], secret: bytes | None, reason: str
) -> None:
    """Put back what a deployment was before a change a reviewer turned down (it stays live)."""
    conn.execute(
        f"""UPDATE deployments SET config = %(config)s, ttl_seconds = %(ttl)s,
                expires_at = %(expires_at)s::timestamptz, deleted_at = NULL,
                secret_data = %(secret)s, status = '{Status.REJECTED}', status_reason = %(reason)s,
                updated_at = CURRENT_TIMESTAMP
           WHERE id = %(id)s""",
        {
            "config": previous["config"],
            "ttl": previous.get("ttl_seconds"),
            "expires_at": previous.get("expires_at"),
            "secret": secret,
            "reason": reason,
            "id": dep_id,
        },
    )
