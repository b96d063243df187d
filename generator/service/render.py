"""Render every live deployment into the GitOps repository and commit the difference.

Incremental by construction: each chart carries the record of its inputs, and a chart whose
record is byte-identical to the one it would get now is left alone, not even rendered. Charts
are compared with HEAD's tree and committed through one changeset: no file is written on the
way. `check` (its own module) instead re-renders and compares every byte (drift, hand edits).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .. import gitops
from ..chart_path import ChartPath
from ..charts import LEGACY_STATE_FILE, ChartSource, read_inputs
from ..config import REVIEW
from ..delivery import engines
from ..errors import MassDeletionRefused, UserError
from ..gitops import Changeset
from ..manifest import parse_stored
from ..render import PluginInput, Renderer, from_record
from ..store import deployments as store
from ..store import render_rows, render_state, unanswered
from ..store.db import Connection
from .context import Context
from .delivery import DeliveryFiles
from .render_result import ChartChange, RenderResult, commit_message
from .rows import render_input

Progress = Callable[[int, int], None]
log = logging.getLogger("overseer.render")


class Plugins:
    """Parsed plugins of one run, keyed by id and version."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], PluginInput] = {}

    def get(self, row: dict[str, Any]) -> PluginInput:
        """The parsed plugin of a row (as `iter_live_for_render` gives it)."""
        key = (row["plugin_id"], row["plugin_version"])
        plugin = self._cache.get(key)
        if plugin is None:
            manifest = parse_stored(row["manifest"], row["plugin_name"])
            plugin = PluginInput(row["plugin_name"], row["plugin_version"], manifest)
            self._cache[key] = plugin
        return plugin


def _live_paths(conn: Connection) -> set[str]:
    # One text value rather than a row per deployment: every render round of the server asks,
    # and 10,000 rows as dicts cost it 20 ms.
    row = conn.execute(
        "SELECT string_agg(d.namespace || '/' || d.deployment_id, E'\\n') AS paths "
        f"FROM deployments d WHERE {store.LIVE}"
    ).fetchone()
    paths = str(row["paths"] or "") if row else ""
    return set(paths.split("\n")) if paths else set()


def _removed_change(tree: ChartSource, path: str) -> ChartChange:
    data = read_inputs(tree, path)
    if data is not None:
        try:
            dep, plugin = from_record(data, path)
        except UserError:
            pass
        else:
            return ChartChange(path, dep.id, f"{plugin.name}@{plugin.version}")
    return ChartChange(path, "unknown", "unknown")


def render(
    ctx: Context,
    conn: Connection | None = None,
    *,
    force: bool = False,
    full: bool = False,
    progress: Progress | None = None,
    push: bool = True,
    answering: Sequence[str] = (),
    creates: Sequence[dict[str, Any]] = (),
) -> RenderResult:
    """Render and commit what changed, push it, record it; `conn` may hold the caller's changes.

    Four steps: work out what changed (against HEAD's tree, read from objects), commit it
    through one changeset, push it when a remote is set, and record the commit in the database.
    With `push` false the commit is left for the caller to push after the database commit (the
    server's writer, whose `Publisher` pushes beside the next rounds).

    `creates`: rows (their `store.insert_args`) that the render inserts in its own
    transaction, after its lock, and renders: a server's creates, stored and committed at once
    (`RenderResult.created` has those stored).
    """
    if conn is None:
        if ctx.settings.mode == REVIEW:
            with ctx.writer() as own:
                return render(ctx, own, force=force)
        # Not ctx.writer(): the database's lock is this render's first statement anyway, sent
        # with the reads that follow it (a server's round makes five round trips, not nine).
        with ctx.repo.lock(), ctx.transaction() as own:
            return render(
                ctx,
                own,
                force=force,
                full=full,
                progress=progress,
                push=push,
                answering=answering,
                creates=creates,
            )
    repo = ctx.repo
    if ctx.settings.mode == REVIEW:
        from . import review  # it builds on this module

        with repo.lock():
            return review.propose(ctx, conn, force=force)
    with repo.lock():  # re-entrant: callers inside ctx.writer() already hold it
        # One render at a time, whichever replica; then what the last one left, and what the
        # rows are now (taken before any row is read).
        # With nothing in doubt, the rows changed since the last render come in the same round
        # trip, read by the xmin it recorded for our HEAD; used only if the render is
        # incremental from that HEAD.
        head = repo.head()
        candidates = None
        if head is not None and not repo.in_doubt and not full:
            candidates = render_rows.changed_since_recorded(head)
        with conn.pipeline():  # one round trip: the lock, the reads, the creates' inserts
            loaded = render_state.queue_lock_and_load(conn, candidates)
            stored = store.insert_rendered(conn, creates) if creates else dict
        started, previous, fingerprint, rows = loaded()
        created = stored()
        _catch_up(ctx, conn, previous)
        prefetched = None
        # (With the state recorded for our HEAD, `_catch_up` has not moved it.)
        if rows is not None and previous is not None and previous["commit"] == head:
            prefetched = render_rows.changes_of(rows)
        result = _commit(
            ctx,
            conn,
            previous,
            fingerprint,
            force=force,
            full=full,
            progress=progress,
            prefetched=prefetched,
            created=list(created.values()),
        )
        result.created = created
        try:
            if push:
                _publish(ctx, result)
        except gitops.Diverged as exc:
            # The remote's main changed a chart we changed too (a hand edit, a replica whose
            # push we never saw). The database holds all of our changes: render them again on
            # the remote's main, and push that.
            log.warning("%s; rendering again on the remote's main", exc.message)
            gitops.reset_to_remote(repo)
            fingerprint = render_state.fingerprint(conn)
            result = _commit(
                ctx, conn, None, fingerprint, force=force, full=full, progress=progress
            )
            result.created = created  # rendered again with every other row
            _publish(ctx, result, again=True)
        head = result.head = repo.head()
        with conn.pipeline():  # the writes go out together: one round trip for all
            if result.state is not None and head is not None:
                on_remote = not ctx.settings.git_remote or not gitops.push_pending(repo)
                render_state.save(conn, head, result.state, pushed=on_remote, started=started)
            # The server's creates this round answers are marked in its own durable commit,
            # rather than in one more after it (`batch`): a row missing here is gone.
            marked = _note_rendered(ctx, conn, result, answering)
        result.answered = marked() if answering else None
    repo.reconciled = True  # the journal's paths are settled once this transaction commits
    return result


