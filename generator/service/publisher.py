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
        self._target: str | None = None  # the newest commit handed over, to push
        self._target_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="overseer-publisher", daemon=True)

    def start(self) -> None:
        """Start the thread, and push what a previous process left unpushed."""
        self._thread.start()
        with self.ctx.repo.lock():  # whatever HEAD is once no round holds it is committed
            head = self.ctx.repo.head()
        if head is not None:
            self.wake(head)

    def wake(self, commit: str) -> None:
        """A round's commit is in the database: push it (or a later one) soon.

        Only commits handed over here are pushed, never HEAD as it is: a round moves HEAD before
        its database transaction commits, and a commit whose rows roll back must not reach main.
        """
        with self._target_lock:
            # Rounds finish in two threads (the leader's serves followers): keep the newest.
            if self._target is None or self.ctx.repo.objects.descends(commit, self._target):
                self._target = commit
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
        """Push the newest commit handed over, unless it is there already.

        Without the writer lock, but for a rejection: then a render replays under the locks.
        """
        repo, remote = self.ctx.repo, self.ctx.settings.git_remote
        with self._target_lock:
            head = self._target
        if not remote or head is None or not gitops.push_pending(repo, head):
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
