"""Review mode: every change to a deployment is a pull request, and only main is applied.

A round (`propose`) fetches the remote's main and compares every live deployment with it. Each
deployment whose chart differs gets one branch, `overseer/<release>-<proposal>`, from main's tip,
holding only that chart's change, and one pull request. A later change while the pull request is
open rebuilds the branch from main's tip and edits the same pull request, so branches never stack
and merge in any order. A deployment whose chart on main already is what it should be needs no
proposal: either its pull request was merged (the forge says so), or the change was undone
before anyone merged it (the pull request is closed as superseded).

`settle` asks the forge what became of open pull requests: merged, the deployment is due for
apply (`service.apply` installs what main holds); closed without merging, the change is undone in
the database (`previous` in the proposal) and the deployment is REJECTED. A webhook settles one
pull request at once; the worker's poll settles the rest, so a lost webhook delays, never loses.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .. import gitops
from ..charts import read_inputs
from ..config import REVIEW
from ..errors import Misconfigured, NotFound, UserError
from ..forge import CLOSED, MERGED, OPEN, PullRequest
from ..gitops import Snapshot
from ..ids import new_id
from ..render import from_record
from ..status import Status
from ..store import deployments as store
from ..store import proposals, render_rows
from ..store.db import Connection
from ..store.deployments import DeploymentRecord
from ..store.proposals import ProposalRecord
from . import diff, engine_proposal
from . import proposal_text as text
from .context import Context
from .render_result import ChartChange, RenderResult
from .review_compare import Wanted, compare, fingerprint

log = logging.getLogger("overseer.review")
BASE = "main"
_FORGE_CALLS = 8  # pull requests opened or edited at once


def branch_for(release: str, proposal_id: str) -> str:
    """The branch of one proposal of a deployment's changes.

    A proposal's own: a forge processes a branch's deletion and its re-creation under the same
    name in whatever order its queue gets to them (Gitea, loaded, was seen to end with the pull
    request of the new one answering 404), so a name is never used twice.
    """
    return f"overseer/{release}-{proposal_id[:8]}"


def actor() -> str:
    """Who asks, for a pull request's body: the CLI's user."""
    try:
        return f"{getpass.getuser()} (CLI)"
    except (KeyError, OSError):
        return "CLI"


def remember(
    ctx: Context,
    conn: Connection,
    record: DeploymentRecord,
    kind: str,
    requested_by: str | None = None,
) -> None:
    """Before a change in review mode: keep what the deployment was, for an undo on close.

    Who asked is `requested_by`, else the context's actor (the API's), else the CLI's user.
    """
    previous = {
        "config": record.config,
        "ttl_seconds": record.ttl_seconds,
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "status": record.status,
        "status_reason": record.status_reason,
    }
    proposal_id = new_id()
    proposals.remember(
        conn,
        proposal_id,
        record.id,
        kind,
        branch_for(record.deployment_id, proposal_id),
        previous,
        store.secret_data(conn, record.id),
        requested_by or ctx.actor or actor(),
    )


def check(ctx: Context) -> None:
    """Raise Misconfigured unless review mode has what it needs: a remote and a forge."""
    if not ctx.settings.git_remote:
        raise Misconfigured(
            "review mode proposes pull requests on a remote; set OVERSEER_GIT_REMOTE "
            "(--remote) to the repository the forge holds"
        )
    ctx.forge  # noqa: B018 - builds the forge client from the settings, or raises Misconfigured


def propose(ctx: Context, conn: Connection, *, force: bool = False) -> RenderResult:
    """Propose every deployment whose chart differs from the remote's main; settle the rest.

    Call it holding the writer lock, in the caller's transaction (see `render.render`).
    """
    check(ctx)
    repo, remote = ctx.repo, ctx.settings.git_remote
    assert remote is not None  # noqa: S101 - checked
    main = gitops.fetch_main(repo, remote) or _first_commit(ctx, remote)
    repo.refs.update("HEAD", main, repo.head())  # the local main follows the remote's
    snap = repo.snapshot(main)
    active = proposals.active(conn)
    wanted, in_sync, engine_files = compare(ctx, conn, snap, active, force=force)
    result = RenderResult(unchanged=len(in_sync))
    # Branches first, then one push for all of them, then the forge's calls side by side: a
    # push to a forge costs the same for one branch as for fifty, and each call is a round trip.
    drafts = [
        d
        for want in wanted
        if (d := _draft(ctx, conn, snap, main, want, active.get(want.record.id))) is not None
    ]
    gitops.push_branches(repo, remote, {d.prop.branch: d.commit for d in drafts})
    with ThreadPoolExecutor(max_workers=_FORGE_CALLS) as pool:
        pulls = list(pool.map(lambda d: _open_or_edit(ctx, d), drafts))
    cleanup: list[str] = []
    for draft, pull in zip(drafts, pulls, strict=True):
        want = draft.want
        if pull.state != OPEN:  # merged or closed meanwhile: settle that, propose anew next round
            _settled(conn, draft.prop, pull, cleanup)
            continue
        proposals.opened(
            conn,
            draft.prop.id,
            kind=draft.kind,
            number=pull.number,
            url=pull.url,
            head_commit=draft.commit,
            chart_tree=draft.tree,
        )
        store.set_status(
            conn, want.record.id, Status.PROPOSED, f"pull request #{pull.number}: {pull.url}"
        )
        render_rows.set_rendered(conn, [want.path], draft.commit)
        log.info("proposed %s as pull request #%d (%s)", want.path, pull.number, draft.kind)
        result.proposals.append(f"{want.path}: pull request #{pull.number} {pull.url}")
        change = ChartChange(want.path, want.record.id, want.plugin)
        if want.chart is None:
            result.removed.append(change)
        elif snap.tree_of(want.path) is not None:
            result.changed.append(change)
        else:
            result.added.append(change)
    touched = {w.record.id for w in wanted}
    for dep_id, prop in active.items():
        if dep_id not in touched:  # main already says what the deployment should be
            _in_sync(ctx, conn, prop, cleanup)
    _delete_branches(ctx, cleanup)  # a crash before the commit leaves branches, never rows
    engine_proposal.propose(ctx, main, engine_files, BASE)
    repo.reconciled = True
    result.commit = None  # nothing reaches main from here
    return result


def _first_commit(ctx: Context, remote: str) -> str:
    # Pull requests need a main to merge into: an empty remote gets an empty first commit.
    objects = ctx.repo.objects
    commit = objects.commit(objects.tree({}), None, "overseer: start the GitOps repository\n")
    objects.flush()
    # Not forced: a main someone else made meanwhile stands, and the next round builds on it.
    gitops.push_branches(ctx.repo, remote, {BASE: commit}, force=False)
    return commit


def _kind(want: Wanted, snap: Snapshot, prop: ProposalRecord | None) -> str:
    if prop is not None:
        return prop.kind if prop.kind != "update" or want.chart is not None else "delete"
    if want.chart is None:  # not live: deleted, or its TTL ran out (gc may not have run yet)
        return "delete" if want.record.status == Status.DELETED else "expire"
    if snap.tree_of(want.path) is None:
        return "create"
    try:
        _, plugin = from_record(read_inputs(snap, want.path) or b"", want.path)
    except UserError:
        return "update"
    return "update" if f"{plugin.name}@{plugin.version}" == want.plugin else "upgrade"


@dataclass(frozen=True)
class _Draft:
    """A proposal's branch commit, made and not yet pushed, and its pull request's text."""

    want: Wanted
    prop: ProposalRecord
    kind: str
    commit: str
    tree: str
    title: str
    body: str


def _draft(
    ctx: Context,
    conn: Connection,
    snap: Snapshot,
    main: str,
    want: Wanted,
    prop: ProposalRecord | None,
) -> _Draft | None:
    """The branch commit one deployment's proposal needs; None when its branch says it already."""
    repo = ctx.repo
    tree = fingerprint(repo.objects, want)
    if prop is not None and prop.state == "open" and prop.chart_tree == tree:
        if want.record.status != Status.PROPOSED:  # e.g. gc marked it EXPIRED meanwhile
            store.set_status(
                conn, want.record.id, Status.PROPOSED, f"pull request #{prop.number}: {prop.url}"
            )
        return None  # the pull request proposes exactly this already
    if prop is None and proposals.rejected_tree(conn, want.record.id) == tree:
        return None  # a reviewer closed this very change; only a different one is proposed
    kind = _kind(want, snap, prop)
    if prop is None:
        remember(ctx, conn, want.record, kind)
        prop = proposals.active_for(conn, want.record.id)
        assert prop is not None  # noqa: S101 - inserted just now, under the writer lock
    release = want.record.deployment_id
    title = text.title(kind, release, want.plugin)
    trailers = text.trailers(kind, want.record.id, want.path, want.plugin)
    ref = f"refs/heads/{prop.branch}"
    # Made from main's tip every time, holding only this chart: branches never stack.
    with repo.changes(ref, base=main, expect=repo.head(ref)) as tx:
        if want.chart is None:
            tx.remove(want.path)
        else:
            tx.put(want.path, want.chart)
        for where, files in want.beside:
            if files:
                tx.put(where, files)
            else:
                tx.remove(where)
        commit = tx.commit(f"{title}\n\n{trailers}")
    assert commit is not None  # noqa: S101 - the chart differs from main's
    old = snap.read_chart(want.path) if snap.tree_of(want.path) is not None else None
    change = diff.chart_diff(want.path, old, want.chart)
    who = prop.requested_by or ctx.actor or actor()
    body = text.body(kind, want.path, release, want.record.id, want.plugin, who, change, trailers)
    return _Draft(want, prop, kind, commit, tree, title, body)


