"""Write rendered charts into the GitOps work tree: only what changed, each file atomically.

A chart lives at `<root>/<namespace>/<release>/`. Writing compares bytes first, so a render that
changes nothing touches no file, and git sees no modification time change.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from .render import INPUTS_FILE, Chart

STAGING_PREFIX = ".overseer-staging-"
STATE_FILE = ".overseer/render-state.json"


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ChartTree:
    """The rendered charts under one GitOps root.

    `record`, when given, is told each chart or file path just before its first byte on disk
    changes (`GitOpsRepo.record`), so a writer killed before committing can be undone.
    """

    def __init__(self, root: Path, record: Callable[[str], None] | None = None) -> None:
        self.root = root
        self._record = record or (lambda path: None)

    def chart_paths(self, *, remove_leftovers: bool = False) -> set[str]:
        """`namespace/release` of every chart directory present.

        With `remove_leftovers`, staging directories a killed render left behind are removed in
        the same pass (one listing of a 10,000-chart namespace costs a server round 10 ms).
        """
        found: set[str] = set()
        if not self.root.is_dir():
            return found
        with os.scandir(self.root) as namespaces:
            for ns in namespaces:
                if not ns.is_dir() or ns.name.startswith("."):
                    continue
                # Overseer owns this tree: every visible directory at this depth is a chart. Not
                # opening each one saves 10,000 stat calls on a large repo (is_dir() comes from
                # the directory listing itself).
                with os.scandir(ns.path) as releases:
                    for rel in releases:
                        if not rel.name.startswith("."):
                            if rel.is_dir():
                                found.add(f"{ns.name}/{rel.name}")
                        elif remove_leftovers and rel.name.startswith(STAGING_PREFIX):
                            shutil.rmtree(rel.path, ignore_errors=True)
        return found

    def read_inputs(self, chart_path: str) -> bytes | None:
        """The chart's inputs record, or None when absent."""
        try:
            return (self.root / chart_path / INPUTS_FILE).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def read_file(self, rel: str) -> bytes | None:
        """A file of the repository, or None when absent."""
        try:
            return (self.root / rel).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write_file(self, rel: str, data: bytes) -> bool:
        """Write one file atomically unless it already holds `data`; return whether it changed."""
        if self.read_file(rel) == data:
            return False
        self._record(rel)
        atomic_write(self.root / rel, data)
        return True

    def read_chart(self, chart_path: str) -> Chart:
        """Every file of a chart, by path relative to the chart."""
        base = self.root / chart_path
        return {
            p.relative_to(base).as_posix(): p.read_bytes()
            for p in sorted(base.rglob("*"))
            if p.is_file()
        }

    def write_chart(self, chart_path: str, files: Chart) -> bool:
        """Make the chart directory hold exactly `files`; return whether anything changed."""
        base = self.root / chart_path
        if not base.is_dir():
            self._record(chart_path)
            self._create_chart(base, files)
            return True
        changed = False
        for rel, data in files.items():
            target = base / rel
            try:
                if target.read_bytes() == data:
                    continue
            except (FileNotFoundError, NotADirectoryError):
                pass
            if not changed:
                self._record(chart_path)
            atomic_write(target, data)
            changed = True
        if base.is_dir():
            for stale in self._extra_files(base, files.keys()):
                if not changed:
                    self._record(chart_path)
                stale.unlink()
                changed = True
            self._prune_empty_dirs(base)
        return changed

    def _create_chart(self, base: Path, files: Chart) -> None:
        # A new chart is written whole into a staging directory and renamed into place: one
        # atomic step instead of one per file, and no reader ever sees half a chart.
        base.parent.mkdir(parents=True, exist_ok=True)
        staging = tempfile.mkdtemp(dir=base.parent, prefix=f"{STAGING_PREFIX}{base.name}.")
        try:
            made: set[str] = set()
            for rel, data in files.items():
                sub = os.path.dirname(rel)
                if sub and sub not in made:
                    os.makedirs(os.path.join(staging, sub), exist_ok=True)
                    made.add(sub)
                with open(os.path.join(staging, rel), "wb") as fh:
                    fh.write(data)
            os.chmod(staging, 0o755)  # noqa: S103 - mkdtemp makes it private; charts are public
            os.rename(staging, base)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def remove_chart(self, chart_path: str) -> None:
        """Delete a chart directory, and its namespace directory once empty."""
        base = self.root / chart_path
        self._record(chart_path)
        shutil.rmtree(base, ignore_errors=True)
        with contextlib.suppress(OSError):  # other charts remain in the namespace
            base.parent.rmdir()

    @staticmethod
    def _extra_files(base: Path, keep: Iterable[str]) -> list[Path]:
        wanted = set(keep)
        return [
            p
            for p in base.rglob("*")
            if p.is_file() and p.relative_to(base).as_posix() not in wanted
        ]

    @staticmethod
    def _prune_empty_dirs(base: Path) -> None:
        for d in sorted((p for p in base.rglob("*") if p.is_dir()), reverse=True):
            if not any(d.iterdir()):
                d.rmdir()
