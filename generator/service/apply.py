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

from ..errors import NotFound, UserError
from ..store import db
from ..store import deployments as store
from ..store.deployments import DeploymentRecord
from ..tools import helm, kubectl
from . import render as render_service
from .context import Context

# Statuses a deployment can have. READY means deployed and every replica ready. UPDATING: its
# inputs changed (`deploy update`) and the release awaits the upgrade.
CREATING, UPDATING, APPLYING, READY, FAILED, NOT_READY = (
    "CREATING",
    "UPDATING",
    "APPLYING",
    "READY",
    "FAILED",
    "NOT_READY",
)


_APPLIER_KEY = 0x0E5EE5  # any constant shared by every Overseer process


@dataclass(frozen=True)
class Outcome:
    """What happened to one release."""

    deployment_id: str
    namespace: str
    action: str  # applied, failed, uninstalled, recovered, refreshed
    status: str
    revision: int | None = None
    reason: str | None = None


def cluster(ctx: Context) -> helm.Cluster:
    """The cluster the settings point at."""
    return helm.Cluster(ctx.settings.kubeconfig, ctx.settings.helm_timeout)


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


def _needs_apply(d: DeploymentRecord) -> bool:
    # New or changed since it was last applied, or never settled. A FAILED release whose chart
    # did not change is retried only when named: the same chart would fail the same way.
    # A secret-only update changes no chart: the secret revision tells it apart.
    return (
        d.applied_commit != d.rendered_commit
        or d.applied_secret_revision != d.secret_revision
        or d.status not in (READY, FAILED, NOT_READY)
    )


def apply(ctx: Context, idents: Sequence[str] = (), *, recover: str | None = None) -> list[Outcome]:
    """Render, then apply every new or changed chart (or the named ones) and uninstall removed ones."""
    render_service.render(ctx)
    outcomes: list[Outcome] = []
    named = list(idents)
    if recover is not None:
        outcomes.append(recover_release(ctx, recover))
        named.append(recover)
    with ctx.transaction() as conn:
        candidates = store.apply_candidates(conn, named)
        gone = store.installed_but_gone(conn) if not named else []
    if named:
        found = {d.id for d in candidates} | {d.deployment_id for d in candidates}
        missing = [i for i in named if i not in found]
        if missing:
            raise NotFound(
                f"no live, rendered deployment {', '.join(missing)}; see `overseer deploy list`"
            )
    todo = candidates if named else [d for d in candidates if _needs_apply(d)]
    with ThreadPoolExecutor(max_workers=max(1, ctx.settings.apply_parallel)) as pool:
        outcomes += pool.map(lambda d: _apply_one(ctx, d), todo)
        outcomes += pool.map(lambda d: uninstall(ctx, d), gone)
    return outcomes


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _apply_one(ctx: Context, d: DeploymentRecord) -> Outcome:
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
    chart = f"{d.namespace}/{d.deployment_id}"
    target = cluster(ctx)
    try:
        with tempfile.TemporaryDirectory(prefix="overseer-apply-") as tmp:  # created 0700
            snapshot = Path(tmp) / "chart"
            # From the commit this apply records as applied: what helm installs is exactly it.
            ctx.repo.snapshot(d.rendered_commit).export(chart, snapshot)
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
        with ctx.transaction() as conn:
            store.finish_apply(conn, d.id, FAILED, reason, **known)
        left_at = known.get("helm_revision", d.helm_revision)
        return Outcome(d.deployment_id, d.namespace, "failed", FAILED, left_at, reason)
    except FileNotFoundError:
        reason = f"chart {chart} is missing from commit {d.rendered_commit}; run `overseer render`"
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
            applied_commit=d.rendered_commit,
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
        raise NotFound(f'deployment "{ident}" not found; see `overseer deploy list`')
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
                raise NotFound(f'deployment "{ident}" not found; see `overseer deploy list`')
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
    """Expire deployments past their TTL: status EXPIRED, chart removed (a commit), release uninstalled."""
    with ctx.writer() as conn:
        expired = store.expire_due(conn)
        if expired:
            render_service.render(ctx, conn)
    outcomes = [
        Outcome(d.deployment_id, d.namespace, "expired", "EXPIRED")
        for d in expired
        if d.helm_revision is None
    ]
    with ThreadPoolExecutor(max_workers=max(1, ctx.settings.apply_parallel)) as pool:
        outcomes += pool.map(
            lambda d: uninstall(ctx, d), [d for d in expired if d.helm_revision is not None]
        )
    return outcomes