def follow_at_start(ctx: Context) -> None:
    """A server starting: its clone (a new pod's is empty) catches up with the remote's main.

    Before the start-up sweep, which judges by the clone whether a dead server's create reached
    main, and before the first render. Review mode fetches main when it proposes.
    """
    remote = ctx.settings.git_remote
    if not remote or ctx.settings.mode == REVIEW:
        return
    with ctx.repo.lock():
        try:
            gitops.follow_main(ctx.repo, remote)
        except UserError as exc:  # the render pushes what it can once the remote is back
            log.warning("%s; starting from the clone as it is", exc.message)


def reconcile_at_start(ctx: Context) -> RenderResult | None:
    """A server starting: render what the database holds onto the remote's main, and push it."""
    if not ctx.settings.git_remote or ctx.settings.mode == REVIEW:
        return None
    return render(ctx)


_PUSH_WAIT = 5.0  # seconds a render waits for another replica's push of the last commit


def _catch_up(ctx: Context, conn: Connection, previous: dict[str, Any] | None) -> None:
    """Start from the remote's main when another process or replica rendered since we did.

    The last render on this database recorded its commit. When that is not our HEAD, someone
    else committed it in their clone and pushed it: fetch it, and fast-forward to it, so this
    render carries on from that state incrementally. Without a remote, or when the fetch fails,
    the render compares every chart instead, which is slower and as correct.
    """
    remote = ctx.settings.git_remote
    if not remote or previous is None or previous.get("commit") == ctx.repo.head():
        return
    if not previous.get("pushed"):
        # Its replica answered and is pushing it now: wait a moment for it, rather than compare
        # every chart. One that died before pushing is waited for only this long.
        render_state.wait_pushed(conn, str(previous["commit"]), _PUSH_WAIT)
    try:
        gitops.follow_main(ctx.repo, remote)
    except UserError as exc:
        log.warning("%s; comparing every chart with the database instead", exc.message)


def _commit(
    ctx: Context,
    conn: Connection,
    previous: dict[str, Any] | None,
    fingerprint: render_state.Fingerprint,
    *,
    force: bool,
    full: bool,
    progress: Progress | None,
    prefetched: render_rows.Changes | None = None,
    created: Sequence[dict[str, Any]] = (),
) -> RenderResult:
    """Put every chart that changed into one changeset on HEAD and commit it.

    `prefetched`: the rows changed since the recorded state's xmin, when already read;
    `created`: rows this transaction inserted (which that read may not have seen).
    """
    repo = ctx.repo
    with repo.changes() as tx:
        result = _Pass(
            conn,
            tx,
            previous,
            fingerprint,
            full=full,
            progress=progress,
            in_doubt=repo.in_doubt,
            delivery=DeliveryFiles(ctx, conn),
            renderer=ctx.renderer,
            prefetched=prefetched,
            created=created,
        ).run(force=force)
        # Engine files can change with no chart (a delivery setting): they are committed too.
        if result.touched or tx.paths:
            result.commit = tx.commit(commit_message(result))
    if full and repo.mode == gitops.CHECKOUT:
        repo.worktree.sync(repo.head(), hard=True)  # a full render repairs hand edits too
    return result


