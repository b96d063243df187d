"""Render every live deployment into the GitOps repository and commit the difference.

Incremental by construction: each chart carries the record of its inputs, and a chart whose
record is byte-identical to the one it would get now is left alone, unread and unwritten.
`check` instead re-renders everything and compares every byte (drift and hand edits).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import MassDeletionRefused, UserError
from ..gitops import BlobPreloader, Edit
from ..manifest import parse_stored
from ..render import INPUTS_FILE, Chart, PluginInput, Renderer, dump_json, from_record
from ..store import deployments as store
from ..store.db import Connection
from ..write import STATE_FILE, ChartTree
from .context import Context
from .records import render_input

Progress = Callable[[int, int], None]
log = logging.getLogger("overseer.render")
# A render holds the charts it changes and commits them from memory (`GitOpsRepo.commit_edits`:
# in-process blobs and trees, then git writes the work tree) while that stays cheap. Memory
# bounds the count; and `git restore` compares every index entry (about 12 a chart) with every
# chart path named, so its cost grows as held charts × charts in the repository: 1,000 named in
# a 1,000-chart repository take 0.25 s, 2,000 in a 10,000-chart one 5 s. Past the limit, charts
# are written out on threads and staged through the index with pre-packed blobs.
_HOLD_MAX = 2000
_HOLD_BUDGET = 2_500_000  # held charts × charts in the repository


def _hold_limit(charts: int) -> int:
    return min(_HOLD_MAX, _HOLD_BUDGET // max(charts, 1))


@dataclass(frozen=True)
class ChartChange:
    """One chart added, changed or removed by a render."""

    path: str
    deployment_id: str
    plugin: str  # name@version


@dataclass
class RenderResult:
    """What a render did."""

    added: list[ChartChange] = field(default_factory=list)
    changed: list[ChartChange] = field(default_factory=list)
    removed: list[ChartChange] = field(default_factory=list)
    unchanged: int = 0
    commit: str | None = None
    pushed: str | None = None  # the remote ref pushed, when a remote is configured
    push_error: str | None = None  # why that push failed; the commit stands

    @property
    def touched(self) -> list[str]:
        """Chart paths written or removed."""
        return [c.path for c in (*self.added, *self.changed, *self.removed)]


@dataclass(frozen=True)
class Drift:
    """A chart that differs from a fresh render."""

    path: str
    reason: str


class _Plugins:
    """Parsed plugins of one run, keyed by id and version."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], PluginInput] = {}

    def get(self, row: dict[str, Any]) -> PluginInput:
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


def _removed_change(tree: ChartTree, path: str) -> ChartChange:
    data = tree.read_inputs(path)
    if data is not None:
        try:
            dep, plugin = from_record(data, path)
        except UserError:
            pass
        else:
            return ChartChange(path, dep.id, f"{plugin.name}@{plugin.version}")
    return ChartChange(path, "unknown", "unknown")


def commit_message(result: RenderResult) -> str:
    """Subject, one section per kind of change, and a trailer per deployment."""
    counts = (
        f"{len(result.added)} added, {len(result.changed)} changed, {len(result.removed)} removed"
    )
    lines = [f"overseer: render ({counts})", ""]
    trailers = []
    for title, changes in (
        ("Added", result.added),
        ("Changed", result.changed),
        ("Removed", result.removed),
    ):
        if not changes:
            continue
        lines.append(f"{title}:")
        for c in changes:
            lines.append(f"  {c.path} ({c.plugin})")
            trailers.append(f"Overseer-Deployment: {c.deployment_id} {c.path} {c.plugin}")
        lines.append("")
    return "\n".join(lines + trailers) + "\n"


