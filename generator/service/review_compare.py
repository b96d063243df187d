"""What a review round proposes: the charts whose branch must say other than main.

Each live deployment's chart is rendered and compared with main's; the ones that differ become
proposals, with their Flux files beside them. The charts main holds as they should be are
returned too, so the engine files they need can be proposed on their own (`engine_proposal`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from ..chart_path import ChartPath
from ..charts import read_inputs
from ..delivery.engines import release_dir
from ..errors import MassDeletionRefused, UserError
from ..gitops import Snapshot
from ..gitops.objects import ObjectStore
from ..render import Chart, DeploymentInput, Renderer
from ..store import deployments as store
from ..store import render_rows
from ..store.db import Connection
from ..store.deployments import DeploymentRecord
from ..store.proposals import ProposalRecord
from . import engine_proposal
from .context import Context
from .delivery import DeliveryFiles
from .render import Plugins
from .rows import render_input

log = logging.getLogger("overseer.review")


@dataclass
class Wanted:
    """A chart whose branch must say something other than main: its new files, or None (removal)."""

    path: str
    record: DeploymentRecord
    chart: Chart | None
    plugin: str
    # Its Flux files (`service.delivery`): directories, None when removed. The files no one
    # chart owns have a pull request of their own (`engine_proposal`).
    beside: tuple[tuple[str, Chart | None], ...] = ()


def compare(
    ctx: Context,
    conn: Connection,
    snap: Snapshot,
    active: Mapping[str, ProposalRecord],
    *,
    force: bool,
) -> tuple[list[Wanted], list[str], engine_proposal.Changes]:
    """Charts that differ from main, those that match, and the engine files main lacks."""
    renderer, plugins = Renderer(), Plugins()
    delivery = DeliveryFiles(ctx, conn)
    changed: list[tuple[ChartPath, Chart, str, tuple[tuple[str, Chart | None], ...]]] = []
    in_sync: list[str] = []
    synced: list[tuple[DeploymentInput, bytes | None]] = []
    live: set[str] = set()
    for row in render_rows.iter_live_for_render(conn):
        plugin = plugins.get(row)
        dep = render_input(row, plugin.manifest, ctx.delivery)
        live.add(dep.chart_path)
        inputs = renderer.inputs_record(dep, plugin)
        before = read_inputs(snap, dep.chart_path)
        if before == inputs:
            in_sync.append(dep.chart_path)
            synced.append((dep, before))
            continue
        chart = renderer.render(dep, plugin, inputs)
        # Ciphertext is kept from where it was last made: main, or the open pull request's
        # branch (made again each round, it would push the branch anew every time).
        base = _branch(ctx, active.get(str(row["id"])), dep.chart_path) or snap
        made = read_inputs(base, dep.chart_path) if base is not snap else before
        chart.update(delivery.ciphertext(dep, base, made))
        if snap.tree_of(dep.chart_path) is not None and snap.read_chart(dep.chart_path) == chart:
            in_sync.append(dep.chart_path)
            synced.append((dep, before))
            continue
        where, flux = delivery.release(dep, base, made)
        beside = ((where, flux),) if flux else ()
        changed.append((dep.chart_path, chart, f"{plugin.name}@{plugin.version}", beside))
    on_main = snap.chart_paths()
    removed = sorted(on_main - live)
    # The rows of both, in one query.
    releases = [c[0].release for c in changed] + [ChartPath(p).release for p in removed]
    rows = store.by_releases(conn, releases)
    wanted = [
        Wanted(path, rows[path], chart, plugin, beside) for path, chart, plugin, beside in changed
    ]
    known = [p for p in removed if p in rows]
    if len(known) * 2 > len(on_main) and len(known) > 1 and not force:
        raise MassDeletionRefused(len(known), len(on_main))
    for path in removed:
        if path not in rows:
            log.warning("%s is on main but no deployment knows it; remove it by hand", path)
            continue
        wanted.append(Wanted(path, rows[path], None, "-", ((release_dir(path), None),)))
    return wanted, in_sync, engine_proposal.changes(delivery, snap, synced)


def _branch(ctx: Context, prop: ProposalRecord | None, path: str) -> Snapshot | None:
    """The open proposal's branch commit, when this clone has it and it holds the chart."""
    if prop is None or prop.state != "open" or not prop.head_commit:
        return None
    try:
        branch = ctx.repo.snapshot(prop.head_commit)
    except (UserError, OSError, ValueError):  # made by another replica; main serves instead
        return None
    return branch if branch.tree_of(path) is not None else None


def fingerprint(objects: ObjectStore, want: Wanted) -> str:
    """What the branch proposes: the chart's tree ('' for its removal), and its Flux files."""
    tree = objects.directory(want.chart).hex() if want.chart is not None else ""
    if not want.beside:
        return tree
    parts = [tree] + [
        f"{where}:{objects.directory(files).hex() if files else '-'}"
        for where, files in want.beside
    ]
    return hashlib.sha1("\n".join(parts).encode(), usedforsecurity=False).hexdigest()
