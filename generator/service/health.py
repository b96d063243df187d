"""Readiness: whether this process can do its job now (its database, the remote of main).

Asked every few seconds by the kubelet of every replica; the remote's answer is kept for 5
seconds, so the remote is asked at most that often, however many probes come.
"""

from __future__ import annotations

import logging
import threading
import time

from .. import gitops
from ..errors import RemoteUnavailable, UserError
from .context import Context

_KEEP = 5.0  # seconds a remote's answer is reused
log = logging.getLogger("overseer.api")


class Readiness:
    """Checks the database on every call, and the remote at most every few seconds."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._checked = 0.0
        self._failure: str | None = None

    def check(self) -> dict[str, str]:
        """What was checked, each "ok"; raises DatabaseUnavailable or RemoteUnavailable (503)."""
        with self.ctx.statements() as conn:  # a database that is down answers 503 on its own
            conn.execute("SELECT 1")
        answer = {"database": "ok"}
        remote = self.ctx.settings.git_remote
        if remote:
            failure = self._remote(remote)
            if failure is not None:  # its address and git's words stay in the log
                raise RemoteUnavailable(
                    "the Git remote does not answer; the server's log says why",
                    hint="check OVERSEER_GIT_REMOTE and its credentials",
                )
            answer["remote"] = "ok"
        return answer

    def _remote(self, remote: str) -> str | None:
        with self._lock:
            if time.monotonic() - self._checked < _KEEP:
                return self._failure
            try:
                gitops.check_reachable(self.ctx.repo, remote, timeout=_KEEP)
                self._failure = None
            except UserError as exc:
                if self._failure != exc.message:
                    log.warning("readiness: %s", exc.message)
                self._failure = exc.message
            self._checked = time.monotonic()
            return self._failure
