"""The server's pushes, made right after each round is answered, beside the next rounds.

A round is answered once it is committed in the database and in the clone.
A push costs a round more than its render does (git spawns half a dozen processes on each side),
and under load rounds come faster than pushes: one push takes every commit made since the last.
A commit answered but not yet pushed is not lost with its replica: its rows are committed in the
database, and any other replica renders them again (see `render._catch_up`).
"""

from __future__ import annotations

import logging
import threading

from .. import gitops
from ..store import render_state
from . import render as render_service
from .context import Context

log = logging.getLogger("overseer.render")


class Publisher:
    """A thread that pushes the clone's main whenever it has commits the remote lacks."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="overseer-publisher", daemon=True)

    def start(self) -> None:
        """Start the thread, and push what a previous process left unpushed."""
        self._thread.start()
        self.wake()

    def wake(self) -> None:
        """A round committed: push soon."""
        self._wake.set()

    def stop(self) -> None:
        """Push what is pending, then end."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self.push()
            except Exception:  # the remote is down: the next round, or the next render, retries
                log.exception("push failed; the commits stand, and the next round pushes them")
            if self._stopping:
                return

    def push(self) -> None:
        """Push HEAD when a push is pending; under the lock only when the remote moved."""
        repo, remote = self.ctx.repo, self.ctx.settings.git_remote
        if not remote or not gitops.push_pending(repo):
            return
        head = repo.head()
        if head is None:
            return
        if not gitops.push_commit(repo, remote, head):
            # Someone else pushed: a render under the locks replays ours onto theirs (or renders
            # again on theirs) and pushes, as the CLI's renders do.
            render_service.render(self.ctx)
            return
        # Without the writer lock: this replica's writer may hold it while it waits for another
        # replica's render, which waits for this very mark.
        with self.ctx.statements() as conn:
            render_state.mark_pushed(conn, head)