def _publish(ctx: Context, result: RenderResult, *, again: bool = False) -> None:
    remote = ctx.settings.git_remote
    if not remote or (result.commit is None and not gitops.push_pending(ctx.repo)):
        return
    try:
        result.pushed = gitops.publish(ctx.repo, remote)
    except gitops.Diverged:
        if not again:
            raise  # the caller renders again on the remote's main
        result.push_error = "the remote's main moved twice during one render; the next one pushes"
        log.warning("%s", result.push_error)
    except UserError as exc:
        # The commit stands, and the database is about to say so: failing the render here
        # would roll back rows whose charts are committed. The next render retries.
        result.push_error = exc.message
        log.warning("%s; the commit stands, and the next render pushes it", exc.message)
    else:
        if result.commit is not None:
            result.commit = ctx.repo.head()  # a replay onto the remote gives it a new sha


def _note_rendered(
    ctx: Context, conn: Connection, result: RenderResult, answering: Sequence[str] = ()
) -> Callable[[], set[str]]:
    """Record the commit in the rows; what tells which of `answering` it marked answered.

    Call that once the pipeline these statements go in is over: reading it inside would cost a
    round trip of its own.
    """
    marked: Callable[[], set[str]] = set
    if result.commit is not None:
        paths = [c.path for c in (*result.added, *result.changed)]
        marked = render_rows.set_rendered(conn, paths, result.commit, answering)
    elif answering:  # nothing committed: the creates' charts were on the branch already
        found = unanswered.answered(conn, list(answering))
        marked = lambda: found  # noqa: E731 - read already
    # A row whose chart is committed but that never learnt so (the process died after the branch
    # moved, before the database committed) would never be applied: it points at HEAD now.
    if result.unrecorded:
        head = ctx.repo.head()
        if head is not None:
            render_rows.set_rendered(conn, result.unrecorded, head)
    return marked


def _state(
    fingerprint: render_state.Fingerprint, generator: dict[str, str], delivery: DeliveryFiles
) -> dict[str, Any]:
    return {
        "schema": 2,
        "generator": generator,
        # What the engine files are made from besides the rows: a change compares every chart.
        "delivery": [delivery.config.digest, sorted(delivery.namespaces)],
        "database": fingerprint.instance,
        "generation": fingerprint.generation,
        "xmin": fingerprint.xmin,
        "plugins": fingerprint.plugins,
    }


def _comparable(previous: dict[str, Any], current: dict[str, Any]) -> bool:
    # Trust the recorded generation only for the same database and the same templates, and only
    # if the database has not gone back below it (a restored backup, a copy of an older one).
    return (
        isinstance(previous.get("generation"), int)
        and previous["generation"] <= current["generation"]
        and isinstance(previous.get("xmin"), int)
        and isinstance(previous.get("plugins"), dict)
        and all(
            previous.get(k) == current[k] for k in ("schema", "generator", "database", "delivery")
        )
    )


