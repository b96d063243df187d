"""SQL for the rows a render reads and records: their render inputs, what changed since a render."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .db import Connection
from .deployments import LIVE, SECRET_REVISION, release_args

_RENDER_COLUMNS = (
    """d.id, d.deployment_id, d.namespace, d.config, d.environment_type,
    d.rendered_commit, d.requested_by, p.name AS plugin_name, p.version AS plugin_version, p.manifest,
    p.id AS plugin_id, """
    + SECRET_REVISION
)


def iter_live_for_render(
    conn: Connection,
    *,
    plugin_ids: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Live deployments joined with their plugin's manifest, streamed in a stable order.

    With `plugin_ids`, only the deployments of those plugins; with `ids`, only those rows.
    """
    where = LIVE
    params: dict[str, Any] = {}
    if plugin_ids is not None:
        where += " AND d.plugin_id = ANY(%(plugins)s)"
        params["plugins"] = list(plugin_ids)
    if ids is not None:
        where += " AND d.id = ANY(%(ids)s)"
        params["ids"] = list(ids)
    with conn.cursor(name="render_live") as cur:  # server-side: 10,000 rows never sit in memory
        cur.itersize = 2000
        cur.execute(
            f"""SELECT {_RENDER_COLUMNS}
                FROM deployments d JOIN plugins p ON p.id = d.plugin_id
                WHERE {where}
                ORDER BY d.namespace, d.deployment_id""",
            params,
        )
        yield from cur


@dataclass(frozen=True)
class Changes:
    """What an incremental render looks at."""

    live: list[dict[str, Any]]  # rows to render (as `iter_live_for_render` gives them)
    gone: set[str]  # chart paths of rows that stopped being live, or of named paths with no row


def changed_since(conn: Connection, since: int, paths: Sequence[str] = ()) -> Changes:
    """Rows changed by transaction `since` or a later one, at `paths`, or past their TTL.

    One round trip: a server's round asks this every time. A TTL that ran out without gc having
    run yet changes no row, so those are looked up by their expiry.
    """
    rows = conn.execute(
        _CHANGED.format(since="%(since)s::text::xid8", releases="%(releases)s", paths="%(paths)s"),
        {"since": str(since), **release_args(paths)},
        # Never a prepared statement: its plan, made once while the table was small, would
        # scan the whole table every round ever after (a hash join); planned each time, the
        # join follows the primary key.
        prepare=False,
    ).fetchall()
    return changes_of(rows, paths)


_CHANGED = f"""SELECT {_RENDER_COLUMNS}, ({LIVE}) AS live
    FROM overseer_render_candidates({{since}}, {{releases}}, {{paths}}) c(id)
    JOIN deployments d ON d.id = c.id LEFT JOIN plugins p ON p.id = d.plugin_id
    ORDER BY d.namespace, d.deployment_id"""


def changed_since_recorded(head: str) -> str | None:
    """`changed_since` the xmin the last render recorded, if it recorded `head`, as a statement.

    Without parameters, so that `render_state.lock_and_load` can send it with its own (one round
    trip fewer a round), and without paths in doubt. State recorded for another commit, or
    without a plain integer xmin, matches no changed row (a full comparison follows anyway, and
    a render that then follows the remote's main asks again). None for a `head` that is not a
    SHA-1 (the render then asks in a query of its own).
    """
    if not re.fullmatch(r"[0-9a-f]{40}", head):
        return None
    return _CHANGED.format(
        since=f"""(SELECT CASE WHEN state->>'xmin' ~ '^[0-9]{{1,18}}$'
                              THEN (state->>'xmin')::xid8 END
                   FROM render_state WHERE commit_sha = '{head}')""",
        releases="'{}'::text[]",
        paths="'{}'::text[]",
    )


def changes_of(rows: list[dict[str, Any]], paths: Sequence[str] = ()) -> Changes:
    """The `Changes` of candidate rows (`changed_since`'s query); `paths` were asked for too."""
    live = [r for r in rows if r["live"] and r["plugin_id"] is not None]
    found = {f"{r['namespace']}/{r['deployment_id']}" for r in rows}
    gone = {f"{r['namespace']}/{r['deployment_id']}" for r in rows if not r["live"]}
    return Changes(live, gone | (set(paths) - found))


def gone_release_paths(conn: Connection) -> set[str]:
    """Chart paths (namespace/release) of deployments known to be deleted or expired."""
    rows = conn.execute(
        f"SELECT d.namespace, d.deployment_id FROM deployments d WHERE NOT ({LIVE})"
    ).fetchall()
    return {f"{r['namespace']}/{r['deployment_id']}" for r in rows}


def set_rendered(
    conn: Connection, release_paths: list[str], commit: str, answering: Sequence[str] = ()
) -> Callable[[], set[str]]:
    """Record the commit that last changed these charts; mark the creates `answering` answered.

    Both in one statement (`unanswered.answered` alone does the second): a server's round
    renders the rows it answers, and each then gets one new row version, not two (and its
    trigger runs once). Returns what tells the ids of `answering` marked: call it after the
    pipeline the statement went in, so that reading them costs no round trip of its own.
    """
    rendered = (
        "d.deployment_id = ANY(%(releases)s)"
        " AND d.namespace || '/' || d.deployment_id = ANY(%(paths)s)"
    )
    rows = conn.execute(
        f"""UPDATE deployments AS d
            SET rendered_commit = CASE WHEN {rendered} THEN %(commit)s ELSE d.rendered_commit END,
                answer_pending = CASE WHEN d.id = ANY(%(answering)s) THEN NULL
                                      ELSE d.answer_pending END
            WHERE ({rendered}) OR d.id = ANY(%(answering)s)
            RETURNING d.id = ANY(%(answering)s) AS answering, d.id""",
        {"commit": commit, "answering": list(answering), **release_args(release_paths)},
    )
    return lambda: {str(r["id"]) for r in rows.fetchall() if r["answering"]}
