"""Apply rendered charts to a cluster with `helm upgrade --install`, and record what happened.

Secret values reach helm only through a values file in a private temporary directory (the
directory 0700, the file 0600), removed when helm returns: never a command line, never Git.
Each release is applied from a snapshot of its chart, so a render running meanwhile cannot hand
helm half of an old chart and half of a new one. Independent releases are applied in parallel.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import gitops
from ..chart_path import ChartPath
from ..config import REVIEW
from ..errors import MassDeletionRefused, NotFound, UserError
from ..gitops import Snapshot
from ..status import Status
from ..store import db
from ..store import deployments as store
from ..store.deployments import DeploymentRecord
from ..tools import helm, kubectl
from . import render as render_service
from . import review as review_service
from .context import Context

CREATING, UPDATING, APPLYING, READY, FAILED, NOT_READY = (
    Status.CREATING,
    Status.UPDATING,
    Status.APPLYING,
    Status.READY,
    Status.FAILED,
    Status.NOT_READY,
)


_APPLIER_KEY = 0x0E5EE5  # any constant shared by every Overseer process


@dataclass(frozen=True)
class Outcome:
    """What happened to one release."""

    deployment_id: str
    namespace: str
    # applied, failed, skipped, uninstalled, recovered, refreshed, expired, proposed
    action: str
    status: str
    revision: int | None = None
    reason: str | None = None


def cluster(ctx: Context) -> helm.Cluster:
    """The cluster the settings point at."""
    settings = ctx.settings
    return helm.Cluster(settings.kubeconfig, settings.helm_timeout, settings.create_namespaces)


@contextmanager
def exclusive(ctx: Context, *, wait: Callable[[], None] | None = None) -> Iterator[bool]:
    """Hold the applier lock, a PostgreSQL advisory lock shared by every Overseer process.

    Two appliers would run helm on the same release at once, and the loser's "another operation
    is in progress" would be recorded as a stuck release. Without `wait` this yields False when
    another process holds the lock; with it, `wait` is called once and the lock awaited.
    """
    conn = db.connect(ctx.database_url, autocommit=True)
    try:
        row = conn.execute("SELECT pg_try_advisory_lock(%s) AS locked", (_APPLIER_KEY,)).fetchone()
        locked = bool(row and row["locked"])
        if not locked and wait is not None:
            wait()
            conn.execute("SELECT pg_advisory_lock(%s)", (_APPLIER_KEY,))
            locked = True
        yield locked
    finally:
        conn.close()  # also releases the lock


# Statuses apply leaves alone when the chart and the secrets are what it installed last. A FAILED
# release whose chart did not change is retried only when named: it would fail the same way.
_SETTLED = (READY, FAILED, NOT_READY, Status.REJECTED)


def _needs_apply(d: DeploymentRecord, tree: str) -> bool:
    # A secret-only update changes no chart: the secret revision tells it apart.
    return (
        d.applied_tree != tree
        or d.applied_secret_revision != d.secret_revision
        or d.status not in _SETTLED
    )


def source(ctx: Context, ref: str | None = None) -> str | None:
    """The commit apply installs: `ref`, else the remote's main (fetched), else the local main."""
    repo = ctx.repo
    if ref is not None:
        return ctx.snapshot(ref).commit  # NotFound when no commit has that name
    if ctx.settings.git_remote:
        with repo.lock():
            return gitops.fetch_main(repo, ctx.settings.git_remote)
    return repo.head()


@dataclass(frozen=True)
class _Plan:
    """One pass: what to install (with the chart's tree) and what to uninstall."""

    commit: str | None
    install: list[tuple[DeploymentRecord, str]]
    uninstall: list[DeploymentRecord]
    skipped: list[Outcome]


