"""Group commit for a server: many requests, one render and one commit per round.

A request stores its row first, then asks for "a render that started after my row was
committed". One thread collects those requests into rounds; every request waiting when a round
starts is answered by it. Under load, a commit carries many deployments (which the trailers list
one by one) instead of each request waiting for its own turn at the repository lock.

The rounds themselves run in a writer process of their own. In the server's process they would
compete for the interpreter lock with every request thread: each time a round came back from the
database or from git it waited for the lock again, and a round that needs 5 ms of CPU took 15 to
60 ms (measured with 16 clients). In its own process a round takes the time it needs, on the
other core.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import psycopg

from ..config import REVIEW, Settings
from ..errors import DatabaseUnavailable, RenderFailed, UserError
from ..store import deployments as deployments_store
from ..store import unanswered
from ..store.db import first_line
from . import deployments as deployments_service
from . import render as render_service
from .context import Context
from .leader import Leadership
from .publisher import Publisher

log = logging.getLogger("overseer.render")
# A round's answer: its commit, the creates it marked answered (None: none), the rows it stored.
_Answer = tuple[str | None, list[str] | None, dict[str, dict[str, Any]]]
# What a stored create's row carries for the render, not for its answer (a plugin's manifest is
# kilobytes): left out of what goes back to the server, the sooner its answer is out.
_RENDER_ONLY = frozenset({"manifest", "plugin_name", "plugin_version", "live"})


@dataclass
class _Round:
    done: threading.Event
    commit: str | None = None
    error: BaseException | None = None
    # Callers waiting on an event loop rather than a thread: (loop, future, the create it
    # answers or "") to resolve.
    futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[str | None], str]] = field(
        default_factory=list
    )
    # Of the creates this round answers, rows the database no longer had when marked answered.
    lost: set[str] = field(default_factory=set)
    # Creates the round inserts itself (`deployments.prepare`), by id; and those it stored.
    creates: dict[str, dict[str, Any]] = field(default_factory=dict)
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def answering(self) -> list[str]:
        """Creates this round answers: their rows stand once it is committed (see `answers`).

        Not those it inserts itself (`creates`), which its own commit stores answered.
        """
        return [a for _, _, a in self.futures if a and a not in self.creates]

    def finish(self) -> None:
        self.done.set()
        for loop, future, answering in self.futures:
            loop.call_soon_threadsafe(self._resolve, future, answering)

    def _resolve(self, future: asyncio.Future[str | None], answering: str) -> None:
        if future.done():  # its caller gave up (a timeout, a closed connection)
            return
        if self.error is not None:
            future.set_exception(self.error)
        elif answering in self.lost:
            # Its insert, which did not wait for the disk, went with a crash of PostgreSQL
            # before the round: nothing was rendered for it, and it must not be told 201.
            future.set_exception(
                DatabaseUnavailable(
                    "the deployment's row is gone from the database (PostgreSQL restarted?); "
                    "nothing was deployed; retry"
                )
            )
        else:
            future.set_result(self.commit)


def _writer_main(settings: Settings, channel: Connection) -> None:
    """The writer process: one render per message, answered with its commit or its error."""
    ctx = Context(settings, pooled=True)
    # With a remote, replicas share main: one pushes beside the rounds, and one leads them.
    shared = bool(settings.git_remote) and settings.mode != REVIEW
    publisher = Publisher(ctx) if shared else None

    def one_round(answering: list[str], creates: list[dict[str, Any]]) -> _Answer:
        """The round's commit, the creates it marked answered (None: none), and those stored.

        `creates` are rows it inserts itself (`deployments.prepare`); `answering`, rows stored
        before it.
        """
        try:
            result = render_service.render(
                ctx, push=publisher is None, answering=answering, creates=creates
            )
        except (psycopg.DataError, psycopg.IntegrityError):
            if not creates:
                raise
            # A row the database refused fails the whole transaction: the round goes again
            # without the creates, which their requests then store themselves, each failing
            # alone if it must.
            result = render_service.render(ctx, push=publisher is None, answering=answering)
        if publisher is not None and result.head is not None:
            publisher.wake(result.head)  # committed in the database too, by now
        stored = {
            dep_id: {k: v for k, v in row.items() if k not in _RENDER_ONLY}
            for dep_id, row in result.created.items()
        }
        # None tells the server to mark `answering` itself: a round that did not (review mode
        # proposes rather than renders). Asked none, it marked none: nothing for the server.
        marked = sorted(result.answered) if result.answered is not None else None
        return result.commit, marked if answering else [], stored

    def insert_own(creates: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # As the server stores a create itself, its own to answer (`answers`): for the leading
        # replica's round, which renders what the database holds.
        with ctx.transaction() as conn:
            inserted = [deployments_store.insert(conn, args, durable=False) for args in creates]
        return {r.id: r.model_dump() for r in inserted if r is not None}

    def follow(answering: list[str], creates: list[dict[str, Any]]) -> _Answer:
        """The leader's round, which took our rows; or our own, if we lead by then."""
        assert leadership is not None  # noqa: S101 - only a replica follows
        own: dict[str, dict[str, Any]] = {}
        try:
            own = insert_own(creates)
            followed = leadership.follow()
            if followed is not None:
                # A follower marks nothing: the server marks its creates answered itself.
                return followed, None, own
            # Leading now: this round marks them, as the server's own creates.
            commit, marked, _ = one_round([*answering, *own], [])
        except BaseException:
            # Their requests fail: their rows go, unless a round committed their charts (as
            # the server does for the creates it stored itself).
            for dep_id in own:
                with contextlib.suppress(Exception):
                    deployments_service.discard(ctx, dep_id)
            raise
        return commit, marked, {i: r for i, r in own.items() if marked is None or i in marked}

    leadership = Leadership(ctx, lambda: one_round([], [])[0]) if shared else None
    if publisher is not None:
        publisher.start()
    frozen = False
    try:
        while True:
            try:
                answering, creates = channel.recv()
            except EOFError:  # the server is gone
                return
            try:
                if leadership is not None and not leadership.leading():
                    answer = follow(answering, creates)
                else:
                    answer = one_round(answering, creates)
                channel.send(("ok", *answer))
                if not frozen:
                    # What start-up and a first round built (modules, templates, the plugins)
                    # lives as long as the process: kept out of the collector's full passes,
                    # which then walk only what came since. They paused the writer, and the
                    # requests of its round, for 30 to 130 ms each at 10,000 charts; 2 to 3 ms
                    # now. Its garbage goes first: frozen, a cycle is never freed.
                    gc.collect()
                    gc.freeze()
                    frozen = True
            except UserError as exc:
                channel.send(("error", type(exc), exc.message, dict(vars(exc))))
            except psycopg.OperationalError as exc:  # the database went away mid-round: a 503
                message = (
                    f"the database connection failed during a render: {first_line(exc)}; retry"
                )
                gone = DatabaseUnavailable(message)
                channel.send(("error", DatabaseUnavailable, message, dict(vars(gone))))
            except Exception as exc:  # the server answers 500 for this round, and lives on
                log.exception("render round failed")
                channel.send(("error", None, f"the render failed: {exc!r}", {}))
    finally:
        if leadership is not None:
            leadership.stop()
        if publisher is not None:
            publisher.stop()
        ctx.close()


