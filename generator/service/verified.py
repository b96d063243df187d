"""Charts an offline check already proved clean, so the next full check need not render them.

An offline check renders each chart from its own inputs record and compares every byte. The
render is a pure function of the record and of the generator (its code and templates), and the
record is one of the chart's files; so a chart whose files are byte for byte those of a chart
found clean before, by the same generator, is clean again. How the cache stays honest:

- A chart's key is a digest of the bytes the check itself just read (every file's name and
  content, the record included), never a timestamp, a stat or Git's opinion of the work tree:
  whatever changed a byte (a hand edit, a checkout, a line-ending filter) changes the key.
- The generator's identity is part of the cache: Overseer's version, its templates' digest, a
  digest of the source of the code that renders (`generator.render`, `generator.manifest`) and
  the versions of the libraries it renders with (Jinja2, PyYAML, pydantic). A new Overseer, an
  edited template or renderer, or another library finds the cache for another generator and
  starts empty.
- Only clean verdicts are kept; a chart that drifted is rendered again every time.
- It lives in the Git directory (`overseer-verified-charts`), never in a commit or a work tree,
  written atomically; one that cannot be read is ignored (a full check, then a new cache). A full
  check keeps only the charts it saw, so the file never outgrows the repository.

Whoever can write the Git directory can make a check pass this way, as they could by editing the
hooks there; CI jobs start from a fresh clone, with no cache at all.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from importlib import metadata
from pathlib import Path

from .. import manifest, render
from ..render import Chart, Renderer

NAME = "overseer-verified-charts"
_HEADER = b"overseer-verified-charts 1 "


def chart_digest(chart: Chart) -> str:
    """A digest of every file's name and bytes."""
    digest = hashlib.sha256()
    for name in sorted(chart):
        data = chart[name]
        digest.update(b"%s\0%d\0" % (name.encode(), len(data)))
        digest.update(data)
    return digest.hexdigest()


# What a chart's bytes depend on besides its record: the libraries that template, serialise
# and normalise it.
_LIBRARIES = ("jinja2", "pyyaml", "pydantic", "pydantic-core")


@cache
def generator_id() -> str:
    """The identity of the running generator: version, templates, code and libraries."""
    digest = hashlib.sha256(repr(sorted(Renderer.generator().items())).encode())
    for package in (render, manifest):
        folder = Path(package.__file__ or "").parent
        for source in sorted(folder.glob("*.py")):
            digest.update(source.name.encode() + b"\0" + source.read_bytes())
    for library in _LIBRARIES:
        try:
            digest.update(f"{library}=={metadata.version(library)}\n".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{library} absent\n".encode())
    return digest.hexdigest()


class VerifiedCharts:
    """The digests of charts found clean by this generator, read from and saved to `path`."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.known: set[str] = set()
        self.seen: set[str] = set()  # verified in this run, by cache or by render
        header = _HEADER + generator_id().encode()
        try:
            lines = path.read_bytes().split(b"\n") if path is not None else []
        except OSError:
            lines = []
        if lines and lines[0] == header:  # else another generator's, or none: start empty
            self.known = {line.decode() for line in lines[1:] if len(line) == 64}

    def clean(self, digest: str) -> bool:
        """Whether a chart with this digest was proved clean; noted as seen if so."""
        if digest in self.known:
            self.seen.add(digest)
            return True
        return False

    def add(self, digest: str) -> None:
        """Note a chart just proved clean."""
        self.seen.add(digest)

    def save(self, *, complete: bool) -> None:
        """Write the cache; `complete`: every chart was checked, so forget the others."""
        if self.path is None:
            return
        kept = self.seen if complete else self.seen | self.known
        if kept == self.known:
            return
        body = b"\n".join([_HEADER + generator_id().encode(), *(d.encode() for d in sorted(kept))])
        temp = self.path.with_name(f"{NAME}.{os.getpid()}.tmp")
        try:
            temp.write_bytes(body + b"\n")
            temp.replace(self.path)
        except OSError:  # a read-only clone: the check stands, only its memory is lost
            temp.unlink(missing_ok=True)