def render(
    ctx: Context,
    conn: Connection | None = None,
    *,
    force: bool = False,
    full: bool = False,
    progress: Progress | None = None,
    defer_checkout: bool = False,
) -> RenderResult:
    """Render, write and commit; `conn` lets a caller include its own uncommitted changes.

    `defer_checkout` (for a caller holding the repository lock, see `GitOpsRepo.commit_edits`)
    returns once the commit and the database agree, before git writes the work tree.
    """
    if conn is None:
        with ctx.writer() as own:
            return render(
                ctx, own, force=force, full=full, progress=progress, defer_checkout=defer_checkout
            )
    repo = ctx.repo
    tree = ChartTree(ctx.settings.repo, repo.record)
    result = RenderResult()
    with repo.lock():  # re-entrant: callers inside ctx.writer() already hold it
        existing = tree.chart_paths(remove_leftovers=True)
        live = _live_paths(conn)
        removed = sorted(existing - live)
        unknown = set(removed) - store.gone_release_paths(conn) if removed else set()
        if unknown and len(unknown) * 2 > len(existing) and not force:
            raise MassDeletionRefused(len(removed), len(existing))
        fingerprint = store.fingerprint(conn)
        state = _state(fingerprint, Renderer.generator())
        previous = _load_state(tree.read_file(STATE_FILE))
        if not full and previous is not None and _comparable(previous, state):
            # Incremental: only rows changed since the last render, of changed plugins, or new.
            rows = store.iter_live_for_render(
                conn,
                since=int(previous["generation"]),
                plugin_ids=sorted(
                    p for p, d in state["plugins"].items() if previous["plugins"].get(p) != d
                ),
                paths=sorted(live - existing),
            )
        else:
            rows = store.iter_live_for_render(conn)
        # Many new files: pre-pack their blobs so `git add` writes no loose objects.
        limit = _hold_limit(len(live | existing))
        bulk = full or len(live - existing) > limit
        touched: list[str] = []
        try:
            with repo.preload() if bulk else contextlib.nullcontext() as preloader:
                held = _Pass(
                    tree, result, existing, full=full, progress=progress, preloader=preloader
                ).run(rows, len(live), hold_limit=limit)
            for path in removed:
                result.removed.append(_removed_change(tree, path))
                tree.remove_chart(path)
            result.unchanged = len(live) - len(result.added) - len(result.changed)
            touched = result.touched
            # The state only moves with a commit, so a render that changes nothing writes nothing.
            state_bytes = dump_json(state)
            if held is not None:
                if touched:
                    touched.append(STATE_FILE)
                    edits: dict[str, Edit] = {STATE_FILE: state_bytes, **held}
                    edits.update(dict.fromkeys(removed))
                    result.commit = repo.commit_edits(
                        edits, commit_message(result), defer_checkout=defer_checkout
                    )
            else:
                if touched and tree.write_file(STATE_FILE, state_bytes):
                    touched.append(STATE_FILE)
                result.commit = repo.commit(touched, commit_message(result))
        except BaseException:
            repo.restore(touched or result.touched)
            raise
        remote = ctx.settings.git_remote
        if remote and (result.commit is not None or repo.push_pending()):
            repo.finish_checkout()  # a rebase onto the remote's main needs the work tree at HEAD
            try:
                result.pushed = repo.publish(
                    remote, branch_per_change=ctx.settings.branch_per_change
                )
            except UserError as exc:
                # The commit stands, and the database is about to say so: failing the render
                # here would roll back rows whose charts are committed. The next render retries.
                result.push_error = exc.message
                log.warning("%s; the commit stands, and the next render pushes it", exc.message)
            else:
                if result.commit is not None:
                    result.commit = repo.head()  # a rebase onto the remote gives it a new sha
    if result.commit is not None:
        store.set_rendered(conn, [c.path for c in (*result.added, *result.changed)], result.commit)
    # A row whose chart is committed but that never learnt so (the process died after the branch
    # moved, before the database committed) would never be applied: it points at HEAD now.
    orphaned = store.unrendered_paths(conn) - set(result.touched)
    if orphaned:
        with repo.lock():
            landed = repo.committed(orphaned)
            head = repo.head()
        if landed and head is not None:
            store.set_rendered(conn, sorted(landed), head)
    return result


def _state(fingerprint: store.Fingerprint, generator: dict[str, str]) -> dict[str, Any]:
    return {
        "schema": 1,
        "generator": generator,
        "database": fingerprint.instance,
        "generation": fingerprint.generation,
        "plugins": fingerprint.plugins,
    }