def _open_or_edit(ctx: Context, draft: _Draft) -> PullRequest:
    """The draft's pull request, opened or brought up to date (no database here: a thread's)."""
    forge = ctx.forge
    if draft.prop.number is not None:
        return forge.edit(draft.prop.number, draft.title, draft.body)
    found = forge.find(draft.prop.branch, BASE)  # opened by a round whose database never committed
    if found is not None:
        return forge.edit(found.number, draft.title, draft.body)
    return forge.open(draft.prop.branch, BASE, draft.title, draft.body)


def _in_sync(ctx: Context, conn: Connection, prop: ProposalRecord, cleanup: list[str]) -> None:
    """A proposal whose deployment main already matches: merged, or undone before a merge."""
    if prop.number is None:
        proposals.finish(conn, prop.id, "superseded")
        _due(conn, prop.deployment_id, "its change is on main already")
        return
    pull = ctx.forge.get(prop.number)
    if pull.state == OPEN:
        pull = ctx.forge.close(prop.number)
        if pull.state == OPEN:
            return
        proposals.finish(conn, prop.id, "superseded")
        cleanup.append(prop.branch)
        _due(conn, prop.deployment_id, f"pull request #{prop.number} was superseded")
        return
    _settled(conn, prop, pull, cleanup)


def _due(conn: Connection, dep_id: str, reason: str) -> None:
    """Main has the deployment's change: apply installs it (or uninstalls a removed one)."""
    record = store.get(conn, dep_id)
    if record is None:
        return
    if record.deleted_at is not None:
        gone = (
            Status.EXPIRED
            if record.expires_at and record.expires_at <= record.deleted_at
            else Status.DELETED
        )
        store.set_status(conn, dep_id, gone, reason)
        return
    status = Status.UPDATING if record.helm_revision is not None else Status.CREATING
    store.set_status(conn, dep_id, status, reason)


