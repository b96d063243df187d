"""Publishing commits to a remote: push, and on a rejection, replay ours onto theirs.

The replay is done with objects, as a changeset is: each of our commits not on the remote
becomes a commit on top of the remote's main with the same changes, compared chart by chart
(a path at most two levels deep: `<namespace>/<release>`, or a file). A path both sides changed
differently cannot be replayed (`Diverged`): the render then starts again from the remote's main
(`reset_to_remote`) and renders what the database says, so nobody ever merges by hand. Then the
branch moves, compare-and-swap, like every other ref update.

Review mode never pushes main: it fetches it (`fetch_main`), and pushes one branch per proposed
change (`push_branches`, all of a round's in one push), which it deletes once the change is
merged or closed (`delete_branches`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from ..errors import Conflict, GitFailed
from .command import redact, run
from .trees import Plan, place

if TYPE_CHECKING:
    from .repository import GitOpsRepo

# Where a fetched remote main is kept: a ref of our own, so the local main never moves by a fetch.
REMOTE_MAIN = "refs/overseer/remote-main"
# The last commit known to be on the remote's main: HEAD past it is a push still to make.
_PUSHED = "overseer-pushed"


class Diverged(Conflict):
    """Our commits and the remote's main changed the same chart differently."""


def _git(repo: GitOpsRepo, *args: str) -> str:
    return run(repo.git_dir, *args, bare=True)


def _rejected(exc: GitFailed) -> bool:
    # Someone pushed first: their commits are to be fetched and ours replayed on top.
    return "rejected" in exc.output or "fetch first" in exc.output


def publish(repo: GitOpsRepo, remote: str, *, attempts: int = 5) -> str | None:
    """Push HEAD to the remote's main; return the ref pushed, or None when there is nothing.

    Until a push succeeds, `push_pending` says so, also to later processes. Call it holding the
    writer lock.
    """
    for attempt in range(attempts):
        head = repo.head()
        if head is None:
            return None
        if push_commit(repo, remote, head):
            return "main"
        if attempt < attempts - 1:
            theirs = fetch_main(repo, remote)
            if theirs is not None:
                replay(repo, theirs)
    raise GitFailed(f"push to {redact(remote)}", f"rejected {attempts} times", "try again")


def check_reachable(repo: GitOpsRepo, remote: str, *, timeout: float = 10) -> None:
    """Raise GitFailed unless the remote answers (a readiness probe's question)."""
    try:
        run(repo.git_dir, "ls-remote", "--heads", remote, "main", bare=True, timeout=timeout)
    except GitFailed as exc:
        raise GitFailed(f"reach {redact(remote)}", exc.detail) from None


def push_commit(repo: GitOpsRepo, remote: str, commit: str) -> bool:
    """Push `commit` to the remote's main as a fast-forward, without the writer lock.

    A commit's objects never change once written, so this may run beside the next changesets.
    False when the remote's main has moved elsewhere (then `publish`, under the lock, replays).
    """
    try:
        _git(repo, "push", "--quiet", "--porcelain", remote, f"{commit}:refs/heads/main")
    except GitFailed as exc:
        if _rejected(exc):
            return False
        raise GitFailed(f"push to {redact(remote)}", exc.detail) from None
    _record_pushed(repo, commit)
    return True


def push_pending(repo: GitOpsRepo, commit: str | None = None) -> bool:
    """Whether `commit` (default HEAD) is not known to be on the remote's main yet."""
    head = commit or repo.head()
    if head is None:
        return False
    try:
        return (repo.git_dir / _PUSHED).read_text().strip() != head
    except OSError:
        return True


def _record_pushed(repo: GitOpsRepo, commit: str) -> None:
    # Replaced atomically: a push running beside a changeset (`push_commit`) needs no lock.
    path = repo.git_dir / _PUSHED
    temp = path.with_name(f"{_PUSHED}.{os.getpid()}.{threading.get_ident()}")
    temp.write_text(commit + "\n")
    temp.replace(path)


def fetch_main(repo: GitOpsRepo, remote: str) -> str | None:
    """Fetch the remote's main into `REMOTE_MAIN`; its commit, or None when it has no main."""
    try:
        _git(repo, "fetch", "--quiet", "--no-tags", remote, f"+refs/heads/main:{REMOTE_MAIN}")
    except GitFailed as exc:
        if "couldn't find remote ref" in exc.output:
            return None
        raise GitFailed(f"fetch main from {redact(remote)}", exc.detail) from None
    return repo.head(REMOTE_MAIN)


