"""The GitOps repository: where it lives, its writer lock, and the parts a writer uses.

Writers are serialised by an exclusive lock on a file in the git directory, held until the
holder's database transaction commits, so concurrent renders never trip over each other and a
render never sees a chart whose row it cannot see yet.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import git

from ..errors import ToolMissing, UserError
from .changeset import Changeset, crash_point
from .journal import Journal
from .objects import ObjectStore
from .refs import RefUpdater
from .repack import Repack
from .snapshot import Snapshot
from .worktree import WorkTree

log = logging.getLogger("overseer.git")
# Index v4 and the untracked cache keep tens of thousands of files quick to check out; a split
# index makes a small change rewrite a small index, not all 120,000 entries. Replaced shared
# indexes (megabytes each at 10,000 charts) need not be kept two weeks.
_TUNING = (
    ("feature", "manyFiles", "true"),
    ("core", "splitIndex", "true"),
    ("splitIndex", "sharedIndexExpire", "1.hour.ago"),
)
_REPACK_EVERY = 32  # commits written as packs between two geometric repacks
CHECKOUT, LAZY = "checkout", "lazy"


class GitOpsRepo:
    """A Git repository holding rendered charts.

    `worktree` is `checkout` (the files follow every commit before the lock is let go: the CLI's
    default, so `helm install rendered/<ns>/<release>` works by hand) or `lazy` (the files follow
    only when a reader asks: the server, whose requests need objects and a ref, nothing more).
    """

    def __init__(
        self, root: Path, *, worktree: str = CHECKOUT, spill_bytes: int | None = None
    ) -> None:
        if shutil.which("git") is None:
            raise ToolMissing("git", "install git (Debian: apt-get install git)")
        if worktree not in (CHECKOUT, LAZY):
            raise UserError(f"OVERSEER_WORKTREE={worktree!r}: use {CHECKOUT} or {LAZY}")
        self.root = root
        self.mode = worktree
        created = not (root / ".git").exists()
        self.repo = self._open_or_init(root)
        self.git_dir = Path(self.repo.git_dir)
        self.objects = ObjectStore(self.repo)
        if spill_bytes is not None:  # past this many bytes of new blobs, write them out
            self.objects.spill_bytes = spill_bytes
        self.refs = RefUpdater(str(self.git_dir), self.objects.holds)
        self.journal = Journal(self.git_dir / "overseer-journal")
        self.worktree = WorkTree(root, self.git_dir, self.objects, self.tree_of)
        if created or worktree == LAZY:  # never a clone a reader merely opened
            self.worktree.adopt(self.head())
        # Paths of changesets whose database commit was never confirmed (see `journal`).
        self.in_doubt: set[str] = set()
        # Set by a render that reconciled `in_doubt` with the database: only then may the lock's
        # holder empty the journal when it lets go (a gc that found nothing to do must not).
        self.reconciled = False
        self.committed_since_lock = False
        # flock excludes other processes; the thread lock excludes other threads of this one.
        self._thread_lock = threading.Lock()
        self._holder: int | None = None
        self._lock_fd: int | None = None
        self._commits = 0
        self._repack: Repack | None = None
        self._starting: threading.Thread | None = None  # choosing what the next repack folds

    @staticmethod
    def _open_or_init(root: Path) -> git.Repo:
        root.mkdir(parents=True, exist_ok=True)
        if not (root / ".git").exists():
            # Initialise beside the target and move .git into place: rename is atomic, so of two
            # processes initialising at once one wins and the other simply opens its repository.
            staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.init-"))
            try:
                fresh = git.Repo.init(staging, initial_branch="main")
                # Tuned before it becomes visible, so no two processes ever edit its config.
                with fresh.config_writer() as config:
                    for section, option, value in _TUNING:
                        config.set_value(section, option, value)
                os.rename(staging / ".git", root / ".git")
            except OSError:
                if not (root / ".git").is_dir():
                    raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        try:
            return git.Repo(root)
        except git.InvalidGitRepositoryError:
            raise UserError(
                f"{root}/.git exists but is not a Git repository; move it away"
            ) from None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the writer lock of this repository (re-entrant within one thread).

        Let go normally after a render reconciled the paths in doubt (`reconciled`), it empties
        the journal: the holder's database work is done by then.
        """
        if self._holder == threading.get_ident():
            yield
            return
        with self._thread_lock:
            fd = self._flock()
            try:
                self._holder = threading.get_ident()
                self._recover()
                yield
                self._release()
            finally:
                self._holder = None
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _flock(self) -> int:
        # The lock file stays open between holds (a round would otherwise open it each time).
        # Locked, it must still be the file at its path: one removed or replaced meanwhile would
        # leave this process and another each holding a lock of their own.
        path = self.git_dir / "overseer.lock"
        while True:
            if self._lock_fd is None:
                self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                if os.stat(path).st_ino == os.fstat(self._lock_fd).st_ino:
                    return self._lock_fd
            except FileNotFoundError:
                pass
            os.close(self._lock_fd)  # closing lets go of its lock too
            self._lock_fd = None

    def _recover(self) -> None:
        self.committed_since_lock = False
        self.reconciled = False
        if self.mode == CHECKOUT and not WorkTree.managed(self.root):
            # A clone Overseer did not make, written to by a CLI command: its files are taken to
            # be at HEAD, so the commit that follows restores only the paths it changes and
            # leaves every other file (a user's uncommitted edits) as it is.
            self.worktree.adopt(self.head())
        entries = self.journal.entries()
        self.in_doubt = {
            str(p) for e in entries if isinstance(e.get("paths"), list) for p in e["paths"]
        }
        if entries:
            log.warning(
                "a writer died after committing %d change(s) to Git, before its database said "
                "so; the next render reconciles %d path(s)",
                len(entries),
                len(self.in_doubt),
            )

    def _release(self) -> None:
        crash_point("database-committed")
        if self.committed_since_lock:
            self._maintain()
        if self.reconciled:
            self.journal.clear()
            self.in_doubt = set()
        if self.mode == CHECKOUT:  # also after a writer killed before its files followed
            try:
                self.worktree.sync(self.head())
            except UserError as exc:  # the commit stands; the next reader retries the files
                log.warning("%s", exc.message)

    def head(self, ref: str = "HEAD") -> str | None:
        """The commit sha `ref` names, or None (an empty repository, an unknown ref)."""
        return self.objects.resolve(ref)

    def tree_of(self, commit: str | None) -> bytes | None:
        """The root tree of a commit (read through the object store, which threads share)."""
        if commit is None:
            return None
        header = self.objects.read(bytes.fromhex(commit))[:46]
        if not header.startswith(b"tree "):
            raise UserError(f"{commit} is not a commit of {self.root}")
        return bytes.fromhex(header[5:45].decode())

    def snapshot(self, commit: str | None = None, root: bytes | None = None) -> Snapshot:
        """The charts of `commit` (default HEAD), read from objects."""
        if commit is None:
            commit = self.head()
        return Snapshot(self.objects, commit, root if root is not None else self.tree_of(commit))

    @contextmanager
    def changes(
        self, ref: str = "HEAD", base: str | None = None, *, expect: str | bool | None = True
    ) -> Iterator[Changeset]:
        """A changeset on `ref` from `base` (default: where `ref` is), under the writer lock.

        The ref moves only if it still points where `expect` says (True: at the base; None: the
        ref must not exist yet).
        """
        with self.lock():
            start = base if base is not None else self.head(ref)
            tx = Changeset(self, ref, start, start if expect is True else expect or None)
            try:
                yield tx
            finally:
                if tx.commit_sha is None:
                    self.objects.discard()

    def sync_worktree(self, *, hard: bool = False) -> None:
        """Bring the files to HEAD now (a reader wants them)."""
        with self.lock():
            self.worktree.sync(self.head(), hard=hard)

    def _maintain(self) -> None:
        # Each commit adds a small pack, and lookups slow down as packs pile up. A geometric
        # repack folds the small ones together without rewriting the big one; it runs beside the
        # next commits and is only reaped here.
        self._commits += 1
        if self._starting is not None:
            if self._starting.is_alive():
                return
            self._starting = None
        if self._repack is not None and self._repack.done():
            self._end_repack()
        if self._repack is None and self._commits % _REPACK_EVERY == 0:
            # Geometric repacks find the deltas between a namespace tree's versions among the
            # packs they fold (other objects stay as written, see objects). No full
            # repack: it walks every commit's trees, so its cost grows with the history (1.7 s
            # of CPU after 2,048 commits, 26,000 charts), for about 5 KB less disk a commit
            # (docs/git-layer.md, `bench/repack_bench.py`).
            # Choosing the packs reads their indexes (3 ms for 40 packs): not on the way of
            # the round that happens to be the 32nd.
            self._starting = threading.Thread(
                target=self._start_repack, name="repack-start", daemon=True
            )
            self._starting.start()

    def _start_repack(self) -> None:
        try:
            self._repack = Repack.start(self.git_dir)
        except Exception as exc:  # a committed round must not fail for it
            log.warning("could not start a repack: %s", exc)

    def _end_repack(self) -> None:
        assert self._repack is not None  # noqa: S101 - only with one running
        try:
            self._repack.finish()
            self.objects.forget_packs()  # the packs it folded together are gone
        except Exception as exc:  # a committed round must not fail for it
            log.warning("could not finish a repack: %s", exc)
        self._repack = None

    def close(self) -> None:
        """Let go of the lock file, the journal and libgit2, and wait for a running repack."""
        self.journal.close()
        self.refs.close()
        with self._thread_lock:  # not while a holder is inside
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self._repack is not None:
            self._end_repack()
        self.repo.close()
