"""The one wrapper around git for the GitOps repository.

Every commit uses a fixed identity. Writers are serialised by an exclusive lock on a file in
`.git/`, held across write-and-commit, so concurrent renders neither trip over `index.lock` nor
commit each other's half-written trees.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import git

from .errors import ToolMissing, UserError

IDENTITY = {
    "GIT_AUTHOR_NAME": "Overseer",
    "GIT_AUTHOR_EMAIL": "overseer@localhost",
    "GIT_COMMITTER_NAME": "Overseer",
    "GIT_COMMITTER_EMAIL": "overseer@localhost",
}
# Index v4 and the untracked cache keep tens of thousands of files quick to stage; a split index
# makes a small change rewrite a small index, not all 120,000 entries.
_TUNING = (("feature", "manyFiles", "true"), ("core", "splitIndex", "true"))
# Above this many paths, staging the whole tree is cheaper than naming each path.
_WHOLE_TREE_THRESHOLD = 500


def _last_line(exc: git.GitCommandError) -> str:
    text = str(exc.stderr or exc).strip().splitlines()
    return text[-1].strip(" '") if text else "unknown error"


class BlobPreloader:
    """Feeds file contents to `git fast-import` as they are written.

    `git add` of thousands of new files spends most of its time creating one loose object file
    per unique blob. Blobs already in a pack are not written again, so streaming them into a
    single pack beforehand (on the other core, while rendering goes on) makes the add cheap.
    Blobs that end up unused are unreferenced objects, which `git gc` prunes.
    """

    def __init__(self, root: Path) -> None:
        self._seen: set[bytes] = set()
        # Files shared by every chart of a plugin are the same bytes objects: recognise them by
        # identity (holding a reference keeps the id unique) instead of hashing each copy.
        self._sent: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            ["git", "-C", str(root), "fast-import", "--quiet", "--big-file-threshold=1"],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **IDENTITY},
        )

    def add(self, data: bytes) -> None:
        """Queue one blob (duplicates are sent once). Safe to call from several threads."""
        if id(data) in self._sent:
            return
        digest = hashlib.sha1(data, usedforsecurity=False).digest()
        with self._lock:
            self._sent[id(data)] = data
            if digest in self._seen or self._proc.stdin is None:
                return
            self._seen.add(digest)
            self._proc.stdin.write(b"blob\ndata %d\n%b\n" % (len(data), data))

    def close(self) -> None:
        """Finish the pack; raise if fast-import failed."""
        assert self._proc.stdin is not None  # noqa: S101 - opened with stdin=PIPE
        self._proc.stdin.close()
        stderr = self._proc.stderr.read() if self._proc.stderr else b""
        if self._proc.wait() != 0:
            raise UserError(f"git fast-import failed: {stderr.decode(errors='replace').strip()}")


class GitOpsRepo:
    """A Git repository holding rendered charts."""

    def __init__(self, root: Path) -> None:
        if shutil.which("git") is None:
            raise ToolMissing("git", "install git (Debian: apt-get install git)")
        self.root = root
        self.repo = self._open_or_init(root)
        # flock excludes other processes; the thread lock excludes other threads of this one.
        self._thread_lock = threading.Lock()
        self._holder: int | None = None
        self._git = self.repo.git
        self._git.update_environment(**IDENTITY, GIT_TERMINAL_PROMPT="0")

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
            repo = git.Repo(root)
        except git.InvalidGitRepositoryError:
            raise UserError(
                f"{root}/.git exists but is not a Git repository; move it away"
            ) from None
        return repo

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the writer lock of this repository (re-entrant within one thread)."""
        if self._holder == threading.get_ident():
            yield
            return
        with self._thread_lock:
            lock_path = Path(self.repo.git_dir) / "overseer.lock"
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._holder = threading.get_ident()
                yield
            finally:
                self._holder = None
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def head(self) -> str | None:
        """The commit sha of HEAD, or None in an empty repository."""
        try:
            return self.repo.head.commit.hexsha
        except ValueError:
            return None

    def commit(self, paths: Sequence[str], message: str) -> str | None:
        """Stage `paths` (additions, changes, removals) and commit; None when nothing changed."""
        if not paths:
            return None
        self._stage(paths)
        # Plumbing rather than `git commit`: porcelain commit re-stats every tracked file (120,000
        # of them for 10,000 charts) although only the staged paths changed; write-tree reuses
        # the cached trees of everything untouched.
        tree = self._git.write_tree()
        parent = self.head()
        if parent is not None and tree == self.repo.head.commit.tree.hexsha:
            return None
        if parent is None and not self._git.ls_files():
            return None
        msg_file = Path(self.repo.git_dir) / "OVERSEER_COMMIT_MSG"
        msg_file.write_text(message, encoding="utf-8")
        try:
            parents = ["-p", parent] if parent else []
            commit = str(self._git.commit_tree(tree, *parents, "-F", str(msg_file)))
        finally:
            msg_file.unlink(missing_ok=True)
        # Compare-and-swap: never move a branch another writer moved meanwhile.
        self._git.update_ref("-m", "overseer: render", "HEAD", commit, parent or "0" * 40)
        return commit

    @contextmanager
    def preload(self) -> Iterator[BlobPreloader]:
        """Stream blobs into one pack while files are written (see `BlobPreloader`)."""
        loader = BlobPreloader(self.root)
        try:
            yield loader
        finally:
            loader.close()

    def publish(self, remote: str, *, branch_per_change: bool, attempts: int = 5) -> str | None:
        """Push what the remote lacks; return the ref pushed, or None when it was up to date.

        With `branch_per_change`, HEAD goes to its own branch `overseer/<sha>` for a pull request;
        main on the remote is left to the reviewers. Otherwise main is pushed, and a rejection
        (someone pushed first) is met by fetching, rebasing our commits onto theirs and retrying.
        """
        head = self.head()
        if head is None:
            return None
        if branch_per_change:
            ref = f"overseer/{head[:12]}"
            self._push(remote, f"{head}:refs/heads/{ref}")
            return ref
        for attempt in range(attempts):
            try:
                self._push(remote, "HEAD:refs/heads/main")
                return "main"
            except git.GitCommandError as exc:
                if "rejected" not in str(exc) and "fetch first" not in str(exc):
                    raise UserError(f"git push to {remote} failed: {_last_line(exc)}") from None
                if attempt == attempts - 1:
                    break
                self._git.fetch("--quiet", remote, "main")
                try:
                    self._git.rebase("--quiet", "FETCH_HEAD")
                except git.GitCommandError as conflict:
                    self._git.rebase("--abort")
                    raise UserError(
                        f"the remote's main changed the same files as this render "
                        f"({_last_line(conflict)}); merge it by hand, then render again"
                    ) from None
        raise UserError(f"git push to {remote} was rejected {attempts} times; try again")

    def _push(self, remote: str, refspec: str) -> None:
        self._git.push("--quiet", "--porcelain", remote, refspec)

    def restore(self, paths: Sequence[str]) -> None:
        """Put `paths` back as HEAD has them (used when a write fails half-way)."""
        if not paths:
            return
        if self.head() is not None:
            self._git.reset("--quiet", "HEAD", "--", *paths)
            if self._git.ls_tree("-r", "--name-only", "HEAD", "--", *paths):
                self._git.checkout("HEAD", "--", *paths)
        self._git.clean("-fdq", "--", *paths)

    def _stage(self, paths: Sequence[str]) -> None:
        if len(paths) > _WHOLE_TREE_THRESHOLD:
            self._git.add("-A", "--", ".")
        else:
            self._git.add("-A", "--", *paths)
