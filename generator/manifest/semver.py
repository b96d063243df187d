"""Ordering of semantic versions (semver.org, section 11), for plugin upgrades."""

from __future__ import annotations

import re

_PARTS = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+.*)?$")


def _key(version: str) -> tuple[tuple[int, int, int], int, tuple[tuple[int, int | str], ...]]:
    match = _PARTS.match(version)
    if not match:
        raise ValueError(f"not a semantic version: {version!r}")
    core = (int(match[1]), int(match[2]), int(match[3]))
    pre = match[4]
    if pre is None:
        return core, 1, ()  # a release sorts after all of its pre-releases
    idents = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return core, 0, idents


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as version `a` is lower than, equal to or higher than `b` (build ignored)."""
    ka, kb = _key(a), _key(b)
    return (ka > kb) - (ka < kb)
