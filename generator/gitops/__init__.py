"""The git layer: the GitOps repository, changed only through changesets.

- `repository`: where the repository lives, its writer lock, and its parts;
- `objects`: blobs, trees and commits built in-process, written as packs;
- `trees`: git's tree format, and the nested edits a changeset makes to a tree;
- `changeset`: the one way to change the repository (objects, journal, ref);
- `refs`: the one way a ref moves, compare-and-swap;
- `journal`: changesets whose database commit is not yet confirmed;
- `snapshot`: the charts of a commit, read from objects;
- `worktree`: the checked-out files, brought to a commit when someone wants files;
- `remote`: push, replay onto a remote's main that moved, fetch main, push review branches;
- `command`: one git command run to completion, its failure as git's own verdict.
"""

from .changeset import Changeset, crash_point
from .objects import IDENTITY
from .remote import (
    REMOTE_MAIN,
    Diverged,
    check_reachable,
    delete_branches,
    fetch_main,
    follow_main,
    publish,
    push_branches,
    push_commit,
    push_pending,
    reset_to_remote,
)
from .repository import CHECKOUT, LAZY, GitOpsRepo
from .snapshot import Snapshot

__all__ = [
    "CHECKOUT",
    "IDENTITY",
    "LAZY",
    "REMOTE_MAIN",
    "Changeset",
    "Diverged",
    "GitOpsRepo",
    "Snapshot",
    "check_reachable",
    "crash_point",
    "delete_branches",
    "fetch_main",
    "follow_main",
    "publish",
    "push_branches",
    "push_commit",
    "push_pending",
    "reset_to_remote",
]
