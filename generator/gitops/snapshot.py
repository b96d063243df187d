"""The charts of one commit, read from objects.

What a render compares against, and what apply and the checks read, with no work tree involved.
"""

from __future__ import annotations

import os
from pathlib import Path

from .objects import ObjectStore
from .trees import TREE


class Snapshot:
    """Read-only view of the tree of one commit (or of an empty repository)."""

    def __init__(self, objects: ObjectStore, commit: str | None, root: bytes | None) -> None:
        self.objects = objects
        self.commit = commit
        self.root = root

    def chart_paths(self) -> set[str]:
        """`namespace/release` of every chart directory (names starting with "." are Overseer's)."""
        found: set[str] = set()
        if self.root is None:
            return found
        for ns, (mode, sha) in self.objects.entries(self.root).items():
            if mode != TREE or ns.startswith("."):
                continue
            found.update(
                f"{ns}/{name}"
                for name, (kind, _) in self.objects.entries(sha).items()
                if kind == TREE and not name.startswith(".")
            )
        return found

    def chart_count(self) -> int:
        """How many charts there are, from the namespace trees' sizes (no listing).

        Every entry at chart depth counts: Overseer keeps only chart directories there.
        """
        if self.root is None:
            return 0
        return sum(
            len(self.objects.entries(sha))
            for ns, (mode, sha) in self.objects.entries(self.root).items()
            if mode == TREE and not ns.startswith(".")
        )

    def tree_of(self, path: str) -> bytes | None:
        """The sha of the directory at `path`, or None."""
        entry = self.objects.lookup(self.root, path)
        return entry[1] if entry is not None and entry[0] == TREE else None

    def read_file(self, rel: str) -> bytes | None:
        """A file's bytes, or None when absent."""
        entry = self.objects.lookup(self.root, rel)
        if entry is None or entry[0] == TREE:
            return None
        return self.objects.read(entry[1])

    def read_chart(self, chart_path: str) -> dict[str, bytes]:
        """Every file of a chart, by path relative to the chart."""
        tree = self.tree_of(chart_path)
        if tree is None:
            return {}
        return {rel: self.objects.read(sha) for rel, sha in self.objects.walk(tree)}

    def export(self, chart_path: str, dest: Path) -> None:
        """Write a chart's files under `dest` (which must not exist); FileNotFoundError if absent."""
        files = self.read_chart(chart_path)
        if not files:
            raise FileNotFoundError(f"{chart_path} is not in commit {self.commit}")
        for rel, data in files.items():
            target = dest / rel
            os.makedirs(target.parent, exist_ok=True)
            target.write_bytes(data)
