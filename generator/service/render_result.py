"""What a render did, and the commit message that says so."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChartChange:
    """One chart added, changed or removed by a render."""

    path: str
    deployment_id: str
    plugin: str  # name@version
    requested_by: str | None = None  # the token that asked, when a named one did


@dataclass
class RenderResult:
    """What a render did."""

    added: list[ChartChange] = field(default_factory=list)
    changed: list[ChartChange] = field(default_factory=list)
    removed: list[ChartChange] = field(default_factory=list)
    unchanged: int = 0
    commit: str | None = None
    pushed: str | None = None  # the remote ref pushed, when a remote is configured
    push_error: str | None = None  # why that push failed; the commit stands
    # Charts already on the branch, unchanged, whose rows name no commit (see `_note_rendered`).
    unrecorded: list[str] = field(default_factory=list)
    # Review mode: the pull requests opened or updated, one line each.
    proposals: list[str] = field(default_factory=list)
    # What the next render may take for granted about HEAD (see `store.render_state`).
    state: dict[str, Any] | None = None
    head: str | None = None  # HEAD when this render let go of the lock (what to push)
    # Of the creates it was asked to answer (`answering`), those marked answered in its own
    # transaction; None when it was asked none.
    answered: set[str] | None = None
    # The rows of `creates` it stored, by id (see `render`).
    created: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def touched_changes(self) -> list[ChartChange]:
        """Charts written or removed."""
        return [*self.added, *self.changed, *self.removed]

    @property
    def touched(self) -> list[str]:
        """Chart paths written or removed."""
        return [c.path for c in self.touched_changes]


def commit_message(result: RenderResult) -> str:
    """Subject, one section per kind of change, and a trailer per deployment."""
    counts = (
        f"{len(result.added)} added, {len(result.changed)} changed, {len(result.removed)} removed"
    )
    if not result.touched:
        counts = "engine files"  # only what Argo CD or Flux reads changed (docs/delivery.md)
    lines = [f"overseer: render ({counts})", ""]
    trailers = []
    for title, changes in (
        ("Added", result.added),
        ("Changed", result.changed),
        ("Removed", result.removed),
    ):
        if not changes:
            continue
        lines.append(f"{title}:")
        for c in changes:
            lines.append(f"  {c.path} ({c.plugin})")
            trailers.append(f"Overseer-Deployment: {c.deployment_id} {c.path} {c.plugin}")
        lines.append("")
    # Who asked, once each: named tokens of the API (the CLI's users are the commit's author).
    askers = sorted({c.requested_by for c in result.touched_changes if c.requested_by})
    trailers += [f"Overseer-Requested-By: {who}" for who in askers]
    return "\n".join(lines + trailers) + "\n"