def _plan(
    ctx: Context, commit: str | None, named: Sequence[str], *, force: bool, where: str = "main"
) -> _Plan:
    snap = ctx.repo.snapshot(commit) if commit is not None else None
    on_main = {p: (snap.tree_of(p) or b"").hex() for p in snap.chart_paths()} if snap else {}
    with ctx.transaction() as conn:
        rows = store.by_releases(conn, [ChartPath(p).release for p in on_main])
        installed = store.installed(conn)
        chosen = store.apply_candidates(conn, named) if named else []
    if named:
        found = {d.id for d in chosen} | {d.deployment_id for d in chosen}
        missing = [i for i in named if i not in found]
        if missing:
            raise NotFound(
                f"no live, rendered deployment {', '.join(missing)}",
                hint="see `overseer deploy list`",
                api_hint="see GET /deployments",
            )
        absent = [d.deployment_id for d in chosen if d.chart_path not in on_main]
        if absent:
            raise NotFound(
                f"{', '.join(absent)}: no chart on main (commit {commit}) to apply",
                hint="run `overseer render` and push it, or in review mode merge its pull "
                "request; with --ref, check the commit",
            )
        install = [(d, on_main[d.chart_path]) for d in chosen]
        return _Plan(commit, install, [], [])
    install, skipped = [], []
    for path, tree in sorted(on_main.items()):
        d = rows.get(path)
        if d is None:
            skipped.append(
                Outcome(
                    "-",
                    path.split("/")[0],
                    "skipped",
                    "-",
                    None,
                    f"{path} is on main but no deployment knows it; its secrets are unknown",
                )
            )
        elif d.deleted_at is None and d.status != Status.PROPOSED and _needs_apply(d, tree):
            install.append((d, tree))
    gone = [d for d in installed if d.chart_path not in on_main]
    if len(gone) > 1 and len(gone) * 2 > len(installed) and not force:
        raise MassDeletionRefused(len(gone), len(installed), what="releases", where=where)
    return _Plan(commit, install, gone, skipped)


def apply(
    ctx: Context,
    idents: Sequence[str] = (),
    *,
    recover: str | None = None,
    ref: str | None = None,
    force: bool = False,
    settle: bool = False,
    render: bool = True,
) -> list[Outcome]:
    """Render, then install what main (or `ref`) holds and uninstall what it no longer holds.

    In review mode, `settle` first asks the forge what became of the open pull requests (the
    CLI does; the server's worker polls on its own interval). `render` false skips the render
    (the server's worker in review mode, whose requests render, and whose poll proposes).

    Git is the source: a chart is installed exactly as the commit holds it, and a release whose
    chart left main (a merged deletion, a revert, a hand edit) is uninstalled. Per release the
    commit and the chart's tree are recorded, so the next pass installs only what changed.
    """
    if not ctx.delivery.installs:
        raise UserError(
            f"Overseer installs nothing here: {ctx.delivery.engine} syncs the repository "
            f"(OVERSEER_DELIVERY={ctx.settings.delivery_file}), and one installer owns each "
            "release; set `apply: true` in that file to install with Overseer as well"
        )
    if settle and ctx.settings.mode == REVIEW:
        review_service.settle(ctx)
    remote = ctx.settings.git_remote
    if render and remote and ctx.settings.mode != REVIEW:
        with ctx.writer() as conn:  # the remote's main is the base of this render
            gitops.follow_main(ctx.repo, remote)
            render_service.render(ctx, conn)
    elif render:
        render_service.render(ctx)  # review mode fetches main itself
    outcomes: list[Outcome] = []
    named = list(idents)
    if recover is not None:
        outcomes.append(recover_release(ctx, recover))
        named.append(recover)
    plan = _plan(ctx, source(ctx, ref), named, force=force, where=ref or "main")
    outcomes += plan.skipped
    snap = ctx.repo.snapshot(plan.commit) if plan.commit is not None else None
    with ThreadPoolExecutor(max_workers=max(1, ctx.settings.apply_parallel)) as pool:
        if snap is not None:
            outcomes += pool.map(lambda it: _apply_one(ctx, it[0], snap, it[1]), plan.install)
        outcomes += pool.map(lambda d: uninstall(ctx, d), plan.uninstall)
    return outcomes


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _apply_one(ctx: Context, d: DeploymentRecord, snap: Snapshot, tree: str) -> Outcome:
    with ctx.transaction() as conn:
        if not store.start_apply(conn, d):
            return Outcome(
                d.deployment_id,
                d.namespace,
                "skipped",
                d.status,
                d.helm_revision,
                "changed while queued; the next apply takes it up",
            )
        sealed = store.secret_data(conn, d.id)
    secrets = ctx.secrets.open(sealed)
    revision = store.secret_revision(sealed)
    chart = d.chart_path
    target = cluster(ctx)
    try:
        with tempfile.TemporaryDirectory(prefix="overseer-apply-") as tmp:  # created 0700
            snapshot = Path(tmp) / "chart"
            # From the commit this apply records as applied: what helm installs is exactly it.
            snap.export(chart, snapshot)
            values = Path(tmp) / "secret-values.yaml"
            # The revision names the sealed values, not the values: it changes with them and
            # reveals nothing (each sealing is freshly encrypted), and the pods roll on a change.
            given = {"secretEnv": _accepted(snapshot, secrets), "secretRevision": revision or ""}
            _write_private(values, json.dumps(given).encode())
            release = helm.upgrade_install(target, d.deployment_id, snapshot, d.namespace, values)
    except helm.HelmFailed as exc:
        reason = exc.reason
        if exc.pending:
            reason = (
                f"release {d.deployment_id} is stuck in a pending state (an earlier helm was "
                f"interrupted); recover it with `overseer apply --recover {d.deployment_id}` ({reason})"
            )
        # The revision helm is left at, when helm can say; otherwise the one on record stays,
        # since uninstalling the release later depends on it.
        try:
            current = helm.status(target, d.deployment_id, d.namespace)
        except helm.HelmFailed:
            known: dict[str, int | None] = {}
        else:
            known = {"helm_revision": int(str(current["version"])) if current else None}
        with ctx.transaction() as conn:  # the tree was tried: retried when named, or changed
            store.finish_apply(conn, d.id, FAILED, reason, applied_tree=tree, **known)
        left_at = known.get("helm_revision", d.helm_revision)
        return Outcome(d.deployment_id, d.namespace, "failed", FAILED, left_at, reason)
    except FileNotFoundError:
        reason = f"chart {chart} is missing from commit {snap.commit}; run `overseer render`"
        with ctx.transaction() as conn:
            store.finish_apply(conn, d.id, FAILED, reason)
        return Outcome(d.deployment_id, d.namespace, "failed", FAILED, None, reason)
    installed = int(release["version"])
    with ctx.transaction() as conn:
        store.finish_apply(
            conn,
            d.id,
            READY,
            None,
            helm_revision=installed,
            applied_commit=snap.commit,
            applied_tree=tree,
            applied_secret_revision=revision,
        )
    return Outcome(d.deployment_id, d.namespace, "applied", READY, installed)


