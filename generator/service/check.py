"""Drift: the charts of a source compared byte for byte with a fresh render of them.

Online, the fresh render comes from the database's live rows; offline, from each chart's own
inputs record, so a CI job with no database checks a pull request the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..charts import ChartSource
from ..delivery.secrets import carry_ciphertext
from ..errors import UserError
from ..render import INPUTS_FILE, Chart, Renderer, from_record
from ..store import render_rows
from .context import Context
from .render import Plugins
from .rows import render_input
from .verified import NAME as VERIFIED
from .verified import VerifiedCharts, chart_digest


@dataclass(frozen=True)
class Drift:
    """A chart that differs from a fresh render."""

    path: str
    reason: str
    files: tuple[str, ...] = ()  # the chart's files it is about, relative to the chart


def check(
    ctx: Context,
    source: ChartSource,
    *,
    offline: bool = False,
    only: Collection[str] | None = None,
) -> list[Drift]:
    """Charts of `source` that differ from a fresh render (byte for byte), missing, or extra.

    Offline, each chart is re-rendered from its own inputs record, so no database is needed;
    a chart whose record is missing or unreadable is reported, not raised, so one broken chart
    does not hide the others. `only` limits the check to those chart paths.
    """
    renderer = Renderer()
    present = source.chart_paths()
    wanted = present if only is None else present & set(only)
    drifts: list[Drift] = []
    if offline:
        # Charts proved clean before, byte for byte, by this generator are not rendered again
        # (see `verified` for why that is sound).
        verified = VerifiedCharts(_verified_path(ctx))
        for path in sorted(wanted):
            actual = source.read_chart(path)
            digest = chart_digest(actual)
            if verified.clean(digest):
                continue
            data = actual.get(INPUTS_FILE)
            if data is None:
                drifts.append(
                    Drift(path, f"no {INPUTS_FILE}; render it with Overseer", (INPUTS_FILE,))
                )
                continue
            try:
                dep, plugin = from_record(data, f"{path}/{INPUTS_FILE}")
            except UserError as exc:
                drifts.append(Drift(path, exc.message, (INPUTS_FILE,)))
                continue
            found = _differences(path, renderer.render(dep, plugin), actual)
            drifts += found
            if not found:
                verified.add(digest)
        verified.save(complete=only is None)
        return drifts
    seen: set[str] = set()
    for path, chart in fresh_charts(ctx, only):
        seen.add(path)
        if path not in present:
            drifts.append(Drift(path, "missing; run `overseer render`"))
            continue
        drifts += _compare(source, path, chart)
    drifts += [
        Drift(p, "no live deployment; `overseer render` removes it") for p in sorted(wanted - seen)
    ]
    return sorted(drifts, key=lambda d: d.path)


def fresh_charts(ctx: Context, only: Collection[str] | None = None) -> Iterator[tuple[str, Chart]]:
    """Every live deployment's chart path and files (of `only`, when given), rendered now."""
    renderer, plugins = Renderer(), Plugins()
    with ctx.transaction() as conn:
        for row in render_rows.iter_live_for_render(conn):
            plugin = plugins.get(row)
            dep = render_input(row, plugin.manifest, ctx.delivery)
            if only is None or dep.chart_path in only:  # the selection alone is rendered
                yield dep.chart_path, renderer.render(dep, plugin)


def _verified_path(ctx: Context) -> Path | None:
    # In the Git directory, beside the render state; a work tree's .git file (a linked work
    # tree, a submodule) or a plain directory gets no cache.
    git_dir = ctx.settings.repo / ".git"
    return git_dir / VERIFIED if git_dir.is_dir() else None


def _compare(source: ChartSource, path: str, expected: dict[str, bytes]) -> list[Drift]:
    return _differences(path, expected, source.read_chart(path))


def _differences(path: str, expected: Chart, actual: Chart) -> list[Drift]:
    carry_ciphertext(expected, actual, INPUTS_FILE)
    differing = sorted(
        name for name in expected.keys() | actual.keys() if expected.get(name) != actual.get(name)
    )
    if not differing:
        return []
    return [Drift(path, "differs: " + ", ".join(differing), tuple(differing))]
