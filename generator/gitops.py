"""The one wrapper around git for the GitOps repository.

Every commit uses a fixed identity. Writers are serialised by an exclusive lock on a file in
`.git/`, held across write-and-commit, so concurrent renders neither trip over `index.lock` nor
commit each other's half-written trees.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import IO, Union

import git
from gitdb.base import OStream  # type: ignore[import-untyped]
from gitdb.pack import PackEntity  # type: ignore[import-untyped]

from .errors import ToolMissing, UserError

IDENTITY = {
    "GIT_AUTHOR_NAME": "Overseer",
    "GIT_AUTHOR_EMAIL": "overseer@localhost",
    "GIT_COMMITTER_NAME": "Overseer",
    "GIT_COMMITTER_EMAIL": "overseer@localhost",
}
# Index v4 and the untracked cache keep tens of thousands of files quick to stage; a split index
# makes a small change rewrite a small index, not all 120,000 entries. A busy server replaces the
# shared index often (each is megabytes at 10,000 charts), and git would keep the old ones for
# two weeks.
_TUNING = (
    ("feature", "manyFiles", "true"),
    ("core", "splitIndex", "true"),
    ("splitIndex", "sharedIndexExpire", "1.hour.ago"),
)
# Above this many paths, staging the whole tree is cheaper than naming each path.
_WHOLE_TREE_THRESHOLD = 500
_SIGNATURE = f"{IDENTITY['GIT_COMMITTER_NAME']} <{IDENTITY['GIT_COMMITTER_EMAIL']}>"
_TREE, _FILE = 0o40000, 0o100644
_NO_SHA = "0" * 40
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git knows this one without storing it
_REPACK_EVERY = 32  # commits written as packs between two geometric repacks
# Creating files is mostly kernel time here, which one process spends on one core: a large
# checkout spreads it over a worker per core (1,000 charts: 10-15 s down to 7.5-8.3 s on 2 cores
# in a slow hour). A server's round, under 100 charts, stays in one process: starting workers
# costs more than it saves when every core is busy.
_PARALLEL_CHECKOUT = ("checkout.workers=0", "checkout.thresholdForParallelism=1200")

# What a commit sets at a path: a file's bytes, a directory holding exactly these files (by path
# relative to it), or None for nothing there.
Edit = bytes | Mapping[str, bytes] | None
_Entries = dict[str, tuple[int, bytes]]  # name -> (mode, binary sha)
_Plan = dict[str, Union["_Plan", tuple[int, bytes], None]]  # nested edits: (mode, sha) or None


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


class _Objects:
    """Builds trees and commits in-process and writes each batch of new objects as one pack.

    Replacing a few directories of a large tree only re-writes the trees on their paths; every
    other subtree is kept by its sha. Trees are immutable, so the cache of those seen never goes
    stale. One pack per commit instead of a loose file per object: creating files is what costs.
    """

    _CACHE_LIMIT = 20_000

    def __init__(self, repo: git.Repo) -> None:
        self.odb = repo.odb  # reads through one long-lived `git cat-file --batch`
        self.pack_dir = os.path.join(repo.git_dir, "objects", "pack")
        self._cache: dict[bytes, _Entries] = {}
        self._stored: set[bytes] = set()
        self._pending: dict[bytes, tuple[bytes, bytes]] = {}

    def commit(self, tree: bytes, parent: str | None, message: str) -> str:
        """Queue a commit object with Overseer's identity; return its sha."""
        stamp = f"{_SIGNATURE} {int(time.time())} +0000"
        head = f"tree {tree.hex()}\n" + (f"parent {parent}\n" if parent else "")
        text = f"{head}author {stamp}\ncommitter {stamp}\n\n{message}"
        return self._store(b"commit", text.encode()).hex()

    def flush(self) -> None:
        """Write the queued objects as one pack.

        PackEntity writes the pack before its index, and git only sees a pack through its index.
        """
        if not self._pending:
            return
        objects = [
            OStream(sha, kind, len(data), BytesIO(data))
            for sha, (kind, data) in self._pending.items()
        ]
        os.makedirs(self.pack_dir, exist_ok=True)
        PackEntity.create(objects, self.pack_dir, object_count=len(objects))
        if len(self._stored) >= 10 * self._CACHE_LIMIT:
            self._stored.clear()  # a bound on memory; forgetting only costs a rewrite
        self._stored.update(self._pending)
        self._pending.clear()

    def discard(self) -> None:
        """Drop queued objects (the commit they were for failed)."""
        self._pending.clear()

    def entries(self, binsha: bytes) -> _Entries:
        """The entries of a tree (name -> (mode, sha))."""
        found = self._cache.get(binsha)
        if found is None:
            found = _decode_tree(self.odb.stream(binsha).read())
            self._remember(binsha, found)
        return found

    def lookup(self, root: bytes | None, path: str) -> tuple[int, bytes] | None:
        """The (mode, sha) at `path` below the tree `root`, or None."""
        node: tuple[int, bytes] | None = (_TREE, root) if root is not None else None
        for part in path.split("/"):
            if node is None or node[0] != _TREE:
                return None
            node = self.entries(node[1]).get(part)
        return node

    def edit(self, root: bytes | None, edits: Mapping[str, Edit]) -> bytes:
        """The sha of `root` with `edits` applied (path -> new content)."""
        plan: _Plan = {}
        for path, content in edits.items():
            if content is None:
                leaf = None
            elif isinstance(content, bytes):
                leaf = (_FILE, self._store(b"blob", content))
            else:
                leaf = (_TREE, self._directory(content))
            _place(plan, path, leaf)
        return self._apply(root, plan) or self._store_tree({})

    def _directory(self, files: Mapping[str, bytes]) -> bytes:
        plan: _Plan = {}
        for rel, data in files.items():
            _place(plan, rel, (_FILE, self._store(b"blob", data)))
        return self._apply(None, plan) or self._store_tree({})

    def _apply(self, tree: bytes | None, plan: _Plan) -> bytes | None:
        entries = dict(self.entries(tree)) if tree is not None else {}
        for name, step in plan.items():
            if isinstance(step, dict):
                current = entries.get(name)
                below = current[1] if current is not None and current[0] == _TREE else None
                sha = self._apply(below, step)
                step = None if sha is None else (_TREE, sha)
            if step is None:
                entries.pop(name, None)
            else:
                entries[name] = step
        return self._store_tree(entries) if entries else None  # git stores no empty subtree

    def _store_tree(self, entries: _Entries) -> bytes:
        binsha = self._store(b"tree", _encode_tree(entries))
        self._remember(binsha, entries)
        return binsha

    def _store(self, kind: bytes, data: bytes) -> bytes:
        header = b"%s %d\0" % (kind, len(data))
        binsha = hashlib.sha1(header + data, usedforsecurity=False).digest()
        if binsha not in self._stored:
            self._pending[binsha] = (kind, data)
        return binsha

    def _remember(self, binsha: bytes, entries: _Entries) -> None:
        if len(self._cache) >= self._CACHE_LIMIT:
            self._cache.clear()
        self._cache[binsha] = entries


