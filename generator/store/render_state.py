"""SQL for `render_state`, the render lock (one render at a time per database), the fingerprint."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from .db import Connection

# One writer per database, whichever process or replica it runs in: each replica commits in its
# own clone, and this lock (held until the render's transaction ends) keeps their commits in
# one line on the remote's main instead of racing each other's pushes.
_WRITER_LOCK = (
    "SELECT pg_advisory_xact_lock(hashtextextended('overseer-render', 0)), "
    "clock_timestamp() AS started"
)


@dataclass(frozen=True)
class Fingerprint:
    """What a render's output depends on in the database, summarised."""

    instance: str
    generation: int
    plugins: dict[str, str]  # plugin id -> "version md5(manifest)"
    # Every row changed by a transaction older than this is visible now: the oldest one still
    # running, or (when lower) just past the newest change, so that an idle database always
    # gives the same value and two renders of the same rows commit the same state.
    xmin: int


_FINGERPRINT = """SELECT (SELECT id::text FROM overseer_instance ORDER BY created_at LIMIT 1) AS instance,
           coalesce(m.generation, 0) AS generation,
           (SELECT coalesce(json_object_agg(id, version || ' ' || md5(manifest)), '{}')
            FROM plugins) AS plugins,
           LEAST(pg_snapshot_xmin(pg_current_snapshot())::text::bigint, m.changed + 1) AS xmin
    FROM overseer_render_marks() m"""


def fingerprint(conn: Connection) -> Fingerprint:
    """The database identity, the highest generation, a digest per plugin, and the snapshot's xmin.

    One query; call it before reading the rows to render, so that what the xmin promises holds.
    """
    return _fingerprint_of(conn.execute(_FINGERPRINT).fetchone())


def _fingerprint_of(row: dict[str, Any] | None) -> Fingerprint:
    assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
    plugins = row["plugins"]
    assert isinstance(plugins, dict)  # noqa: S101 - json_object_agg gives an object
    return Fingerprint(
        instance=str(row["instance"]),
        generation=int(str(row["generation"])),
        plugins={str(k): str(v) for k, v in plugins.items()},
        xmin=int(str(row["xmin"])),
    )


def lock_writer(conn: Connection) -> datetime:
    """Wait for, and hold until `conn`'s transaction ends, the database's render lock.

    Returns the database's clock once it is held.
    """
    return _moment(conn.execute(_WRITER_LOCK).fetchone(), "started")


_LOAD = "SELECT commit_sha, state, pushed FROM render_state"


Loaded = tuple[datetime, dict[str, Any] | None, Fingerprint, list[dict[str, Any]] | None]


def lock_and_load(conn: Connection, also: str | None = None) -> Loaded:
    """The render lock (as `lock_writer`), the last render's state, then `fingerprint`.

    One round trip, not three (a pipeline); `also`, a statement without parameters, goes in it
    too, and its rows come last (None without one).

    The statements run one after another, each with a snapshot of its own taken when it starts:
    the state is read once the lock is held, and `also` runs after the fingerprint. The state
    carries its commit under "commit", and under "pushed" whether the remote has it; None when
    there is none. A server's round starts with this (`queue_lock_and_load`).
    """
    with conn.pipeline():
        loaded = queue_lock_and_load(conn, also)
    return loaded()


def queue_lock_and_load(conn: Connection, also: str | None = None) -> Callable[[], Loaded]:
    """`lock_and_load`'s statements queued in the pipeline `conn` is in; what reads them after.

    Statements the caller queues next go in the same round trip, and run once the lock is held.
    """
    cursors = [conn.execute(statement) for statement in (_WRITER_LOCK, _LOAD, _FINGERPRINT)]
    # Never prepared (see `render_rows.changed_since`): its text names HEAD, and repeats.
    rows = conn.execute(also, prepare=False) if also else None

    def loaded() -> Loaded:
        started = _moment(cursors[0].fetchone(), "started")
        state = _state(cursors[1].fetchone())
        fingerprint = _fingerprint_of(cursors[2].fetchone())
        return started, state, fingerprint, rows.fetchall() if rows is not None else None

    return loaded


def _state(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None or not isinstance(row["state"], dict):
        return None
    return {**row["state"], "commit": str(row["commit_sha"]), "pushed": bool(row["pushed"])}


def save(
    conn: Connection, commit: str, state: dict[str, Any], *, pushed: bool, started: datetime
) -> None:
    """Record that `commit` matches the database as `state` says (in `conn`'s transaction).

    Written by every render, also one that changed nothing: `started` tells followers waiting
    for a render that began after their rows were committed (see `service.leader`).
    """
    conn.execute(
        """INSERT INTO render_state (commit_sha, state, pushed, started_at)
           VALUES (%s, %s, %s, %s)
           ON CONFLICT (id) DO UPDATE SET commit_sha = EXCLUDED.commit_sha,
               state = EXCLUDED.state,
               -- The publisher may have marked this very commit pushed meanwhile.
               pushed = EXCLUDED.pushed OR (render_state.pushed
                                            AND render_state.commit_sha = EXCLUDED.commit_sha),
               started_at = EXCLUDED.started_at, updated_at = CURRENT_TIMESTAMP""",
        (commit, Jsonb(state), pushed, started),
    )


def covered_since(conn: Connection, since: datetime) -> str | None:
    """The last render's commit if that render began after `since`, else None."""
    row = conn.execute(
        "SELECT commit_sha FROM render_state WHERE started_at > %s", (since,)
    ).fetchone()
    return str(row["commit_sha"]) if row is not None else None


def now(conn: Connection) -> datetime:
    """The database's clock (the one `lock_writer` reads)."""
    return _moment(conn.execute("SELECT clock_timestamp() AS now").fetchone(), "now")


def _moment(row: dict[str, object] | None, column: str) -> datetime:
    value = row[column] if row is not None else None
    assert isinstance(value, datetime)  # noqa: S101 - a SELECT without FROM returns one row
    return value


def wait_pushed(conn: Connection, commit: str, seconds: float) -> bool:
    """Wait until `commit` is marked pushed (another replica pushing it), at most `seconds`.

    Whether it was; a render fetches either way, and compares every chart if it is not there.
    """
    deadline = time.monotonic() + seconds
    while True:
        row = conn.execute(
            "SELECT pushed OR commit_sha <> %s AS done FROM render_state", (commit,)
        ).fetchone()
        if row is None or row["done"]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def mark_pushed(conn: Connection, commit: str) -> None:
    """`commit` reached the remote's main (if it is still the last render's)."""
    conn.execute(
        "UPDATE render_state SET pushed = true WHERE commit_sha = %s AND NOT pushed", (commit,)
    )