def _load_state(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        loaded = json.loads(data)
    except ValueError:
        return None
    return loaded if isinstance(loaded, dict) else None


def _comparable(previous: dict[str, Any], current: dict[str, Any]) -> bool:
    # Trust the recorded generation only for the same database and the same templates.
    return (
        isinstance(previous.get("generation"), int)
        and isinstance(previous.get("plugins"), dict)
        and all(previous.get(k) == current[k] for k in ("schema", "generator", "database"))
    )


class _Pass:
    """One walk over the rows to render: renders what changed and hands it to the writer."""

    def __init__(
        self,
        tree: ChartTree,
        result: RenderResult,
        existing: set[str],
        *,
        full: bool,
        progress: Progress | None,
        preloader: BlobPreloader | None,
    ) -> None:
        self.tree = tree
        self.result = result
        self.existing = existing
        self.full = full
        self.progress = progress
        self.preloader = preloader
        self.renderer = Renderer()
        self.plugins = _Plugins()

    def run(
        self, rows: Iterable[dict[str, Any]], total: int, *, hold_limit: int
    ) -> dict[str, Chart] | None:
        """Render; return the changed charts if few enough to hold, else write them to disk."""
        # A full render must also repair hand edits of unchanged charts, which only a write does.
        hold = not self.full and self.preloader is None
        writer = _ChartWriter(
            self.tree, self.result, self.preloader, hold_limit=hold_limit if hold else None
        )
        try:
            for done, row in enumerate(rows, start=1):
                self._one(row, writer)
                if self.progress is not None and (done % 250 == 0 or done == total):
                    self.progress(done, total)
        finally:
            held = writer.finish()  # also on error: no write may still run when the caller restores
        return held

    def _one(self, row: dict[str, Any], writer: _ChartWriter) -> None:
        plugin = self.plugins.get(row)
        dep = render_input(row, plugin.manifest)
        path = dep.chart_path
        inputs = self.renderer.inputs_record(dep, plugin)
        is_new = path not in self.existing
        if not (self.full or is_new or self.tree.read_inputs(path) != inputs):
            return
        chart = self.renderer.render(dep, plugin, inputs)
        writer.submit(ChartChange(path, dep.id, f"{plugin.name}@{plugin.version}"), chart, is_new)


class _ChartWriter:
    """Holds a few charts for `commit_edits`, or writes many on a few threads.

    A render that changes few charts (a server's round, a single deployment) keeps them in
    memory: git then writes the work tree itself while checking out the new commit. Past
    `hold_limit` the held charts are written out and the rest follow straight to disk, on
    threads while the main thread renders the next ones: creating files mostly waits on the disk,
    outside the GIL. At most `window` charts are in flight, which bounds memory.
    """

    def __init__(
        self,
        tree: ChartTree,
        result: RenderResult,
        preloader: BlobPreloader | None,
        *,
        hold_limit: int | None,
        workers: int = 4,
        window: int = 64,
    ) -> None:
        self.tree = tree
        self.result = result
        self.preloader = preloader
        self.hold_limit = hold_limit or 0
        self.held: dict[str, Chart] | None = {} if hold_limit is not None else None
        self.workers = workers
        self.pool: ThreadPoolExecutor | None = None
        self.window = window
        self.pending: deque[Future[None]] = deque()
        self.lock = threading.Lock()

    def _record(self, change: ChartChange, is_new: bool) -> None:
        with self.lock:
            (self.result.added if is_new else self.result.changed).append(change)

    def _write(self, change: ChartChange, chart: Chart, is_new: bool) -> None:
        changed = self.tree.write_chart(change.path, chart)
        if self.preloader is not None:  # here, off the rendering thread
            for data in chart.values():
                self.preloader.add(data)
        if changed:
            self._record(change, is_new)

    def submit(self, change: ChartChange, chart: Chart, is_new: bool) -> None:
        """Hold or queue one chart; blocks while the window is full, re-raises a writer's error."""
        if self.held is not None:
            if is_new or self.tree.read_chart(change.path) != chart:
                self.held[change.path] = chart
                self._record(change, is_new)
            if len(self.held) <= self.hold_limit:
                return
            spill, self.held = self.held, None
            for path, held in spill.items():
                self.tree.write_chart(path, held)
            return
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="chart-writer")
        if len(self.pending) >= self.window:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._write, change, chart, is_new))

    def finish(self) -> dict[str, Chart] | None:
        """Wait for every write, re-raising the first error; return the charts still held.

        Results end up in path order.
        """
        errors: list[BaseException] = []
        while self.pending:
            error = self.pending.popleft().exception()
            if error is not None:
                errors.append(error)
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if errors:
            raise errors[0]
        self.result.added.sort(key=lambda c: c.path)
        self.result.changed.sort(key=lambda c: c.path)
        return self.held


def check(ctx: Context, *, offline: bool = False) -> list[Drift]:
    """Charts that differ from a fresh render (byte for byte), missing, or to be removed.

    Offline, each chart is re-rendered from its own inputs record, so no database is needed.
    """
    with ctx.settled_work_tree():  # a barrier: a render under way finishes the work tree
        pass
    tree = ChartTree(ctx.settings.repo)
    renderer = Renderer()
    present = tree.chart_paths()
    drifts: list[Drift] = []
    if offline:
        for path in sorted(present):
            data = tree.read_inputs(path)
            if data is None:
                drifts.append(Drift(path, f"no {INPUTS_FILE}; render it with Overseer"))
                continue
            dep, plugin = from_record(data, f"{path}/{INPUTS_FILE}")
            drifts += _compare(tree, path, renderer.render(dep, plugin))
        return drifts
    plugins = _Plugins()
    seen: set[str] = set()
    with ctx.transaction() as conn:
        for row in store.iter_live_for_render(conn):
            live = render_input(row, plugins.get(row).manifest)
            seen.add(live.chart_path)
            if live.chart_path not in present:
                drifts.append(Drift(live.chart_path, "missing; run `overseer render`"))
                continue
            drifts += _compare(tree, live.chart_path, renderer.render(live, plugins.get(row)))
    drifts += [
        Drift(p, "no live deployment; `overseer render` removes it") for p in sorted(present - seen)
    ]
    return sorted(drifts, key=lambda d: d.path)


def _compare(tree: ChartTree, path: str, expected: dict[str, bytes]) -> list[Drift]:
    actual = tree.read_chart(path)
    differing = sorted(
        name for name in expected.keys() | actual.keys() if expected.get(name) != actual.get(name)
    )
    if not differing:
        return []
    return [Drift(path, "differs: " + ", ".join(differing))]