class _Pass:
    """One walk over the rows to render, putting every chart that changed into the changeset."""

    def __init__(
        self,
        conn: Connection,
        tx: Changeset,
        previous: dict[str, Any] | None,
        fingerprint: render_state.Fingerprint,
        *,
        full: bool,
        progress: Progress | None,
        in_doubt: set[str],
        delivery: DeliveryFiles,
        renderer: Renderer,
        prefetched: render_rows.Changes | None = None,
        created: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.conn = conn
        self.fingerprint = fingerprint
        self.delivery = delivery
        # The last render's state, trusted only for the commit it describes (see `_comparable`).
        self.previous = previous if previous and previous.get("commit") == tx.base else None
        self.in_doubt = in_doubt
        self.prefetched = prefetched
        self.created = created
        self.tx = tx
        self.head = tx.snapshot
        self.full = full
        self.progress = progress
        self.renderer = renderer
        self.plugins = Plugins()
        self.result = RenderResult()

    def run(self, *, force: bool) -> RenderResult:
        """Fill the changeset; return what it changes (the commit is the caller's).

        Incremental when the state on HEAD was recorded for this database and these
        templates: only rows changed since its snapshot (by transaction id), of changed
        plugins, or in doubt after a crash are read, and only rows known to be gone are
        removed, so a round costs what changed, not what the repository holds. Otherwise
        every row is compared with every chart, and a chart with no live row is removed
        (unless that is most of them).
        """
        conn, result = self.conn, self.result
        state = _state(self.fingerprint, Renderer.generator(), self.delivery)
        previous = self.previous
        charts = self.head.chart_count()
        incremental = not self.full and previous is not None and _comparable(previous, state)
        if incremental and previous is not None:
            changes = (
                self.prefetched
                if self.prefetched is not None and not self.in_doubt
                else render_rows.changed_since(conn, int(previous["xmin"]), sorted(self.in_doubt))
            )
            upgraded = sorted(
                p for p, d in state["plugins"].items() if previous["plugins"].get(p) != d
            )
            # Rows this transaction inserted are new too, though no read of changed rows finds
            # them (`store.insert_rendered`).
            rows: Iterable[dict[str, Any]] = [*self.created, *changes.live]
            if upgraded:  # a plugin's new version: every deployment of it renders again
                rows = itertools.chain(
                    (r for r in rows if r["plugin_id"] not in upgraded),
                    render_rows.iter_live_for_render(conn, plugin_ids=upgraded),
                )
            removed = sorted(p for p in changes.gone if self.head.tree_of(p) is not None)
            total = charts
        else:
            existing = self.head.chart_paths()
            live = _live_paths(conn)
            removed = sorted(existing - live)
            # Charts of a changeset whose rows never committed (journaled) are known to be ours.
            unknown = (
                set(removed) - render_rows.gone_release_paths(conn) - self.in_doubt
                if removed
                else set()
            )
            if unknown and len(unknown) * 2 > len(existing) and not force:
                raise MassDeletionRefused(len(removed), len(existing))
            rows = render_rows.iter_live_for_render(conn)
            total = len(live)
        done = 0
        for done, row in enumerate(rows, start=1):
            self._one(row)
            if self.progress is not None and done % 250 == 0:
                self.progress(done, max(total, done))
        if self.progress is not None:
            self.progress(done, done)
        rows_of = (
            store.by_releases(conn, [ChartPath(p).release for p in removed]) if removed else {}
        )
        for path in removed:
            change = _removed_change(self.head, path)
            gone = rows_of.get(path)
            if gone is not None and gone.requested_by:
                change = dataclasses.replace(change, requested_by=gone.requested_by)
            result.removed.append(change)
            self.tx.remove(path)
            self.tx.remove(engines.release_dir(path))
        result.added.sort(key=lambda c: c.path)
        result.changed.sort(key=lambda c: c.path)
        result.unchanged = charts - len(result.changed) - len(result.removed)
        if (result.touched or self.full) and self.head.read_file(LEGACY_STATE_FILE) is not None:
            self.tx.remove(LEGACY_STATE_FILE)  # committed by earlier versions; see `render_state`
        if result.touched or not incremental:
            self._shared_engine_files(incremental=incremental)
        result.state = state
        return result

    def _shared_engine_files(self, *, incremental: bool) -> None:
        config = self.delivery.config
        for path, data in self.delivery.shared().items():
            self.tx.put_file(path, data)
        if not incremental:  # an engine turned off: its files go (a no-op when absent)
            if config.engine != "argocd":
                self.tx.remove(engines.ARGOCD_DIR)
            if config.engine != "flux":
                self.tx.remove(engines.FLUX_DIR)

    def _one(self, row: dict[str, Any]) -> None:
        plugin = self.plugins.get(row)
        dep = render_input(row, plugin.manifest, self.delivery.config)
        path = dep.chart_path
        inputs = self.renderer.inputs_record(dep, plugin)
        is_new = self.head.tree_of(path) is None
        before = None if is_new else read_inputs(self.head, path)
        where, flux = self.delivery.release(dep, self.head, before)
        if flux:
            self.tx.put(where, flux)
        if self.full or is_new or before != inputs:
            chart = self.renderer.render(dep, plugin, inputs)
            chart.update(self.delivery.ciphertext(dep, self.head, before))
            if self.tx.put(path, chart):
                change = ChartChange(
                    path, dep.id, f"{plugin.name}@{plugin.version}", row.get("requested_by")
                )
                (self.result.added if is_new else self.result.changed).append(change)
                return
        # On the branch already, and its row never told (or, in doubt after a crash, may name
        # an older commit: apply installs from the commit the row names).
        if row["rendered_commit"] is None or path in self.in_doubt:
            self.result.unrecorded.append(path)
