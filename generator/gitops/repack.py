"""Geometric repacks: the small packs a writer leaves, folded into one by `git pack-objects`.

Not `git repack --geometric`: its `--stdin-packs` mode walks every commit in the packs it folds
to name their objects, and each walk reads the namespace's tree, 10,000 entries at 10,000
charts. Git's own trace showed that walk as 80% of the repack (0.67 of 0.84 s for 6,040
objects), and it made git's CPU per request grow with the repository. Here git is only handed
the objects of the packs to fold: no walk. Unnamed, they still sort by type and size, so a
namespace tree's versions lie next to each other and a window of one finds the deltas.
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import IO

log = logging.getLogger("overseer.gitops")

_FACTOR = 2  # the smallest pack kept holds twice the folded ones; each larger, twice the one below
_INDEX_HEAD = 8 + 256 * 4  # a version-2 index: magic, version, then the fan-out table


def fold_count(counts: list[int]) -> int:
    """How many of the smallest packs (object counts, ascending) to fold together; 0 for none.

    The fewest that leave a geometric progression: the smallest pack kept holds at least
    `_FACTOR` times the objects of the folded ones, and each larger one `_FACTOR` times the one
    below it (git's rule).
    """
    total = 0
    for folded, count in enumerate(counts):
        rest = counts[folded:]
        if count >= _FACTOR * total and all(b >= _FACTOR * a for a, b in itertools.pairwise(rest)):
            return folded if folded >= 2 else 0
        total += count
    return len(counts) if len(counts) >= 2 else 0


def _objects(index: Path) -> list[bytes]:
    """The binary shas an index lists."""
    data = index.read_bytes()
    count = _listed(data[:_INDEX_HEAD])
    if count < 0:  # not a version-2 index: leave that pack alone
        raise ValueError(f"{index.name}: not a version-2 pack index")
    table = data[_INDEX_HEAD : _INDEX_HEAD + 20 * count]
    if len(table) != 20 * count:  # cut short: its pack must not be folded (and then deleted)
        raise ValueError(f"{index.name}: lists fewer objects than it says")
    return [table[i : i + 20] for i in range(0, len(table), 20)]


def _count(index: Path) -> int:
    with index.open("rb") as fh:
        return _listed(fh.read(_INDEX_HEAD))


def _listed(head: bytes) -> int:
    """How many objects a version-2 index says it lists, from its head; -1 for another file."""
    if len(head) < _INDEX_HEAD or head[:4] != b"\377tOc":
        return -1
    return int(struct.unpack(">I", head[-4:])[0])


class Repack:
    """One fold, running beside the writer's next commits until `finish`."""

    def __init__(
        self, folded: list[Path], process: subprocess.Popen[bytes], errors: IO[bytes]
    ) -> None:
        self.folded = folded  # the folded packs' indexes
        self.process = process
        self.errors = errors

    @classmethod
    def start(cls, git_dir: Path) -> Repack | None:
        """Fold the small packs, if the packs are not a geometric progression; or None."""
        pack_dir = git_dir / "objects" / "pack"
        names = set(os.listdir(pack_dir))  # one listing, not three stats a pack
        found = []
        for name in names:
            stem = name.removesuffix(".idx")
            if not name.startswith("pack-") or stem == name:
                continue
            if any(f"{stem}{s}" in names for s in (".keep", ".mtimes", ".promisor")):
                continue  # kept by someone, or git's cruft: git's geometric repack skips them
            index = pack_dir / name
            count = _count(index)
            if count >= 0:
                found.append((count, index))
        found.sort()
        folded = [index for _, index in found[: fold_count([c for c, _ in found])]]
        if not folded:
            return None
        # Not a pipe for its errors: nobody reads one while git runs, and a full one stalls it.
        errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by `finish`
        with tempfile.TemporaryFile() as listing:
            try:
                for index in folded:
                    listing.write(b"".join(sha.hex().encode() + b"\n" for sha in _objects(index)))
            except (OSError, ValueError) as exc:  # a pack removed meanwhile (someone's gc)
                log.warning("no repack this time: %s", exc)
                errors.close()
                return None
            listing.seek(0)
            process = subprocess.Popen(
                # A window of one: the nearest object of the same size finds a tree's delta,
                # as git's default of ten does, for a third of the CPU. Objects that find no
                # delta stay as they were written (see `pack`).
                [
                    "git",
                    f"--git-dir={git_dir}",
                    "-c",
                    "pack.window=1",
                    "pack-objects",
                    "-q",
                    "--delta-base-offset",
                    str(pack_dir / "pack"),
                ],
                stdin=listing,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        return cls(folded, process, errors)

    def done(self) -> bool:
        """Whether git has finished (`finish` then takes no time)."""
        return self.process.poll() is not None

    def finish(self) -> None:
        """Wait for git; then remove the folded packs, which the new one holds."""
        self.process.wait()
        with self.errors:
            self.errors.seek(0)
            said = self.errors.read().decode(errors="replace").strip()
        if self.process.returncode != 0:  # nothing lost: the folded packs stay
            log.warning("repack failed: %s", said)
            return
        # The index first: a reader only finds a pack through it.
        for index in self.folded:
            for suffix in (".idx", ".pack", ".rev", ".bitmap"):
                index.with_suffix(suffix).unlink(missing_ok=True)
