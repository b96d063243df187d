"""One writer for every replica: the leader renders the rows all of them store.

Replicas that each render their own rounds take turns at the render lock, and every turn starts
by waiting for the other's push and fetching it: measured with two replicas, 48 creates a
second against 220 for one. So the replicas' writer processes compete for a session advisory
lock, and the one that holds it leads until it exits (its connection closing frees the lock).

A follower's round does not render. It asks the leader (NOTIFY) and waits until a render that
took the render lock after the round began has committed: the rows the round answers for were
committed before that, so they were in that render's snapshot. It answers with that render's
commit. A follower whose leader does not answer in time (it died, or the database dropped its
connection) renders itself, as any replica may: correctness never depends on who leads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

from ..errors import UserError
from ..store import db, render_state
from .context import Context

log = logging.getLogger("overseer.render")

_LEAD = "SELECT pg_try_advisory_lock(hashtextextended('overseer-render-leader', 0)) AS lead"
CHANNEL = "overseer_render"
FOLLOW_WAIT = 2.0  # seconds a follower waits for the leader before it renders itself


class Leadership:
    """Whether this writer leads, and the leader's ear for its followers."""

    def __init__(self, ctx: Context, render: Callable[[], object]) -> None:
        self.ctx = ctx
        self._render = render  # a round for the followers, in the leader
        self._conn: db.Connection | None = None  # the session whose lock is the lead
        self._leads = False
        self._lock = threading.Lock()  # the main loop and the leader's thread share the session
        self._asked = threading.Event()
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def leading(self) -> bool:
        """Whether this writer leads; takes the lead when it is free."""
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    # One session for the whole process: asking again is a statement, not a
                    # connection (a follower asks every round).
                    self._conn = db.connect(self.ctx.database_url, autocommit=True)
                    self._leads = False
                if self._leads:
                    self._conn.execute("SELECT 1")  # still connected: still holding the lock
                    return True
                row = self._conn.execute(_LEAD).fetchone()
            except (psycopg.Error, UserError):  # the database is away: the render says so (503)
                self._drop()
                return True
            self._leads = bool(row and row["lead"])
        if self._leads and not self._threads:  # once: a lead taken again keeps them
            log.info("this writer leads the renders of every replica")
            self._start(self._listen, "overseer-leader-listen")
            self._start(self._serve, "overseer-leader-render")
        return self._leads

    def holds(self) -> bool:
        """Whether this writer still holds the lead (its session is alive)."""
        with self._lock:
            if not self._leads or self._conn is None:
                return False
            try:
                self._conn.execute("SELECT 1")
            except psycopg.Error:  # dropped (a database restart): the lead went with it
                self._drop()
                return False
            return True

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._leads = None, False

    def follow(self) -> str | None:
        """Ask the leader for a round and wait for it; its commit, or None if it did not come.

        Also None when no render committed anything yet (then the caller renders).
        """
        with self.ctx.statements() as conn:
            since = render_state.now(conn)
            conn.execute(f"NOTIFY {CHANNEL}")
            deadline = time.monotonic() + FOLLOW_WAIT
            while time.monotonic() < deadline:
                commit = render_state.covered_since(conn, since)
                if commit is not None:
                    return commit
                time.sleep(0.005)
        return None

    def stop(self) -> None:
        """End the leader's threads and let go of the lead."""
        self._stopping = True
        self._asked.set()
        for thread in self._threads:
            thread.join(timeout=30)
        with self._lock:
            self._drop()

    def _start(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _listen(self) -> None:
        while not self._stopping:
            try:
                with db.connect(self.ctx.database_url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stopping:
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._asked.set()
            except (psycopg.Error, UserError):  # reconnect; followers render alone meanwhile
                time.sleep(1)

    def _serve(self) -> None:
        while True:
            self._asked.wait()
            self._asked.clear()
            if self._stopping:
                return
            if not self.holds():  # another writer leads now: it serves the followers
                continue
            try:
                self._render()  # one round for every request made meanwhile
            except Exception:  # each follower renders itself after its wait, and says why
                log.exception("a round for the other replicas failed")