def _accepted(chart: Path, secrets: dict[str, str]) -> dict[str, str]:
    # Only the secrets this chart declares: its schema refuses any other, and a plugin version
    # that dropped a variable leaves its sealed value behind in the row.
    try:
        schema = json.loads((chart / "values.schema.json").read_bytes())
        declared = schema["properties"]["secretEnv"]["properties"]
    except (OSError, ValueError, KeyError, TypeError):
        return secrets
    return {name: value for name, value in secrets.items() if name in declared}


def _safe_status(target: helm.Cluster, d: DeploymentRecord) -> dict[str, object] | None:
    try:
        return helm.status(target, d.deployment_id, d.namespace)
    except helm.HelmFailed:
        return None


def uninstall(ctx: Context, d: DeploymentRecord) -> Outcome:
    """Uninstall the release of a deleted or expired deployment and forget its revision."""
    try:
        helm.uninstall(cluster(ctx), d.deployment_id, d.namespace)
    except helm.HelmFailed as exc:
        with ctx.transaction() as conn:
            store.set_status(conn, d.id, d.status, f"uninstall failed: {exc.reason}")
        return Outcome(
            d.deployment_id, d.namespace, "failed", d.status, d.helm_revision, exc.reason
        )
    with ctx.transaction() as conn:
        store.mark_uninstalled(conn, d.id)
    return Outcome(d.deployment_id, d.namespace, "uninstalled", d.status)


def recover_release(ctx: Context, ident: str) -> Outcome:
    """Roll a release stuck in pending-* back to its last deployed revision (or remove it)."""
    with ctx.transaction() as conn:
        d = store.get(conn, ident)
    if d is None:
        raise NotFound.deployment(ident)
    target = cluster(ctx)
    revisions = helm.history(target, d.deployment_id, d.namespace)
    if not revisions:
        raise UserError(f"release {d.deployment_id} is not installed; nothing to recover")
    last = revisions[-1]
    if not str(last.get("status", "")).startswith("pending-"):
        raise UserError(
            f"release {d.deployment_id} is {last.get('status')}, not stuck; nothing to recover"
        )
    good = [r for r in revisions[:-1] if r.get("status") in ("deployed", "superseded")]
    try:
        if good:
            helm.rollback(target, d.deployment_id, d.namespace, int(good[-1]["revision"]))
        else:  # a first install never finished: nothing to go back to
            helm.uninstall(target, d.deployment_id, d.namespace)
    except helm.HelmFailed as exc:
        raise UserError(f"could not recover release {d.deployment_id}: {exc.reason}") from None
    current = _safe_status(target, d)
    revision = int(str(current["version"])) if current else None
    with ctx.transaction() as conn:
        store.set_status(
            conn,
            d.id,
            APPLYING,
            "recovered from " + str(last.get("status")),
            helm_revision=revision,
        )
    return Outcome(d.deployment_id, d.namespace, "recovered", APPLYING, revision)


