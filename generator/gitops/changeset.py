"""One way to change the repository: a changeset of puts and removes, committed as one commit.

    with repo.changes() as tx:
        tx.put("ns/release", files)
        tx.remove("ns/other")
        commit = tx.commit(message)

Its steps, each a place a crash can stop it: the objects are written (one pack; a large change
also writes its blobs in 32 MB packs as they come), the journal records the commit, the ref
moves (compare-and-swap), and the caller's database transaction commits. Before the ref moves
nothing is visible, and what was written is unreferenced objects, which `git gc` prunes; after
it, the journal tells the next writer which paths may lack their rows (see `journal`).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .trees import FILE, TREE, Entry, Plan, place

if TYPE_CHECKING:
    from .repository import GitOpsRepo


def crash_point(step: str) -> None:
    """Die here, for real, when a test names this step in OVERSEER_TEST_KILL_AT."""
    if os.environ.get("OVERSEER_TEST_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


class Changeset:
    """Edits to the tree of `base` on `ref`; commit() makes them one commit there.

    `put` and `remove` say whether they change anything relative to the base, so a caller can
    tell its added, changed and unchanged paths apart without reading a file.
    """

    def __init__(
        self, repo: GitOpsRepo, ref: str, base: str | None, expect: str | None = None
    ) -> None:
        self.repo = repo
        self.ref = ref
        self.base = base
        # Where the ref must be for the commit to land (compare-and-swap): usually the base, but
        # a review branch is rebuilt from main's tip, wherever it pointed before.
        self.expect = expect
        self.base_root = repo.tree_of(base)
        self.snapshot = repo.snapshot(base, self.base_root)
        self._plan: Plan = {}
        self._paths: list[str] = []
        self.commit_sha: str | None = None

    def put(self, path: str, files: Mapping[str, bytes]) -> bool:
        """Make `path` a directory holding exactly `files`; whether that changes it."""
        sha = self.repo.objects.directory(files)
        changed = self._set(path, (TREE, sha))
        if not changed:
            self.repo.objects.present(sha)  # the base holds it, and so does the repository
        return changed

    def put_file(self, path: str, data: bytes) -> bool:
        """Make `path` a file holding `data`; whether that changes it."""
        return self._set(path, (FILE, self.repo.objects.blob(data)))

    def remove(self, path: str) -> bool:
        """Remove whatever is at `path`; whether anything was there."""
        return self._set(path, None)

    @property
    def paths(self) -> list[str]:
        """The paths this changeset changes, in the order they were given."""
        return list(self._paths)

    def _set(self, path: str, entry: Entry | None) -> bool:
        if self.repo.objects.lookup(self.base_root, path) == entry:
            return False
        place(self._plan, path, entry)
        self._paths.append(path)
        return True

    def commit(self, message: str) -> str | None:
        """Write the objects and move the ref; the new commit, or None when nothing changed."""
        objects = self.repo.objects
        if not self._plan:
            objects.discard()
            return None
        root = objects.edit(self.base_root, self._plan) or objects.tree({})
        if root == (self.base_root or objects.tree({})):
            objects.discard()
            return None
        commit = objects.commit(root, self.base, message)
        objects.flush()
        crash_point("objects-written")
        self.repo.journal.append(
            {"ref": self.ref, "old": self.expect, "new": commit, "paths": self._paths}
        )
        self.repo.refs.update(self.ref, commit, self.expect)
        crash_point("ref-moved")
        self.commit_sha = commit
        self.repo.committed_since_lock = True
        return commit
