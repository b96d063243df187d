"""SQL for the `proposals` table: the pull requests of review mode (migration 0010)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from .db import Connection

_COLUMNS = """id, deployment_id, kind, state, branch, number, url, head_commit, chart_tree,
    previous, requested_by, created_at, updated_at"""


class ProposalRecord(BaseModel):
    """A row of `proposals`, without the sealed secret values it keeps for an undo."""

    id: str
    deployment_id: str  # deployments.id
    kind: str
    state: str
    branch: str
    number: int | None
    url: str | None
    head_commit: str | None
    chart_tree: str | None
    previous: dict[str, Any] | None
    requested_by: str | None


def remember(
    conn: Connection,
    proposal_id: str,
    dep_id: str,
    kind: str,
    branch: str,
    previous: dict[str, Any] | None,
    previous_secret: bytes | None,
    requested_by: str | None,
) -> None:
    """Start a proposal for a deployment about to change, unless one is active already.

    The first change of a proposal keeps what the deployment was before it: a later change
    while the pull request is open updates that pull request, and a close undoes them all.
    """
    conn.execute(
        """INSERT INTO proposals (id, deployment_id, kind, branch, previous, previous_secret,
                requested_by)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (deployment_id) WHERE state IN ('pending', 'open') DO NOTHING""",
        (
            proposal_id,
            dep_id,
            kind,
            branch,
            json.dumps(previous) if previous is not None else None,
            previous_secret,
            requested_by,
        ),
    )


def active(conn: Connection) -> dict[str, ProposalRecord]:
    """Pending and open proposals, by deployment row id."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM proposals WHERE state IN ('pending', 'open')"
    ).fetchall()
    return {str(r["deployment_id"]): ProposalRecord.model_validate(r) for r in rows}


def active_for(conn: Connection, dep_id: str) -> ProposalRecord | None:
    """The pending or open proposal of one deployment."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM proposals WHERE deployment_id = %s AND state IN ('pending', 'open')",
        (dep_id,),
    ).fetchone()
    return ProposalRecord.model_validate(row) if row else None


def latest(conn: Connection, dep_ids: list[str]) -> dict[str, ProposalRecord]:
    """The newest proposal of each deployment, whatever its state."""
    rows = conn.execute(
        f"""SELECT DISTINCT ON (deployment_id) {_COLUMNS} FROM proposals
            WHERE deployment_id = ANY(%s) ORDER BY deployment_id, created_at DESC, id DESC""",
        (dep_ids,),
    ).fetchall()
    return {str(r["deployment_id"]): ProposalRecord.model_validate(r) for r in rows}


def rejected_tree(conn: Connection, dep_id: str) -> str | None:
    """The chart tree of this deployment's newest proposal, if a reviewer closed it."""
    row = conn.execute(
        """SELECT state, chart_tree FROM proposals WHERE deployment_id = %s
           ORDER BY created_at DESC, id DESC LIMIT 1""",
        (dep_id,),
    ).fetchone()
    return str(row["chart_tree"]) if row and row["state"] == "closed" else None


def opened(
    conn: Connection,
    proposal_id: str,
    *,
    kind: str,
    number: int,
    url: str,
    head_commit: str,
    chart_tree: str,
) -> None:
    """Record the pull request and what its branch proposes."""
    conn.execute(
        """UPDATE proposals SET state = 'open', kind = %s, number = %s, url = %s,
                head_commit = %s, chart_tree = %s, updated_at = CURRENT_TIMESTAMP
           WHERE id = %s""",
        (kind, number, url, head_commit, chart_tree, proposal_id),
    )


def finish(conn: Connection, proposal_id: str, state: str) -> None:
    """Mark a proposal merged, closed or superseded; it is no longer active."""
    conn.execute(
        "UPDATE proposals SET state = %s, updated_at = CURRENT_TIMESTAMP WHERE id = %s",
        (state, proposal_id),
    )


def previous_secret(conn: Connection, proposal_id: str) -> bytes | None:
    """The sealed secret values a deployment had before the proposal."""
    row = conn.execute(
        "SELECT previous_secret FROM proposals WHERE id = %s", (proposal_id,)
    ).fetchone()
    value = row["previous_secret"] if row else None
    return bytes(value) if isinstance(value, bytes | memoryview) else None


def delivered(conn: Connection, forge: str, delivery: str) -> bool:
    """Whether a webhook delivery was handled before (a replay)."""
    row = conn.execute(
        "SELECT 1 AS seen FROM webhook_deliveries WHERE forge = %s AND delivery = %s",
        (forge, delivery),
    ).fetchone()
    return row is not None


def forget_deliveries(conn: Connection, days: int = 30) -> int:
    """Forget deliveries older than `days` (a forge redelivers within hours); how many went."""
    done = conn.execute(
        "DELETE FROM webhook_deliveries WHERE received_at < now() - make_interval(days => %s)",
        (days,),
    )
    return done.rowcount


def record_delivery(conn: Connection, forge: str, delivery: str) -> None:
    """Remember a handled delivery."""
    conn.execute(
        "INSERT INTO webhook_deliveries (forge, delivery) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (forge, delivery),
    )
