"""The one way a ref moves: compare-and-swap, through a long-lived `git update-ref --stdin`.

Each update is its own transaction, with a reflog entry, and no process starts per commit.
"""

from __future__ import annotations

import os
import subprocess

from ..errors import GitFailed
from .objects import IDENTITY

NO_SHA = "0" * 40


class RefUpdater:
    """Moves refs of one repository, each only from the value the caller last saw."""

    def __init__(self, git_dir: str) -> None:
        self._git_dir = git_dir
        self._proc: subprocess.Popen[bytes] | None = None

    def update(self, ref: str, new: str, old: str | None) -> None:
        """Move `ref` from `old` (None: it must not exist) to `new`, or raise GitFailed."""
        proc = self._process()
        assert proc.stdin is not None and proc.stdout is not None  # noqa: S101 - PIPEs
        try:
            proc.stdin.write(
                f"start\nupdate {ref} {new} {old or NO_SHA}\nprepare\ncommit\n".encode()
            )
            proc.stdin.flush()
            answers = [proc.stdout.readline().strip() for _ in range(3)]
        except OSError:
            answers = []
        if answers != [b"start: ok", b"prepare: ok", b"commit: ok"]:
            # On a failed update git prints why on stderr and exits.
            proc.kill()
            stderr = proc.stderr.read() if proc.stderr else b""
            proc.wait()
            self._proc = None
            raise GitFailed(
                "update-ref",
                stderr.decode(errors="replace").strip(),
                "something else moved the branch meanwhile; run the command again",
            )

    def _process(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [
                    "git",
                    f"--git-dir={self._git_dir}",
                    "update-ref",
                    "-m",
                    "overseer: render",
                    "--stdin",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, **IDENTITY},
            )
        return self._proc

    def close(self) -> None:
        """End the process."""
        if self._proc is not None and self._proc.poll() is None:
            assert self._proc.stdin is not None  # noqa: S101
            self._proc.stdin.close()
            self._proc.wait()
        self._proc = None
