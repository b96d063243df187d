"""Review mode's pull request for the engine files that no chart's proposal carries.

A chart's proposal carries its own Flux files. The files no one chart owns (the ApplicationSet,
the AppProject, the GitRepository), and what changes with no chart (Flux turned on over charts
already on main, another `flux.interval`, an engine switched off), go into one pull request of
their own, on the branch `overseer/engine-files`: an engine's setup is a change to review by
itself. It is rebuilt from main's tip whenever it must say something else, and closed once main
needs nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping

from .. import gitops
from ..delivery import engines
from ..errors import UserError
from ..gitops import Snapshot
from ..gitops.trees import TREE
from ..render import Chart, DeploymentInput
from .context import Context
from .delivery import DeliveryFiles

BRANCH = "overseer/engine-files"
REF = f"refs/heads/{BRANCH}"
TRAILER = "Overseer-Engine-Files:"
TITLE = "overseer: engine files"
log = logging.getLogger("overseer.review")

Changes = dict[str, Chart | bytes | None]  # a directory's files, a file's bytes, or removal


def changes(
    delivery: DeliveryFiles, snap: Snapshot, synced: Iterable[tuple[DeploymentInput, bytes | None]]
) -> Changes:
    """What main's engine files lack, for the charts main already holds as they should be."""
    found: Changes = {}
    for path, data in delivery.shared().items():
        if snap.read_file(path) != data:
            found[path] = data
    engine = delivery.config.engine
    for root, name in ((engines.ARGOCD_DIR, "argocd"), (engines.FLUX_DIR, "flux")):
        if engine != name and snap.tree_of(root) is not None:
            found[root] = None
    if engine != "flux":
        return found
    # Ciphertext main lacks is kept from the branch that proposed it, while it stands: made
    # again every round, it would make the pull request say something new every round.
    proposed = delivery.ctx.repo.head(REF)
    branch = delivery.ctx.repo.snapshot(proposed) if proposed else None
    for dep, before in synced:
        on_main = snap.tree_of(engines.release_dir(dep.chart_path)) is not None
        where, files = delivery.release(dep, snap if on_main or branch is None else branch, before)
        if snap.read_chart(where) != files:
            found[where] = files
    charts = {f"{engines.FLUX_DIR}/{path}" for path in snap.chart_paths()}
    for where in _release_dirs(snap):
        if where not in charts:  # its chart left main: its HelmRelease goes too
            found[where] = None
    return found


def _release_dirs(snap: Snapshot) -> list[str]:
    root = snap.tree_of(engines.FLUX_DIR)
    if root is None:
        return []
    dirs = []
    for ns, (mode, sha) in snap.objects.entries(root).items():
        if mode == TREE:
            dirs += [
                f"{engines.FLUX_DIR}/{ns}/{name}"
                for name, (kind, _) in snap.objects.entries(sha).items()
                if kind == TREE
            ]
    return dirs


def propose(ctx: Context, main: str, found: Mapping[str, Chart | bytes | None], base: str) -> None:
    """Open or update the engine files' pull request, or close it when main needs none.

    A failure of the forge or of the push is logged, not raised: the charts' proposals of the
    round stand, and the next round, finding no open pull request for the same files, retries.
    """
    try:
        _propose(ctx, main, found, base)
    except UserError as exc:
        log.warning("the engine files' pull request: %s; the next round retries", exc.message)


def _propose(ctx: Context, main: str, found: Mapping[str, Chart | bytes | None], base: str) -> None:
    repo, remote, forge = ctx.repo, ctx.settings.git_remote, ctx.forge
    assert remote is not None  # noqa: S101 - review mode has one
    before = repo.head(REF)
    if not found:
        if before is not None:  # proposed before, and main has it now (or needs it no more)
            pull = forge.find(BRANCH, base)
            if pull is not None:
                forge.close(pull.number)
            gitops.delete_branches(repo, remote, [BRANCH])
        return
    digest = _digest(found)
    body = "Files Argo CD or Flux reads that no chart's pull request carries:\n\n" + "".join(
        f"- `{path}`{' (removed)' if value is None else ''}\n"
        for path, value in sorted(found.items())
    )
    commit = before
    if before is None or not _proposes(ctx, before, digest):
        with repo.changes(REF, base=main, expect=before) as tx:
            for path, value in sorted(found.items()):
                if value is None:
                    tx.remove(path)
                elif isinstance(value, bytes):
                    tx.put_file(path, value)
                else:
                    tx.put(path, value)
            commit = tx.commit(f"{TITLE}\n\n{body}\n{TRAILER} {digest}\n")
    elif forge.find(BRANCH, base) is not None:
        return  # open, and proposing exactly these files
    assert commit is not None  # noqa: S101 - `found` differs from main
    gitops.push_branches(repo, remote, {BRANCH: commit})
    pull = forge.find(BRANCH, base)
    if pull is None:
        pull = forge.open(BRANCH, base, TITLE, body)
    else:
        forge.edit(pull.number, TITLE, body)
    log.info("proposed engine files as pull request #%d (%s)", pull.number, pull.url)


def _proposes(ctx: Context, commit: str, digest: str) -> bool:
    try:
        text = ctx.repo.objects.read(bytes.fromhex(commit))
    except OSError:  # this clone lost it: propose anew
        return False
    return f"\n{TRAILER} {digest}\n".encode() in text


def _digest(found: Mapping[str, Chart | bytes | None]) -> str:
    # What the pull request proposes, whatever main's tip it was built on.
    parts = []
    for path, value in sorted(found.items()):
        if isinstance(value, bytes):
            parts.append(f"{path} {hashlib.sha256(value).hexdigest()}")
        elif value is None:
            parts.append(f"{path} -")
        else:
            files = sorted((name, hashlib.sha256(data).hexdigest()) for name, data in value.items())
            parts.append(f"{path} {files}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