def _delete_branches(ctx: Context, branches: list[str]) -> None:
    remote = ctx.settings.git_remote
    if not remote or not branches:
        return
    try:
        gitops.delete_branches(ctx.repo, remote, branches)
    except UserError as exc:  # nothing depends on them; the forge may hold them a while longer
        log.warning("%s", exc.message)


def _settled(conn: Connection, prop: ProposalRecord, pull: PullRequest, cleanup: list[str]) -> None:
    """Record what a reviewer did: merged (due for apply) or closed (undone, REJECTED).

    The branch joins `cleanup`, deleted once the database has committed.
    """
    if pull.state == MERGED:
        proposals.finish(conn, prop.id, "merged")
        _due(conn, prop.deployment_id, f"pull request #{pull.number} merged; applying")
    elif pull.state == CLOSED:
        proposals.finish(conn, prop.id, "closed")
        _undo(conn, prop, pull)
    else:
        return
    cleanup.append(prop.branch)
    log.info("pull request #%d %s", pull.number, pull.state)


def _undo(conn: Connection, prop: ProposalRecord, pull: PullRequest) -> None:
    reason = f"pull request #{pull.number} was closed without merging"
    if prop.kind == "create" or prop.previous is None:
        store.reject(conn, prop.deployment_id, f"{reason}; nothing was applied")
        return
    previous: dict[str, Any] = dict(prop.previous)
    if prop.kind == "expire":
        previous["expires_at"] = None  # the reviewers kept it: it does not expire again at once
    store.restore(
        conn,
        prop.deployment_id,
        previous,
        proposals.previous_secret(conn, prop.id),
        f"{reason}; the previous values stay live",
    )


