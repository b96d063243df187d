"""The crash journal: changesets whose database commit is not yet known to have happened.

A changeset appends its entry (ref, old and new commit, the chart paths it touched) before the
ref moves. A render empties the journal when it lets go of the writer lock normally, which is
after its database transaction committed and after it reconciled the paths the journal named. A
journal found non-empty by the next holder therefore names commits that may have landed in Git
without their rows: the paths in doubt, which the next render reconciles with the database.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Journal:
    """One append-only file in the git directory.

    Its descriptor stays open across lock holds: a server's round would otherwise open it,
    read it, and close it again every time (files are slow to open on a busy disk). Appends go
    to its end whoever truncated it meanwhile; a journal file removed by hand is opened anew.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
            self.close()  # removed: write where the next reader looks
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        return self._fd

    def append(self, entry: dict[str, object]) -> None:
        """Record one entry; it reaches the kernel before this returns (a SIGKILL keeps it)."""
        os.write(self._open(), json.dumps(entry, sort_keys=True).encode() + b"\n")

    def entries(self) -> list[dict[str, Any]]:
        """The complete entries recorded (a line cut short by a kill is ignored)."""
        fd = self._open()
        size = os.fstat(fd).st_size
        text = os.pread(fd, size, 0) if size else b""
        found = []
        for line in text.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                found.append(entry)
        return found

    def clear(self) -> None:
        """Empty the journal (truncating is cheaper than creating the file anew each time)."""
        os.ftruncate(self._open(), 0)

    def close(self) -> None:
        """Let go of the file handle."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
