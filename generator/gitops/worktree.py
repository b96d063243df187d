"""The checked-out files of the GitOps repository: a view of a commit, brought up to date on demand.

Nothing on the write path reads or writes them: renders read charts from commits and commit
objects. A person who runs `helm install rendered/<ns>/<release>` by hand, or a command asked to
read a path, wants files, so the work tree follows HEAD when a reader asks (`sync`), and, in the
CLI's `checkout` mode, whenever a writer lets go of the repository.

`.git/overseer-worktree` records the commit the index and the files were last brought to, and the
index as it was then (a hand commit in the clone changes it: the record no longer holds). A sync
moves them from that commit to HEAD, writing only the charts that differ (`git restore` of those
paths, or a two-tree `read-tree` when there are many), and then records HEAD. Killed half-way,
the record still names the old commit, and the next sync simply does it again, overwriting what
the killed one left.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import GitFailed
from .command import run
from .objects import ObjectStore
from .trees import TREE

log = logging.getLogger("overseer.git")
# Creating files is mostly kernel time here, which one process spends on one core: a large
# checkout spreads it over a worker per core (1,000 charts: 10-15 s down to 7.5-8.3 s on 2 cores
# in a slow hour).
_PARALLEL_CHECKOUT = ("-c", "checkout.workers=0", "-c", "checkout.thresholdForParallelism=1200")
# Up to this many changed charts, only they are restored; past it, a two-tree read-tree (git's
# pathspec matching compares every index entry with every path named).
_RESTORE_MAX = 200


def held_open(path: Path) -> bool:
    """Whether any process has `path` open (Linux /proc; elsewhere assumed so)."""
    target = str(path)
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return True
    for pid in proc.iterdir():
        if not pid.name.isdigit():
            continue
        try:
            fds = list((pid / "fd").iterdir())
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return True
            except OSError:
                continue
    return False


class WorkTree:
    """The files under the repository's root (callers hold the writer lock)."""

    def __init__(
        self,
        root: Path,
        git_dir: Path,
        objects: ObjectStore,
        tree_of: Callable[[str], bytes | None],
    ) -> None:
        self.root = root
        self.git_dir = git_dir
        self._objects = objects
        self._tree_of = tree_of
        self._record = git_dir / "overseer-worktree"

    @staticmethod
    def managed(root: Path) -> bool:
        """Whether Overseer keeps the files of the repository at `root` (it has a record)."""
        return (root / ".git" / "overseer-worktree").is_file()

    def adopt(self, head: str | None) -> None:
        """Start keeping the files of a repository that has no record: they are at `head`.

        A repository Overseer just created has no commit yet; one made by an earlier version
        of Overseer had its files at HEAD whenever no writer held it.
        """
        if not self._record.exists():
            self._write(head or "")

    def at(self) -> str | None:
        """The commit the index and the files were last brought to, if that still holds.

        None also when the index changed since (someone committed, reverted or checked out by
        hand in this clone): then nobody knows where the files are, and a sync resets them all.
        """
        try:
            text = self._record.read_text(encoding="ascii").rstrip("\n")
            commit, _, index = text.partition(" ")
        except FileNotFoundError:
            return None
        if index and index != self._index_signature():
            return None
        return commit or None

    def _index_signature(self) -> str:
        try:
            st = (self.git_dir / "index").stat()
        except FileNotFoundError:
            return "none"
        return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"

    def sync(self, head: str | None, *, hard: bool = False) -> None:
        """Bring the index and the files to `head`, writing only what differs.

        `hard` also puts back hand edits of charts that did not change, and removes untracked
        files inside the namespaces of charts (a full render's repair).
        """
        if head is None:
            return
        recorded = self.at()
        if recorded == head and not hard:
            return
        self._drop_stale_index_lock()
        if recorded is None:
            self._git(*_PARALLEL_CHECKOUT, "read-tree", "--reset", "-u", head)
        else:
            try:
                self._move(recorded, head)
            except (GitFailed, FileNotFoundError):  # FileNotFoundError: the recorded commit is gone
                # The index is not where the record says (someone committed by hand here):
                # a one-tree reset to HEAD, which reads every entry but always works.
                self._git(*_PARALLEL_CHECKOUT, "read-tree", "--reset", "-u", head)
        namespaces = self._namespaces(head) if hard else []
        if namespaces:
            # Every chart as HEAD has it, and nothing else in them; other files are not a
            # render's to touch (a README, a user's uncommitted work beside the namespaces).
            self._git("restore", f"--source={head}", "--staged", "--worktree", "--", *namespaces)
            self._git("clean", "-fdq", "--", *namespaces)
        self._write(head)

    def _write(self, commit: str) -> None:
        tmp = self._record.with_suffix(".tmp")
        tmp.write_text(f"{commit} {self._index_signature()}\n", encoding="ascii")
        os.replace(tmp, self._record)

    def _move(self, recorded: str, head: str) -> None:
        # A few charts changed: `restore` of just them writes their files and index entries and
        # looks at no other file (one chart in a 10,000-chart repository: 0.02 s, where a
        # two-tree `read-tree`, which checks every file of the index, took 0.33 s). Many: the
        # `read-tree`, whose cost no longer depends on how many were named.
        paths = list(self._objects.diff(self._tree_of(recorded), self._tree_of(head)))
        if not paths:
            return
        if len(paths) > _RESTORE_MAX:
            self._git(*_PARALLEL_CHECKOUT, "read-tree", "--reset", "-u", recorded, head)
            return
        self._git(
            "--literal-pathspecs",
            "restore",
            f"--source={head}",
            "--staged",
            "--worktree",
            "--pathspec-from-file=-",
            "--pathspec-file-nul",
            stdin="\0".join(paths).encode(),
        )

    def _namespaces(self, head: str) -> list[str]:
        # Top-level directories that hold only directories: the namespaces of charts.
        root = self._tree_of(head)
        return sorted(
            name
            for name, (mode, sha) in (self._objects.entries(root) if root else {}).items()
            if mode == TREE
            and not name.startswith(".")
            and all(kind == TREE for kind, _ in self._objects.entries(sha).values())
        )

    def _drop_stale_index_lock(self) -> None:
        # A git killed while staging (SIGKILL gives it no chance to clean up) leaves index.lock,
        # and every later git command refuses to run. Only the writer-lock holder touches the
        # index, so a lock file that no process has open is a dead one's.
        lock = self.git_dir / "index.lock"
        if lock.exists() and not held_open(lock):
            log.warning("removing %s, left by a git that was killed", lock)
            lock.unlink(missing_ok=True)

    def _git(self, *args: str, stdin: bytes = b"") -> None:
        run(
            self.root,
            *args,
            stdin=stdin,
            hint=f"`git -C {self.root} status` shows the state of the work tree",
        )
