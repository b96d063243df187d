"""Finding the pinned external binaries."""

from __future__ import annotations

import os
import shutil

from ..errors import ToolMissing

HINT = "run `make tools` and put the directory it prints on PATH (or set {var})"


def find(tool: str) -> str:
    """Path of `tool`: $OVERSEER_<TOOL> when set, else the first one on PATH."""
    var = f"OVERSEER_{tool.upper().replace('-', '_')}"  # kube-score: OVERSEER_KUBE_SCORE
    explicit = os.environ.get(var)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise ToolMissing(tool, f"{var}={explicit} is not an executable file")
        return explicit
    found = shutil.which(tool)
    if found is None:
        raise ToolMissing(tool, HINT.format(var=var))
    return found