class _Writer:
    """The writer process and the pipe to it; started again if it dies."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._process: Any = None
        self._channel: Connection | None = None

    def render(
        self, answering: list[str], creates: list[dict[str, Any]]
    ) -> tuple[str | None, set[str] | None, dict[str, dict[str, Any]]]:
        """One render in the writer process, or its error raised here.

        Returns its commit, the creates of `answering` it marked answered (None: none), and the
        rows of `creates` it stored.
        """
        if self._channel is None or not self._process.is_alive():
            self._start()
        assert self._channel is not None  # noqa: S101 - started just above
        try:
            self._channel.send((answering, creates))
            answer = self._channel.recv()
        except (EOFError, OSError):
            self._channel = None  # it died (the OOM killer?): the next round starts another
            raise RenderFailed("the writer process died during a render; retry") from None
        if answer[0] == "ok":
            _, commit, marked, stored = answer
            return commit, set(marked) if marked is not None else None, stored
        _, kind, message, state = answer
        if kind is None:
            raise RenderFailed(message)
        # The same class with the same attributes (a validation's problems), so the API answers
        # as it would in-process; built without its own __init__, whose arguments vary.
        error = UserError.__new__(kind)
        Exception.__init__(error, message)
        error.__dict__.update(state)
        raise error

    def _start(self) -> None:
        # spawn, not fork: the server's threads (and their locks) must not be copied.
        spawn = multiprocessing.get_context("spawn")
        ours, theirs = spawn.Pipe()
        self._process = spawn.Process(
            target=_writer_main, args=(self.settings, theirs), name="overseer-writer", daemon=True
        )
        self._process.start()
        theirs.close()
        self._channel = ours

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()  # the writer sees EOF and ends
            self._process.join(timeout=30)
            self._channel = None


class RenderBatcher:
    """Collects render requests into rounds and hands each caller the commit that covered it."""

    def __init__(self, ctx: Context, *, gather: float = 0.0) -> None:
        self.ctx = ctx
        self.gather = gather
        self._lock = threading.Lock()
        self._next: _Round | None = None
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="render-batcher", daemon=True)
        self._answers = ThreadPoolExecutor(1, thread_name_prefix="render-answers")
        self._writer: _Writer | None = None

    def start(self) -> None:
        """Start the writer process and the thread that feeds it."""
        # The resolved database URL: the writer must not start an embedded server of its own.
        self._writer = _Writer(self.ctx.settings.with_(database_url=self.ctx.database_url))
        self._thread.start()

    def stop(self) -> None:
        """Finish the round in progress, answer the waiters, and end the thread and the writer."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=60)
        self._answers.shutdown(wait=True)
        if self._writer is not None:
            self._writer.stop()

    def render(self, timeout: float = 120) -> str | None:
        """Block until a render that began after this call has committed; return its commit."""
        round_ = self._join()
        if not round_.done.wait(timeout):
            raise TimeoutError("the render did not finish in time")
        if round_.error is not None:
            raise round_.error
        return round_.commit

    async def render_async(self, timeout: float = 120, *, answering: str = "") -> str | None:
        """`render` for a caller on an event loop: it waits without holding a thread.

        `answering` names a created deployment whose request the round answers: the round's
        own commit says so for all of them (or, for a follower's round, one statement of the
        server's right after it), before they are told.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()
        self._join(loop, future, answering)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError("the render did not finish in time") from None

    async def create_async(
        self, args: dict[str, Any], timeout: float = 120
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Have the next round insert a create's row (`deployments.prepare`) and render it.

        Returns the row as stored and the round's commit; no row when the round stored none (a
        release name taken meanwhile, the plugin changed): the caller creates it as usual.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()
        round_ = self._join(loop, future, args["id"], args)
        try:
            commit = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._withdraw(round_, args["id"])
            raise TimeoutError("the render did not finish in time") from None
        except asyncio.CancelledError:  # its client went away
            self._withdraw(round_, args["id"])
            raise
        return round_.stored.get(args["id"]), commit

    def _withdraw(self, round_: _Round, dep_id: str) -> None:
        # A create given up on before its round started is not stored: its caller was told it
        # failed. Once the round runs, its row and chart commit together or not at all, as a
        # create that stores its row itself and is discarded unless its chart was committed.
        with self._lock:
            if round_ is self._next:
                round_.creates.pop(dep_id, None)
                round_.futures = [f for f in round_.futures if f[2] != dep_id]

    def _join(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[str | None] | None = None,
        answering: str = "",
        create: dict[str, Any] | None = None,
    ) -> _Round:
        with self._lock:
            if self._next is None:
                self._next = _Round(threading.Event())
            round_ = self._next
            if loop is not None and future is not None:
                round_.futures.append((loop, future, answering))
            if create is not None:
                round_.creates[answering] = create
        self._wake.set()
        return round_

    def _run(self) -> None:
        assert self._writer is not None  # noqa: S101 - start() made it
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
            answering = round_.answering
            marked: set[str] | None = None
            try:
                round_.commit, marked, round_.stored = self._writer.render(
                    answering, list(round_.creates.values())
                )
            except BaseException as exc:  # handed to every waiter of this round
                round_.error = exc
            if round_.error is None and (answering or round_.stored) and marked is None:
                # A round that did not mark them (a follower's: the leader's round took the
                # rows) leaves it to a thread of its own: the next round starts in the writer
                # meanwhile, instead of waiting a round trip to the database (and this
                # process's busy interpreter lock) between every two rounds.
                self._answers.submit(self._answer, round_)
            else:
                if marked is not None:
                    round_.lost = set(answering) - marked
                round_.finish()

    def _answer(self, round_: _Round) -> None:
        try:
            with self.ctx.statements() as conn:
                answering = [*round_.answering, *round_.stored]  # a follower stored those
                stood = unanswered.answered(conn, answering)
            round_.lost = set(answering) - stood
        except BaseException as exc:  # committed, but not said to stand: the callers get a 503
            round_.error = exc
        round_.finish()