def refresh(ctx: Context, ident: str | None = None) -> list[Outcome]:
    """Read each applied release's state and workload readiness from the cluster into the database."""
    with ctx.transaction() as conn:
        if ident is not None:
            one = store.get(conn, ident)
            if one is None:
                raise NotFound.deployment(ident)
            records = [one]
        else:
            records = [d for d in store.apply_candidates(conn) if d.helm_revision is not None]
    with ThreadPoolExecutor(max_workers=max(1, ctx.settings.apply_parallel)) as pool:
        return list(pool.map(lambda d: _refresh_one(ctx, d), records))


def _refresh_one(ctx: Context, d: DeploymentRecord) -> Outcome:
    # A pending deployment is for `apply` to settle: an UPDATING release still runs the previous
    # inputs, and reading it back as READY would drop the upgrade (after a secret-only update,
    # nothing else tells `apply` to run it); an APPLYING one reads as pending-upgrade while helm
    # works, which is no failure.
    if d.deleted_at is not None or d.status in (CREATING, UPDATING, APPLYING):
        return Outcome(
            d.deployment_id, d.namespace, "refreshed", d.status, d.helm_revision, d.status_reason
        )
    target = cluster(ctx)
    try:
        current = helm.status(target, d.deployment_id, d.namespace)
    except helm.HelmFailed as exc:
        return Outcome(
            d.deployment_id, d.namespace, "refreshed", d.status, d.helm_revision, exc.reason
        )
    revision: int | None = None
    if current is None:
        status, reason = (
            (FAILED, "release not found in the cluster; run `overseer apply`")
            if d.helm_revision
            else (d.status, d.status_reason)
        )
    else:
        revision = int(current["version"])
        state = str(current.get("info", {}).get("status", ""))
        if state == "deployed":
            readiness = kubectl.release_readiness(
                ctx.settings.kubeconfig, d.deployment_id, d.namespace
            )
            status, reason = (READY, None) if readiness.ready else (NOT_READY, readiness.detail)
        elif state.startswith("pending-"):
            status = FAILED
            reason = (
                f"release is {state}; recover it with `overseer apply --recover {d.deployment_id}`"
            )
        else:
            status, reason = (
                FAILED,
                f"release is {state}: {current.get('info', {}).get('description', '')}",
            )
    with ctx.transaction() as conn:
        if not store.refresh_status(conn, d, status, reason, revision):  # an update or apply won
            now = store.get(conn, d.id) or d
            return Outcome(
                d.deployment_id, d.namespace, "refreshed", now.status, now.helm_revision, None
            )
    return Outcome(d.deployment_id, d.namespace, "refreshed", status, revision, reason)


def gc(ctx: Context) -> list[Outcome]:
    """Expire deployments past their TTL: status EXPIRED, chart removed, release uninstalled.

    In review mode the removal is proposed like any change, and the release stays until the
    pull request is merged (then apply uninstalls it, its chart being gone from main).
    """
    review = ctx.settings.mode == REVIEW
    with ctx.writer() as conn:
        if review:
            for d in store.due(conn):
                review_service.remember(ctx, conn, d, "expire", "Overseer (its TTL ran out)")
        expired = store.expire_due(conn)
        if expired:
            render_service.render(ctx, conn)
    if review:
        return [Outcome(d.deployment_id, d.namespace, "proposed", Status.EXPIRED) for d in expired]
    outcomes = [
        Outcome(d.deployment_id, d.namespace, "expired", Status.EXPIRED)
        for d in expired
        if d.helm_revision is None
    ]
    with ThreadPoolExecutor(max_workers=max(1, ctx.settings.apply_parallel)) as pool:
        outcomes += pool.map(
            lambda d: uninstall(ctx, d), [d for d in expired if d.helm_revision is not None]
        )
    return outcomes
