"""Git objects built in-process: blobs, trees and commits, made durable as packs.

Replacing a few directories of a large tree only re-writes the trees on their paths; every other
subtree is kept by its sha. Trees are immutable, so the cache of those seen never goes stale.
Queued objects become durable as one pack per commit, never a loose file per object: creating
files is what costs. A large batch writes its blobs out in chunks, each a pack of its own, so
memory holds one chunk at most.
"""

from __future__ import annotations

import bisect
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import git
import pygit2

from . import pack
from .trees import (
    FILE,
    TREE,
    Entries,
    Entry,
    Plan,
    decode_tree,
    encode_tree,
    entry_bytes,
    object_id,
    place,
    sort_key,
)

IDENTITY = {
    "GIT_AUTHOR_NAME": "Overseer",
    "GIT_AUTHOR_EMAIL": "overseer@localhost",
    "GIT_COMMITTER_NAME": "Overseer",
    "GIT_COMMITTER_EMAIL": "overseer@localhost",
}
_SIGNATURE = f"{IDENTITY['GIT_COMMITTER_NAME']} <{IDENTITY['GIT_COMMITTER_EMAIL']}>"


class _Parts(list[bytes | memoryview]):
    """A file's content as the parts it was written in, joined once when it goes to disk."""

    def write(self, part: bytes | memoryview) -> None:
        self.append(part)


