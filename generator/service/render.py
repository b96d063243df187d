"""Render every live deployment into the GitOps repository and commit the difference.

Incremental by construction: each chart carries the record of its inputs, and a chart whose
record is byte-identical to the one it would get now is left alone, unread and unwritten.
`check` instead re-renders everything and compares every byte (drift and hand edits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import MassDeletionRefused, UserError
from ..manifest import parse_stored
from ..render import INPUTS_FILE, PluginInput, Renderer, dump_json, from_record
from ..render.inputs import record
from ..store import deployments as store
from ..store.db import Connection
from ..write import ChartTree
from .context import Context
from .records import render_input

Progress = Callable[[int, int], None]


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
    rows = conn.execute(
        f"SELECT d.namespace, d.deployment_id FROM deployments d WHERE {store.LIVE}"
    ).fetchall()
    return {f"{r['namespace']}/{r['deployment_id']}" for r in rows}


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
) -> RenderResult:
    """Render, write and commit; `conn` lets a caller include its own uncommitted changes."""
    if conn is None:
        with ctx.writer() as own:
            return render(ctx, own, force=force, full=full, progress=progress)
    repo = ctx.repo
    tree = ChartTree(ctx.settings.repo)
    result = RenderResult()
    with repo.lock():  # re-entrant: callers inside ctx.writer() already hold it
        existing = tree.chart_paths()
        live = _live_paths(conn)
        removed = sorted(existing - live)
        unknown = set(removed) - store.gone_release_paths(conn)
        if unknown and len(unknown) * 2 > len(existing) and not force:
            raise MassDeletionRefused(len(removed), len(existing))
        try:
            _write(conn, tree, result, existing, len(live), full, progress)
            for path in removed:
                result.removed.append(_removed_change(tree, path))
                tree.remove_chart(path)
            result.commit = repo.commit(result.touched, commit_message(result))
        except BaseException:
            repo.restore(result.touched)
            raise
    if result.commit is not None:
        store.set_rendered(conn, [c.path for c in (*result.added, *result.changed)], result.commit)
    return result


def _write(
    conn: Connection,
    tree: ChartTree,
    result: RenderResult,
    existing: set[str],
    total: int,
    full: bool,
    progress: Progress | None,
) -> None:
    renderer = Renderer()
    plugins = _Plugins()
    generator = renderer.templates.generator
    for done, row in enumerate(store.iter_live_for_render(conn), start=1):
        dep = render_input(row)
        plugin = plugins.get(row)
        path = dep.chart_path
        inputs = dump_json(record(dep, plugin, generator))
        is_new = path not in existing
        if not full and not is_new and tree.read_inputs(path) == inputs:
            result.unchanged += 1
        else:
            chart = renderer.render(dep, plugin)
            change = ChartChange(path, dep.id, f"{plugin.name}@{plugin.version}")
            if tree.write_chart(path, chart):
                (result.added if is_new else result.changed).append(change)
            else:
                result.unchanged += 1
        if progress is not None and (done % 250 == 0 or done == total):
            progress(done, total)


def check(ctx: Context, *, offline: bool = False) -> list[Drift]:
    """Charts that differ from a fresh render (byte for byte), missing, or to be removed.

    Offline, each chart is re-rendered from its own inputs record, so no database is needed.
    """
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
            live = render_input(row)
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