# The tree format by hand: GitPython's codec checks every name against path rules, about 20 µs an
# entry, which is 0.4 s per commit for a namespace of 10,000 charts. These names are our own.
def _encode_tree(entries: _Entries) -> bytes:
    # Git orders a tree's entries by name, comparing a subtree's name as if it ended in "/".
    ordered = sorted(entries.items(), key=lambda e: e[0] + "/" if e[1][0] == _TREE else e[0])
    return b"".join(
        b"%o %s\0%s" % (mode, name.encode("utf-8", "surrogateescape"), sha)
        for name, (mode, sha) in ordered
    )


def _decode_tree(data: bytes) -> _Entries:
    entries: _Entries = {}
    at = 0
    while at < len(data):
        space = data.index(b" ", at)
        nul = data.index(b"\0", space)
        name = data[space + 1 : nul].decode("utf-8", "surrogateescape")
        entries[name] = (int(data[at:space], 8), data[nul + 1 : nul + 21])
        at = nul + 21
    return entries


def _run_git(
    root: Path, command: str, *args: str, paths: Sequence[str], config: Sequence[str] = ()
) -> None:
    """Run a git command on many literal paths, handed over on stdin rather than as arguments."""
    done = subprocess.run(
        [
            "git",
            "--literal-pathspecs",
            *(arg for setting in config for arg in ("-c", setting)),
            "-C",
            str(root),
            command,
            *args,
            "--pathspec-from-file=-",
            "--pathspec-file-nul",
        ],
        input="\0".join(paths).encode(),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise UserError(
            f"git {command} failed: {done.stderr.decode(errors='replace').strip()}; "
            f"`git -C {root} status` shows the state of the work tree"
        )


def _held_open(path: Path) -> bool:
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


class _Journal:
    """The work tree paths written since the last commit that covers them, one per line.

    Appended (and flushed to the kernel) before each write, so it survives the writing process
    being killed; a line cut short by a kill names no path and is ignored. Paths are chart paths
    and Overseer's own files, which never hold a newline.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._lock = threading.Lock()  # the chart writer's threads record concurrently

    def add(self, paths: Sequence[str]) -> None:
        if not paths:
            return
        with self._lock:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            self._file.write("".join(f"{p}\n" for p in paths))
            self._file.flush()

    def read(self) -> list[str] | None:
        """The recorded paths in first-written order, or None when there is no journal."""
        with self._lock:
            try:
                text = self.path.read_text(encoding="utf-8", errors="surrogateescape")
            except FileNotFoundError:
                return None
        complete = text[: text.rfind("\n") + 1]
        return list(dict.fromkeys(line for line in complete.splitlines() if line))

    def clear(self) -> None:
        with self._lock:
            self._close()
            self.path.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _place(plan: _Plan, path: str, leaf: tuple[int, bytes] | None) -> None:
    *parents, name = path.split("/")
    node = plan
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"{path}: a parent directory is also edited as a file")
        node = child
    node[name] = leaf


class _RefUpdater:
    """One long-lived `git update-ref --stdin` for compare-and-swap ref updates.

    Each update is its own transaction, with reflog entries, and no process starts per commit.
    """

    def __init__(self, root: Path) -> None:
        self._proc = subprocess.Popen(
            ["git", "-C", str(root), "update-ref", "-m", "overseer: render", "--stdin"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **IDENTITY},
        )

    def update(self, ref: str, new: str, old: str) -> None:
        """Move `ref` from `old` to `new`, or raise (and end the process) if it is not at `old`."""
        assert self._proc.stdin is not None and self._proc.stdout is not None  # noqa: S101
        try:
            self._proc.stdin.write(f"start\nupdate {ref} {new} {old}\nprepare\ncommit\n".encode())
            self._proc.stdin.flush()
            answers = [self._proc.stdout.readline().strip() for _ in range(3)]
        except OSError:
            answers = []
        # On a failed update git prints why on stderr and exits.
        if answers != [b"start: ok", b"prepare: ok", b"commit: ok"]:
            self._proc.kill()
            stderr = self._proc.stderr.read() if self._proc.stderr else b""
            self._proc.wait()
            raise UserError(
                f"git update-ref failed: {stderr.decode(errors='replace').strip() or 'no answer'}; "
                "if something else committed to this repository meanwhile, render again"
            )

    def close(self) -> None:
        """End the process."""
        if self._proc.poll() is None:
            assert self._proc.stdin is not None  # noqa: S101
            self._proc.stdin.close()
            self._proc.wait()


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
        self._objects = _Objects(self.repo)
        self._refs: _RefUpdater | None = None
        self._packs_written = 0
        self._deferred: tuple[str, list[str]] | None = None  # (commit, paths) to check out
        self._journal = _Journal(Path(self.repo.git_dir) / "overseer-journal")
        self._repack: subprocess.Popen[bytes] | None = None

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
                try:
                    self._recover()
                    yield
                finally:
                    try:
                        self.finish_checkout()  # the next holder finds the work tree at HEAD
                    finally:
                        # Whoever takes the lock next may recover and delete the journal; a
                        # handle kept open would then append to a file nobody reads.
                        self._journal.close()
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

    def committed(self, paths: Iterable[str]) -> set[str]:
        """Those of `paths` that HEAD's tree holds."""
        if self.head() is None:
            return set()
        root = self.repo.head.commit.tree.binsha
        return {p for p in paths if self._objects.lookup(root, p) is not None}

    def record(self, path: str) -> None:
        """Note, before writing it, a work tree path that may stop agreeing with HEAD.

        Should the process die before the commit that covers it, the next writer to take the lock
        puts every noted path back as HEAD has it (`_recover`): otherwise a chart written but never
        committed would look rendered to every later render, and stay out of Git for good.
        """
        self._journal.add([path])

    def commit(self, paths: Sequence[str], message: str) -> str | None:
        """Stage `paths` (additions, changes, removals) and commit; None when nothing changed.

        The work tree then agrees with HEAD, so the journal of paths written is cleared.
        """
        commit = self._commit_index(paths, message)
        self._journal.clear()
        return commit

    def _commit_index(self, paths: Sequence[str], message: str) -> str | None:
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

    def commit_edits(
        self, edits: Mapping[str, Edit], message: str, *, defer_checkout: bool = False
    ) -> str | None:
        """Commit `edits` (path -> file bytes, directory contents, or None) made to HEAD's tree.

        For a few charts whose bytes the caller holds: blobs, trees and the commit are built
        in-process and written as one pack, and only the trees on the edited paths change. Git
        then moves the index and the work tree from the old tree to the new one, writing exactly
        the files that differ (overwriting hand edits there, as a render does), and the branch
        moves, compare-and-swap. None when the tree does not change.

        With `defer_checkout` the branch moves first and the work tree follows in
        `finish_checkout`, which the caller runs after answering whoever waits for the commit;
        leaving the writer lock runs it at the latest, so no other writer sees it pending.
        """
        self.finish_checkout()
        parent = self.head()
        old_root = self.repo.head.commit.tree.binsha if parent is not None else None
        try:
            root = self._objects.edit(old_root, edits)
            if root == old_root or (old_root is None and not self._objects.entries(root)):
                self._objects.discard()
                self._journal.clear()  # what the caller removed on disk, HEAD lacks too
                return None
            commit = self._objects.commit(root, parent, message)
            self._objects.flush()
        except BaseException:
            self._objects.discard()
            raise
        # The paths git is to bring to the new commit: those there before or after (a pathspec
        # that matches nothing is an error to `git restore`).
        paths = [
            p
            for p in edits
            if self._objects.lookup(root, p) is not None
            or self._objects.lookup(old_root, p) is not None
        ]
        self._journal.add(paths)  # before the branch or the work tree moves
        if defer_checkout:
            self._move_head(commit, parent)
            self._deferred = (commit, paths)
        else:
            self._checkout(commit, paths)
            try:
                self._move_head(commit, parent)
            except BaseException:
                self._checkout(parent or _EMPTY_TREE, paths)  # back to what HEAD still says
                self._journal.clear()
                raise
            self._journal.clear()
        self._maintain()
        return commit

    def finish_checkout(self) -> None:
        """Bring the index and the work tree to HEAD after `commit_edits(defer_checkout=True)`."""
        if self._deferred is None:
            return
        try:
            self._checkout(*self._deferred)
        except UserError:
            # Half-written: a one-tree reset rewrites whatever differs from HEAD. Should that
            # fail too, the checkout stays pending and the next writer retries it first.
            self._git.read_tree("--reset", "-u", "HEAD")
        self._deferred = None
        self._journal.clear()

    def _recover(self) -> None:
        # The journal's paths were written (or were about to be) for a commit that may never have
        # landed: bring each back to HEAD, index and work tree, dropping what HEAD lacks.
        paths = self._journal.read()
        if paths is None:
            return
        self._drop_stale_index_lock()
        root = self.repo.head.commit.tree.binsha if self.head() is not None else None
        present = [p for p in paths if self._objects.lookup(root, p) is not None]
        absent = [p for p in paths if self._objects.lookup(root, p) is None]
        if absent:
            _run_git(self.root, "rm", "-r", "--cached", "--ignore-unmatch", "-q", paths=absent)
            for path in absent:
                target = self.root / path
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # a namespace directory left empty
                    target.parent.rmdir()
        if present:
            self._checkout("HEAD", present)
            # Files the killed render added inside a chart that HEAD has are untracked there.
            for start in range(0, len(present), 1000):
                self._git.clean("-fdq", "--", *present[start : start + 1000])
        self._journal.clear()

    def _drop_stale_index_lock(self) -> None:
        # A git killed while staging (SIGKILL gives it no chance to clean up) leaves index.lock,
        # and every later git command refuses to run. Only a writer may touch the index, and this
        # one holds the writer lock, so a lock file that no process has open is a dead one's.
        lock = Path(self.repo.git_dir) / "index.lock"
        if lock.exists() and not _held_open(lock):
            lock.unlink(missing_ok=True)

    def _move_head(self, commit: str, parent: str | None) -> None:
        if self._refs is None:
            self._refs = _RefUpdater(self.root)
        try:
            self._refs.update("HEAD", commit, parent or _NO_SHA)
        except BaseException:
            self._refs.close()
            self._refs = None
            raise

    def _checkout(self, source: str, paths: Sequence[str]) -> None:
        # `restore` of just the edited paths: git writes the files (not one syscall per GIL turn
        # here) and their index entries with stat data, removes what the source lacks, and walks
        # no other part of the tree (a two-tree `read-tree -u` took 0.45 s at 10,000 charts).
        if paths:
            _run_git(
                self.root,
                "restore",
                f"--source={source}",
                "--staged",
                "--worktree",
                paths=paths,
                config=_PARALLEL_CHECKOUT,
            )

    def close(self) -> None:
        """End the helper processes (the ref updater, a repack still running)."""
        self._journal.close()
        if self._refs is not None:
            self._refs.close()
            self._refs = None
        if self._repack is not None:
            self._repack.wait()
            self._repack = None
        self.repo.close()

    def _maintain(self) -> None:
        # Each commit_edits adds a small pack, and lookups slow down as packs pile up. A geometric
        # repack folds the small ones together without rewriting the big one; it runs beside the
        # next commits (git allows that) and is only reaped here.
        self._packs_written += 1
        if self._repack is not None and self._repack.poll() is not None:
            self._repack = None
        if self._repack is None and self._packs_written % _REPACK_EVERY == 0:
            self._repack = subprocess.Popen(
                ["git", "-C", str(self.root), "repack", "-d", "-q", "--geometric=2"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

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
        Until a push succeeds, `push_pending` says so, also to later processes.
        """
        pending = Path(self.repo.git_dir) / "overseer-push-pending"
        pending.touch()
        try:
            ref = self._publish(remote, branch_per_change=branch_per_change, attempts=attempts)
        except git.GitCommandError as exc:
            raise UserError(f"git push to {remote} failed: {_last_line(exc)}") from None
        pending.unlink(missing_ok=True)
        return ref

    def push_pending(self) -> bool:
        """Whether a push failed (or was cut short) since the last one that succeeded."""
        return (Path(self.repo.git_dir) / "overseer-push-pending").exists()

    def _publish(self, remote: str, *, branch_per_change: bool, attempts: int) -> str | None:
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
        """Put `paths`, and every path recorded since the last commit, back as HEAD has them.

        Used when a write or a commit fails half-way.
        """
        self._journal.add(paths)
        self._recover()

    def _stage(self, paths: Sequence[str]) -> None:
        if len(paths) > _WHOLE_TREE_THRESHOLD:
            self._git.add("-A", "--", ".")
        else:
            self._git.add("-A", "--", *paths)
