"""Group commit for a server: many requests, one render and one commit per round.

A request stores its row first, then asks for "a render that started after my row was
committed". One thread performs renders back to back; every request waiting when a render
starts is answered by it. Under load, a commit carries many deployments (which the trailers
list one by one) instead of each request waiting for its own turn at the repository lock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from . import render as render_service
from .context import Context


@dataclass
class _Round:
    done: threading.Event
    commit: str | None = None
    error: BaseException | None = None


class RenderBatcher:
    """Runs renders on one thread and hands each caller the commit that covered its change."""

    def __init__(self, ctx: Context, *, gather: float = 0.0) -> None:
        self.ctx = ctx
        self.gather = gather
        self._lock = threading.Lock()
        self._next: _Round | None = None
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="render-batcher", daemon=True)

    def start(self) -> None:
        """Start the render thread."""
        self._thread.start()

    def stop(self) -> None:
        """Finish the round in progress, answer the waiters, and end the thread."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=60)

    def render(self, timeout: float = 120) -> str | None:
        """Block until a render that began after this call has committed; return its commit."""
        with self._lock:
            if self._next is None:
                self._next = _Round(threading.Event())
            round_ = self._next
        self._wake.set()
        if not round_.done.wait(timeout):
            raise TimeoutError("the render did not finish in time")
        if round_.error is not None:
            raise round_.error
        return round_.commit

    def _run(self) -> None:
        while True:
            self._wake.wait()
            # Optionally a moment for requests arriving together to join this round. By default
            # none: whoever arrives while a round runs joins the next, so rounds grow with load
            # and a lone request does not wait.
            if self.gather:
                time.sleep(self.gather)
            self._wake.clear()
            with self._lock:
                round_, self._next = self._next, None
            if round_ is None:
                if self._stopping:
                    return
                continue
            try:
                round_.commit = render_service.render(self.ctx).commit
            except BaseException as exc:  # handed to every waiter of this round
                round_.error = exc
            round_.done.set()