def _create(path: Path, data: bytes) -> None:
    """Write a new read-only file (as git leaves its packs), replacing one a crash left."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, 0o444)
    except FileExistsError:  # rare: no unlink on the way of every round
        path.unlink()
        fd = os.open(path, flags, 0o444)
    with open(fd, "wb") as out:
        out.write(data)  # one system call: parts would be a call each, or copied into a buffer


class ObjectStore:
    """Reads trees and blobs, and queues new objects until `flush` makes them durable.

    Reads are safe from several threads; writes belong to the writer-lock holder.
    """

    _CACHE_LIMIT = 20_000
    # A namespace of 10,000 charts is a tree of 10,000 entries, and every commit that touches
    # one chart writes it anew. Trees this large keep their sorted, encoded entries, so the next
    # version is a few list splices and a join (about 0.5 ms) instead of a sort and an encode of
    # every entry (8 ms); and their packs are stored rather than compressed (a 540 KB tree takes
    # 9 ms at zlib level 1, 0.3 ms as stored blocks: `pack`); the repacks keep one whole
    # version in a chain of deltas (its 20-byte shas would barely compress anyway).
    # Only the last versions of such trees stay decoded (the oldest go first): kept among the
    # small trees, every version of a server's namespace stayed until the cache filled (490 MB
    # in a writer after 5,000 requests at 10,000 charts), and the collector walked them all.
    _SPLICE_MIN = 512
    _SPLICED_KEPT = 8
    # In all, whatever the trees: 25 namespaces of 10,000 charts read in turn (a snapshot's
    # chart listing) still find theirs, or 25 versions of one. 10 MB in a writer, whose
    # versions share their entries; up to 55 MB where each was decoded on its own.
    _LARGE_ENTRIES = 250_000
    _COMMITS_KEPT = 16
    # Past this many bytes of new blobs, a changeset writes them out as a pack, not hold them.
    SPILL_BYTES = 32 << 20
    _PACK_IN_MEMORY = 4 << 20  # a pack this small (and below a spill) is built in memory

    def __init__(self, repo: git.Repo) -> None:
        # Reads go through libgit2 in-process: 1.7 times quicker than a `git cat-file --batch`
        # round trip per object, and steady (docs/git-layer.md). libgit2 looks for packs again
        # when an object is missing, so packs written since are found.
        self._repository = pygit2.Repository(str(repo.git_dir))
        self._odb = self._repository.odb
        self._git_dir = str(repo.git_dir)
        self.pack_dir = Path(repo.git_dir) / "objects" / "pack"
        self.spill_bytes = self.SPILL_BYTES
        self._read_lock = threading.Lock()
        self._cache: dict[bytes, Entries] = {}
        self._large: dict[bytes, Entries] = {}  # the last versions of large trees, oldest first
        self._large_entries = 0
        self._large_lock = threading.Lock()
        self._stored: set[bytes] = set()  # known to be durable in the repository
        self._pending: dict[bytes, tuple[bytes, bytes]] = {}  # sha -> (kind, data)
        self._pending_bytes = 0
        # Blobs this changeset spilled: durable, but referenced by nothing until its commit lands.
        self._spilled: set[bytes] = set()
        self._by_id: dict[int, tuple[bytes, bytes]] = {}  # id(data) -> (data, sha)
        self._spliced: dict[bytes, tuple[list[str], list[bytes]]] = {}  # sha -> (keys, parts)
        # The last commits written here, which the next round reads first (its base's tree).
        # libgit2 looks for an object it does not know by scanning the pack directory again,
        # and then every pack's index: 1 to 2 ms with the 40 or so packs of a busy server (and
        # the deleted ones it still listed, see `forget_packs`).
        self._commits: dict[bytes, bytes] = {}
        self._pack_dir_made = False
        # The packs there were when this process last looked, and when that was (`_prune`).
        self._packs_seen: set[str] = set()
        self._packs_checked = 0.0

    # Reading.
    def read(self, binsha: bytes) -> bytes:
        """The content of an object."""
        written = self._commits.get(binsha)
        if written is not None:
            return written
        self._prune()
        with self._read_lock:  # one libgit2 object database, shared by the reading threads
            try:
                _, data = self._odb.read(pygit2.Oid(raw=binsha))
            except KeyError:
                raise FileNotFoundError(f"git object {binsha.hex()} is missing") from None
        return data

    def descends(self, commit: str, ancestor: str) -> bool:
        """Whether `commit` is `ancestor` or comes after it (libgit2, no git process)."""
        if commit == ancestor:
            return True
        with self._read_lock:
            try:
                return bool(
                    self._repository.descendant_of(pygit2.Oid(hex=commit), pygit2.Oid(hex=ancestor))
                )
            except (KeyError, ValueError, pygit2.GitError):  # one of them is not here
                return False

    def resolve(self, ref: str) -> str | None:
        """The commit `ref` names (HEAD, a branch, a sha), or None: an unborn or unknown ref.

        Refs are read from disk each time, so a ref another process moved is seen.
        """
        with self._read_lock:
            if ref == "HEAD" or ref.startswith("refs/heads/"):
                # Only the ref files are read when the ref names a commit written here: it need
                # not be looked for in the packs (see `_commits`). Anything else is peeled.
                try:
                    found_ref = self._repository.references.get(ref)
                    if found_ref is None:
                        return None
                    target = found_ref.resolve().target
                except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
                    return None
                if isinstance(target, pygit2.Oid) and self._written(target.raw):
                    return str(target)
            try:
                found = self._repository.revparse_single(ref).peel(pygit2.Commit)
            except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
                return None
        return str(found.id)

    def entries(self, binsha: bytes) -> Entries:
        """The entries of a tree (name -> (mode, sha))."""
        found = self._cache.get(binsha)
        if found is None:
            found = self._large.get(binsha)
        if found is None:
            pending = self._pending.get(binsha)
            found = decode_tree(pending[1] if pending else self.read(binsha))
            self._remember(binsha, found)
        return found

    def lookup(self, root: bytes | None, path: str) -> Entry | None:
        """The (mode, sha) at `path` below the tree `root`, or None."""
        node: Entry | None = (TREE, root) if root is not None else None
        for part in path.split("/"):
            if node is None or node[0] != TREE:
                return None
            node = self.entries(node[1]).get(part)
        return node

    def walk(self, tree: bytes, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """(path, blob sha) of every file below a tree, in git's order."""
        for name, (mode, sha) in self.entries(tree).items():
            if mode == TREE:
                yield from self.walk(sha, f"{prefix}{name}/")
            else:
                yield f"{prefix}{name}", sha

    def diff(
        self, old: bytes | None, new: bytes | None, *, depth: int = 2, prefix: str = ""
    ) -> dict[str, Entry | None]:
        """Paths whose entry differs between two trees, down to `depth` levels.

        Two levels are the charts (`<namespace>/<release>`) and files beside them: a chart that
        changed is one path, whatever changed inside it.
        """
        before: Entries = self.entries(old) if old is not None else {}
        after: Entries = self.entries(new) if new is not None else {}
        found: dict[str, Entry | None] = {}
        for name in before.keys() | after.keys():
            a, b = before.get(name), after.get(name)
            if a == b:
                continue
            path = f"{prefix}{name}"
            if depth > 1 and a is not None and b is not None and a[0] == b[0] == TREE:
                found.update(self.diff(a[1], b[1], depth=depth - 1, prefix=f"{path}/"))
            else:
                found[path] = b
        return found

    # Writing.
    def blob(self, data: bytes) -> bytes:
        """Queue a blob; return its sha."""
        # Files shared by every chart of a plugin are the same bytes objects: recognise them by
        # identity (holding a reference keeps the id unique) instead of hashing each copy.
        known = self._by_id.get(id(data))
        if known is not None and known[0] is data:
            return known[1]
        binsha = object_id(b"blob", data)
        if len(self._by_id) >= self._CACHE_LIMIT:
            self._by_id.clear()
        self._by_id[id(data)] = (data, binsha)
        if binsha in self._stored or binsha in self._pending:
            return binsha
        self._pending[binsha] = (b"blob", data)
        self._pending_bytes += len(data)
        if self._pending_bytes > self.spill_bytes:
            self._spill()
        return binsha

    def tree(self, entries: Entries) -> bytes:
        """Queue a tree; return its sha."""
        binsha = self._queue(b"tree", encode_tree(entries))
        self._remember(binsha, entries)
        return binsha

    def directory(self, files: Mapping[str, bytes]) -> bytes:
        """Queue the blobs and trees of a directory holding `files` (relative paths)."""
        plan: Plan = {}
        for rel, data in files.items():
            place(plan, rel, (FILE, self.blob(data)))
        return self.edit(None, plan) or self.tree({})

    def edit(self, root: bytes | None, plan: Plan) -> bytes | None:
        """The sha of `root` with `plan` applied; None when nothing is left."""
        base = self.entries(root) if root is not None else {}
        entries = dict(base)
        for name, step in plan.items():
            if isinstance(step, dict):
                current = entries.get(name)
                below = current[1] if current is not None and current[0] == TREE else None
                sha = self.edit(below, step)
                step = None if sha is None else (TREE, sha)
            if step is None:
                entries.pop(name, None)
            else:
                entries[name] = step
        if not entries:
            return None  # git stores no empty subtree
        if root is not None and len(base) >= self._SPLICE_MIN:
            return self._splice(root, base, entries, plan.keys())
        return self.tree(entries)

    def _splice(self, root: bytes, base: Entries, entries: Entries, names: Iterable[str]) -> bytes:
        # The base's lists become the new version's: the next round edits this one. A round
        # from an older base (after a discarded commit) sorts and encodes once more.
        known = self._spliced.pop(root, None)
        if known is None:
            keys = sorted(sort_key(*item) for item in base.items())
            parts = [entry_bytes(k.removesuffix("/"), base[k.removesuffix("/")]) for k in keys]
        else:
            keys, parts = known
        for name in names:
            old, new = base.get(name), entries.get(name)
            if old == new:
                continue
            if old is not None:
                at = bisect.bisect_left(keys, sort_key(name, old))
                del keys[at], parts[at]
            if new is not None:
                key = sort_key(name, new)
                at = bisect.bisect_left(keys, key)
                keys.insert(at, key)
                parts.insert(at, entry_bytes(name, new))
        binsha = self._queue(b"tree", b"".join(parts))
        self._remember(binsha, entries)
        if len(self._spliced) >= self._SPLICED_KEPT:
            self._spliced.pop(next(iter(self._spliced)))
        self._spliced[binsha] = (keys, parts)
        return binsha

    def commit(self, tree: bytes, parent: str | None, message: str) -> str:
        """Queue a commit with Overseer's identity; return its sha."""
        stamp = f"{_SIGNATURE} {int(time.time())} +0000"
        head = f"tree {tree.hex()}\n" + (f"parent {parent}\n" if parent else "")
        text = f"{head}author {stamp}\ncommitter {stamp}\n\n{message}"
        return self._queue(b"commit", text.encode()).hex()

    def flush(self) -> None:
        """Make every queued object durable, as one pack.

        The pack is written before its index, and git only sees a pack through its index.
        """
        if self._pending:
            self._write_pack(list(self._pending))
            if len(self._stored) >= 10 * self._CACHE_LIMIT:
                self._stored.clear()  # a bound on memory; forgetting only costs a rewrite
            self._stored.update(self._pending)
            for sha, (kind, data) in self._pending.items():
                if kind == b"commit":
                    self._commits[sha] = data
            while len(self._commits) > self._COMMITS_KEPT:
                del self._commits[next(iter(self._commits))]  # the oldest
        self._drop_pending()

    def forget_packs(self) -> None:
        """Open libgit2's repository anew, once a repack has replaced packs.

        libgit2 keeps every pack it has seen in its list, also one a repack deleted, and tries
        to open each again whenever it looks for an object it does not know (30 to 60 failed
        opens per lookup after a few repacks, growing with every repack); and it keeps the
        deleted ones mapped, so their disk space is never freed while the process lives.
        """
        with self._read_lock:
            stale, self._repository = self._repository, pygit2.Repository(self._git_dir)
            self._odb = self._repository.odb
            self._packs_seen = self._pack_names()
            self._packs_checked = time.monotonic()
        stale.free()

    def _prune(self) -> None:
        # A process that only reads (the server beside its writer, the apply worker) never runs
        # a repack itself: once a second at most, it looks whether one removed packs it knew.
        now = time.monotonic()
        if now - self._packs_checked < 1.0:
            return
        self._packs_checked = now
        names = self._pack_names()
        if self._packs_seen - names:
            self.forget_packs()
        else:
            self._packs_seen |= names

    def _written(self, binsha: bytes) -> bool:
        # Known to be in the repository without asking libgit2 (see `_commits`).
        return binsha in self._commits or binsha in self._stored

    def _pack_names(self) -> set[str]:
        try:
            return {n for n in os.listdir(self.pack_dir) if n.endswith(".pack")}
        except FileNotFoundError:  # an empty repository
            return set()

    def holds(self, commit: str) -> bool:
        """Whether `commit` is in the repository (written here, or found in its packs)."""
        binsha = bytes.fromhex(commit)
        if self._written(binsha):
            return True
        with self._read_lock:
            return pygit2.Oid(raw=binsha) in self._odb

    def _write_pack(self, shas: Iterable[bytes]) -> None:
        # Under git's names, index last: git only sees a pack through its index, so it never
        # sees half of one.
        objects = [(sha, *self._pending[sha]) for sha in shas]
        if not self._pack_dir_made:
            self.pack_dir.mkdir(parents=True, exist_ok=True)
            self._pack_dir_made = True
        if sum(len(data) for _, _, data in objects) > min(self._PACK_IN_MEMORY, self.spill_bytes):
            self._stream_pack(objects)
            return
        # A round's pack is built in memory and written under its own name at once: no
        # temporary name for it and one rename fewer per round (each 0.2-0.4 ms on a busy disk).
        pack_parts, index_parts = _Parts(), _Parts()
        name = self.pack_dir / f"pack-{pack.write(objects, pack_parts, index_parts).hex()}"
        if Path(f"{name}.idx").exists():
            return  # the same objects, packed before (blobs spilled again after a discard)
        staged = self.pack_dir / f"tmp_idx_{name.name}"
        try:
            _create(Path(f"{name}.pack"), b"".join(pack_parts))  # no index yet: unseen
            _create(staged, b"".join(index_parts))
            os.rename(staged, f"{name}.idx")
        except BaseException:  # a full disk: nothing half-written stays behind
            for path in (Path(f"{name}.pack"), staged):
                path.unlink(missing_ok=True)
            raise

    def _stream_pack(self, objects: list[tuple[bytes, bytes, bytes]]) -> None:
        # A large pack (a chunk of spilled blobs) goes to disk as it is built: no second copy.
        pack_fd, pack_tmp = tempfile.mkstemp(prefix="tmp_pack_", dir=self.pack_dir)
        index_fd, index_tmp = tempfile.mkstemp(prefix="tmp_idx_", dir=self.pack_dir)
        try:
            for fd in (pack_fd, index_fd):
                os.fchmod(fd, 0o444)  # as git leaves its packs
            with open(pack_fd, "wb") as pack_file, open(index_fd, "wb") as index_file:
                sha = pack.write(objects, pack_file, index_file)
            name = self.pack_dir / f"pack-{sha.hex()}"
            os.rename(pack_tmp, f"{name}.pack")
            os.rename(index_tmp, f"{name}.idx")
        except BaseException:
            for tmp in (pack_tmp, index_tmp):
                Path(tmp).unlink(missing_ok=True)
            raise

    def discard(self) -> None:
        """Drop queued objects (the commit they were for was abandoned).

        Blobs already spilled stay in their pack, referenced by nothing, until `git gc` prunes
        them: they are no longer taken for stored, so a later commit writes them again.
        """
        self._stored -= self._spilled
        self._drop_pending()

    def _drop_pending(self) -> None:
        self._pending.clear()
        self._pending_bytes = 0
        self._spilled = set()
        self._by_id.clear()

    def _spill(self) -> None:
        # The queued blobs, written as a pack of their own now: memory holds one chunk of a large
        # changeset at most, and each chunk costs what a small changeset's pack does, so a full
        # render of 10,000 charts costs ten times one of 1,000 (docs/git-layer.md).
        blobs = [sha for sha, (kind, _) in self._pending.items() if kind == b"blob"]
        self._write_pack(blobs)
        self._spilled.update(blobs)
        self._stored.update(blobs)
        for sha in blobs:
            del self._pending[sha]
        self._pending_bytes = 0

    def present(self, root: bytes) -> None:
        """Tree `root` and all below it are in the repository already: stop queuing them.

        A changeset learns so when a directory it was given is the one its base holds (a full
        render puts every chart, most of them unchanged); writing them again would only grow
        the packs.
        """
        below = [root]
        while below:
            sha = below.pop()
            item = self._pending.pop(sha, None)
            if item is not None and item[0] == b"blob":
                self._pending_bytes -= len(item[1])
            self._stored.add(sha)
            known = self._cache.get(sha)
            if known is None:
                known = self._large.get(sha, {})
            below += [child for _, child in known.values()]

    def _queue(self, kind: bytes, data: bytes) -> bytes:
        binsha = object_id(kind, data)
        if binsha not in self._stored:
            self._pending[binsha] = (kind, data)
        return binsha

    def _remember(self, binsha: bytes, entries: Entries) -> None:
        if len(entries) >= self._SPLICE_MIN:
            # Readers remember what they decode too, from threads of their own: the eviction
            # and its count are several steps, so they take a lock (only after a decode of 512
            # entries or more, or a splice).
            with self._large_lock:
                self._large_entries -= len(self._large.pop(binsha, {}))
                while self._large and self._large_entries + len(entries) > self._LARGE_ENTRIES:
                    self._large_entries -= len(self._large.pop(next(iter(self._large))))
                self._large[binsha] = entries
                self._large_entries += len(entries)
            return
        if len(self._cache) >= self._CACHE_LIMIT:
            self._cache.clear()
        self._cache[binsha] = entries