def follow_main(repo: GitOpsRepo, remote: str) -> str | None:
    """Fetch the remote's main and fast-forward the local main to it when it is behind.

    A hand edit, a revert or a merge on the remote then becomes the base of the next render.
    A local main with commits the remote lacks stays: the next push replays them. Returns the
    remote's main. Call it holding the writer lock.
    """
    fetched = fetch_main(repo, remote)
    head = repo.head()
    if fetched is None or fetched == head:
        if fetched is not None:
            _record_pushed(repo, fetched)
        return fetched
    if head is not None and not repo.objects.descends(fetched, head):
        return fetched  # ours are not on the remote yet
    repo.refs.update("HEAD", fetched, head)
    _record_pushed(repo, fetched)
    repo.committed_since_lock = True  # the files follow when the lock is let go
    return fetched


def reset_to_remote(repo: GitOpsRepo) -> str | None:
    """Move the local main to the remote's main last fetched, dropping commits it lacks.

    For a render whose commits could not be replayed: the database still holds every change they
    carried, so rendering again on the remote's main loses nothing. Call it holding the lock.
    """
    theirs = repo.head(REMOTE_MAIN)
    head = repo.head()
    if theirs is not None and theirs != head:
        repo.refs.update("HEAD", theirs, head)
        repo.committed_since_lock = True  # the files follow when the lock is let go
    if theirs is not None:
        _record_pushed(repo, theirs)
    return theirs


def push_branches(
    repo: GitOpsRepo, remote: str, branches: Mapping[str, str], *, force: bool = True
) -> None:
    """Make each branch on the remote point at its commit, whatever it pointed at before, in one push.

    A proposal's branch is Overseer's alone and is rebuilt from main's tip on every change, so a
    forced update is the right one. Without `force`, a branch that moved meanwhile is left as it
    is and the push fails.
    """
    if not branches:
        return
    plus = "+" if force else ""
    refspecs = [f"{plus}{commit}:refs/heads/{b}" for b, commit in sorted(branches.items())]
    try:
        _git(repo, "push", "--quiet", "--porcelain", remote, *refspecs)
    except GitFailed as exc:
        names = ", ".join(sorted(branches))
        raise GitFailed(f"push {names} to {redact(remote)}", exc.detail) from None


def delete_branches(repo: GitOpsRepo, remote: str, branches: Collection[str]) -> None:
    """Delete branches on the remote (and their local refs) in one push; one already gone is no error."""
    if not branches:
        return
    try:
        _git(
            repo, "push", "--quiet", "--porcelain", remote, *(f":refs/heads/{b}" for b in branches)
        )
    except GitFailed as exc:
        # git and Gitea delete a missing ref with a warning; a forge that refuses says this.
        if "remote ref does not exist" not in exc.output:
            names = ", ".join(branches)
            raise GitFailed(f"delete {names} on {redact(remote)}", exc.detail) from None
    for branch in branches:
        with contextlib.suppress(GitFailed):  # never made here (another replica proposed it)
            _git(repo, "update-ref", "-d", f"refs/heads/{branch}")


def replay(repo: GitOpsRepo, onto: str) -> str:
    """Put our commits that `onto` lacks on top of it; move HEAD there; return the new HEAD."""
    head = repo.head()
    assert head is not None  # noqa: S101 - publish checked
    log = _git(repo, "log", "--reverse", "--first-parent", "--format=%H %P", f"{onto}..{head}")
    ours = [(*line.split(), "")[:2] for line in log.splitlines()]
    try:
        base: str | None = _git(repo, "merge-base", onto, head)
    except GitFailed:  # unrelated histories: everything on either side is a change
        base = None
    try:
        return _replay(repo, head, onto, base, ours)
    except BaseException:
        repo.objects.discard()  # nothing queued for a replay that did not happen
        raise


def _replay(
    repo: GitOpsRepo,
    head: str,
    onto: str,
    base: str | None,
    ours: list[tuple[str, ...]],
) -> str:
    objects = repo.objects
    theirs = repo.objects.diff(repo.tree_of(base), repo.tree_of(onto))
    tip = onto
    for commit, parent in ours:
        changes = repo.objects.diff(repo.tree_of(parent or None), repo.tree_of(commit))
        for path, entry in changes.items():
            if path in theirs and theirs[path] != entry:
                raise Diverged(
                    f"the remote's main changed {path} too, differently; render again from it"
                )
        plan: Plan = {}
        for path, entry in changes.items():
            place(plan, path, entry)
        base_tree = repo.tree_of(tip)
        root = objects.edit(base_tree, plan) or objects.tree({})
        if root == base_tree:  # theirs holds the same charts already (another replica's render)
            continue
        message = _git(repo, "log", "-1", "--format=%B", commit) + "\n"
        tip = objects.commit(root, tip, message)
    objects.flush()
    repo.refs.update("HEAD", tip, head)
    repo.committed_since_lock = True
    return tip