@dataclass(frozen=True)
class Settled:
    """What became of one pull request."""

    number: int
    state: str


def settle(
    ctx: Context,
    numbers: Iterable[int] | None = None,
    *,
    committed: Callable[[], None] | None = None,
) -> list[Settled]:
    """Ask the forge about open pull requests (all, or `numbers`), and record merges and closes.

    `committed` is called once the database says so and before the branches are deleted: the
    server wakes its applier there, so a merge's apply does not wait for that clean-up.
    """
    with ctx.transaction() as conn:
        active = list(proposals.active(conn).values())
    wanted = set(numbers) if numbers is not None else None
    asked = [p for p in active if p.number is not None and (wanted is None or p.number in wanted)]
    # The forge is asked outside the writer lock, side by side: a poll of a hundred open pull
    # requests must not hold up the rounds that propose.
    with ThreadPoolExecutor(max_workers=_FORGE_CALLS) as pool:
        pulls = list(pool.map(lambda p: ctx.forge.get(p.number or 0), asked))
    done = [(prop, pull) for prop, pull in zip(asked, pulls, strict=True) if pull.state != OPEN]
    if not done:
        return []
    out: list[Settled] = []
    cleanup: list[str] = []
    with ctx.writer() as conn:
        for prop, pull in done:
            current = proposals.active_for(conn, prop.deployment_id)
            if current is None or current.id != prop.id:
                continue  # a round settled it meanwhile
            _settled(conn, current, pull, cleanup)
            out.append(Settled(pull.number, pull.state))
        ctx.repo.reconciled = True
    if committed is not None and out:
        committed()
    if cleanup:
        with ctx.repo.lock():
            _delete_branches(ctx, cleanup)
    return out


def webhook(
    ctx: Context,
    forge_name: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    committed: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Handle a forge's delivery: verify its signature, then settle the pull request it names.

    The payload only says which pull request to look at; its state is read back from the forge.
    A delivery seen before (by its id) changes nothing.
    """
    if ctx.settings.mode != REVIEW or ctx.settings.forge != forge_name:
        raise NotFound(
            f"no {forge_name} webhook here: this server runs in {ctx.settings.mode} mode"
            + (f" with forge {ctx.settings.forge}" if ctx.settings.forge else "")
        )
    event = ctx.forge.event(headers, body)
    if event.number is None:
        return {"status": "ignored", "settled": []}
    if event.delivery:
        with ctx.transaction() as conn:
            if proposals.delivered(conn, forge_name, event.delivery):
                return {"status": "duplicate", "settled": []}
    settled = settle(ctx, [event.number], committed=committed)
    if event.delivery:
        with ctx.transaction() as conn:
            proposals.record_delivery(conn, forge_name, event.delivery)
    return {"status": "ok", "settled": [{"number": s.number, "state": s.state} for s in settled]}
