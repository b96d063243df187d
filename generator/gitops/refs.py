"""The one way a ref moves: compare-and-swap, in-process through libgit2.

Each update takes the ref's lock file, checks the old value under it, writes the new one and a
reflog entry, as `git update-ref` does. It used to be a long-lived `git update-ref --stdin`:
that process looked for the new commit's pack by reading the pack directory again on every
update, 1.6 ms of CPU per commit with a few thousand commits behind it, and growing
(docs/git-layer.md).
"""

from __future__ import annotations

from collections.abc import Callable

import pygit2

from ..errors import GitFailed
from .objects import IDENTITY

_RETRY = "something else moved the branch meanwhile; run the command again"
_MISSING = "a bug: the commit was not written first; report it with the log"

# libgit2 checks that a ref's new target exists by looking for it, in a pack directory it
# scans again for an object it has not seen and then in every pack's index: 1 to 2 ms a round
# with the packs a busy server keeps. The refs here move only through `RefUpdater`, which asks
# the object store instead (it knows the commits it has just written), and nothing else in the
# package creates objects through libgit2: the check is off for the process.
pygit2.settings.enable_strict_object_creation(False)


class RefUpdater:
    """Moves refs of one repository, each only from the value the caller last saw."""

    def __init__(self, git_dir: str, holds: Callable[[str], bool]) -> None:
        self._git_dir = git_dir
        # Whether the repository has a commit: asked before a ref may name it, instead of
        # libgit2's own check (see below).
        self._holds = holds
        self._repository: pygit2.Repository | None = None

    def update(self, ref: str, new: str, old: str | None) -> None:
        """Move `ref` from `old` (None: it must not exist) to `new`, or raise GitFailed.

        `HEAD` moves the branch it names, which logs the move in both reflogs.
        """
        repository = self._open()
        name, message = ref, "overseer: render"
        if not self._holds(new):
            raise GitFailed("update-ref", f"{ref}: {new} is not in the repository", _MISSING)
        try:
            name = self._direct(repository, ref)
            if old is None:
                repository.create_reference_direct(
                    name, pygit2.Oid(hex=new), False, message=message
                )
                return
            current = repository.references.get(name)
            if current is None or str(current.target) != old:
                seen = "nothing" if current is None else str(current.target)
                raise GitFailed("update-ref", f"{name} is at {seen}, not {old}", _RETRY)
            # libgit2 checks again under the ref's lock that it still names `old`.
            current.set_target(pygit2.Oid(hex=new), message)
        except (pygit2.AlreadyExistsError, pygit2.GitError, ValueError, OSError) as exc:
            # OSError: the ref is locked (another writer, or a lock file a dead one left).
            raise GitFailed("update-ref", f"{name}: {exc}", _RETRY) from None

    @staticmethod
    def _direct(repository: pygit2.Repository, ref: str) -> str:
        # A symbolic ref (HEAD) stands for the branch it names, born or not.
        found = repository.references.get(ref)
        if found is not None and found.type == pygit2.enums.ReferenceType.SYMBOLIC:
            return str(found.target)
        return ref

    def _open(self) -> pygit2.Repository:
        if self._repository is None:
            self._repository = pygit2.Repository(self._git_dir)
            self._repository.set_ident(
                IDENTITY["GIT_COMMITTER_NAME"], IDENTITY["GIT_COMMITTER_EMAIL"]
            )
        return self._repository

    def close(self) -> None:
        """Let go of libgit2's handles."""
        if self._repository is not None:
            self._repository.free()
        self._repository = None
