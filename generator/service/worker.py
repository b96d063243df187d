"""The server's background work: apply what main holds, uninstall what left it, reap TTLs.

In review mode it also polls the forge for merged and closed pull requests.

The queue is the `deployments` table itself: a deployment not yet applied (CREATING, UPDATING,
APPLYING) or changed since it was applied is pending, so work accepted before a crash or a restart
is picked up by the next worker. A PostgreSQL advisory lock lets one worker at a time apply, however
many server processes share the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from ..config import REVIEW
from ..store import proposals as proposal_store
from ..store import tokens as token_store
from . import apply as apply_service
from . import render as render_service
from . import review
from .context import Context

log = logging.getLogger("overseer.worker")


def forget_old_keys(ctx: Context) -> None:
    """Forget what guards against replays once none can come: keys after a day, deliveries after 30.

    Idempotency-Keys and webhook delivery ids otherwise grow with every request.
    """
    with ctx.transaction() as conn:
        keys, deliveries = token_store.forget_keys(conn), proposal_store.forget_deliveries(conn)
    if keys or deliveries:
        log.info("forgot %d idempotency key(s) and %d webhook delivery id(s)", keys, deliveries)


class Worker:
    """A thread that applies and reaps until stopped."""

    def __init__(
        self,
        ctx: Context,
        *,
        interval: float = 2.0,
        reap_every: float = 10.0,
        chores: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.ctx = ctx
        self.interval = interval
        self.reap_every = reap_every
        self.chores = chores  # run with each reap, in every process (the server's sweep)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="overseer-worker", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def wake(self) -> None:
        """Look for work now rather than at the next interval."""
        self._wake.set()

    def stop(self, timeout: float = 30) -> None:
        """Let the current pass finish (helm runs are bounded by their timeout), then end."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        last_reap = last_poll = 0.0
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            reap = time.monotonic() - last_reap >= self.reap_every
            poll = time.monotonic() - last_poll >= self.ctx.settings.poll_interval
            if poll:  # a forge that fails is asked again at the next poll, not at every pass
                last_poll = time.monotonic()
            try:
                if reap:
                    for chore in self.chores:
                        chore()
                self._pass(reap, poll and self.ctx.settings.mode == REVIEW)
                if reap:
                    last_reap = time.monotonic()
            except Exception:
                log.exception("background pass failed; retrying in %.0f s", self.interval)

    def _pass(self, reap: bool, poll: bool) -> None:
        with apply_service.exclusive(self.ctx) as locked:
            if not locked:
                return  # another process is applying
            review_mode = self.ctx.settings.mode == REVIEW
            if poll:  # a webhook that never came delays a merge by one poll, never loses it
                try:
                    for settled in review.settle(self.ctx):
                        log.info("pull request #%d %s", settled.number, settled.state)
                    # Changes no request proposed (a plugin's new version), or whose round failed.
                    render_service.render(self.ctx)
                except Exception:  # the forge is down: what main holds is applied all the same
                    log.exception(
                        "polling the forge failed; applying what main holds, polling again in %.0f s",
                        self.ctx.settings.poll_interval,
                    )
            if reap:
                for outcome in apply_service.gc(self.ctx):
                    log.info("expired %s: %s", outcome.deployment_id, outcome.action)
                forget_old_keys(self.ctx)
            if not self.ctx.delivery.installs:  # Argo CD or Flux installs what main holds
                if not review_mode:
                    render_service.render(self.ctx)
                return
            # In review mode requests and polls propose; a pass applies what main holds.
            for outcome in apply_service.apply(self.ctx, render=not review_mode):
                log.info(
                    "%s %s: %s %s",
                    outcome.action,
                    outcome.deployment_id,
                    outcome.status,
                    outcome.reason or "",
                )
