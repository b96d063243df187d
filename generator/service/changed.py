"""Which charts a pull request's checks cover: those it changed, and every chart of a plugin it changed.

Charts changed between two commits come from comparing their trees in-process, two levels deep
(the charts), reading a few tree objects and starting no process, so a repository of 10,000
charts costs what its namespace trees cost to read. Edits not committed are not looked for:
finding them means a stat of every file (`git status` takes 0.5 to 1.2 s on 120,000 files, more
than the whole check may), and CI checks a clean clone. Locally, paths named on the command line
(a pre-commit hook passes the files it was given) map to the chart that holds each.

A chart whose record names another plugin version or manifest than it did at the base widens the
selection to every chart of that plugin: an upgrade is meant to reach them all, and a check that
covered only the charts the pull request happened to touch would pass a fleet half upgraded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..charts import ChartSource, read_inputs
from ..errors import UserError
from ..gitops.trees import TREE
from .context import Context


@dataclass(frozen=True)
class Selection:
    """The charts to check (`namespace/release`, sorted) and why they were chosen."""

    charts: list[str]
    base: str | None = None  # the commit they changed since, when chosen by --changed-since
    plugins: list[str] = field(default_factory=list)  # plugins whose change widened the choice


def _chart_of(parts: tuple[str, ...]) -> str | None:
    # `<namespace>/<release>/...`; names starting with "." are Overseer's or the forge's own.
    if len(parts) < 2 or any(p.startswith(".") for p in parts[:2]):
        return None
    return f"{parts[0]}/{parts[1]}"


def from_paths(root: Path, paths: Iterable[Path], present: set[str]) -> Selection:
    """The charts holding `paths` (files or directories, relative to the working directory).

    A namespace directory stands for its charts, the repository's root for all of them; a path
    in no chart (a README) selects nothing. A path outside `root` is a mistake and says so.
    """
    top = root.resolve()
    chosen: set[str] = set()
    for path in paths:
        absolute = path.resolve()
        try:
            parts = absolute.relative_to(top).parts
        except ValueError:
            raise UserError(
                f"{path}: not inside the GitOps repository {root}",
                hint="pass --repo with the repository that holds it",
            ) from None
        if not parts:
            chosen |= present
        elif len(parts) == 1 and not parts[0].startswith("."):
            chosen |= {c for c in present if c.split("/", 1)[0] == parts[0]}
        else:
            chart = _chart_of(parts)
            if chart is not None and chart in present:
                chosen.add(chart)
    return Selection(sorted(chosen))


def changed_since(ctx: Context, since: str, source: ChartSource, ref: str | None) -> Selection:
    """The charts of `source` whose trees differ between commits `since` and `ref` (or HEAD).

    Widened by plugin (see the module). `source` is what the check reads: that commit, or the
    repository's files.
    """
    root = ctx.settings.repo
    if not (root / ".git").exists():
        raise UserError(
            f"--changed-since {since}: {root} is not a Git repository",
            hint="pass --repo with the GitOps repository's clone",
        )
    repo = ctx.repo
    base = repo.head(since)
    if base is None:
        raise UserError(
            f"--changed-since {since}: no such commit in {root}",
            hint="fetch it first (a shallow clone lacks it; in GitHub Actions give "
            "actions/checkout `fetch-depth: 0`)",
        )
    head = repo.head(ref or "HEAD")
    objects = repo.objects
    base_tree, head_tree = repo.tree_of(base), repo.tree_of(head)
    present = source.chart_paths()
    changed: set[str] = set()
    for path, entry in objects.diff(base_tree, head_tree).items():
        parts = tuple(path.split("/"))
        if len(parts) == 1 and entry is not None and entry[0] == TREE:
            # A namespace new at this commit (or replacing a file): every chart in it.
            changed |= {c for c in present if c.split("/", 1)[0] == parts[0]}
        elif (chart := _chart_of(parts)) is not None:
            changed.add(chart)
    changed &= present  # a chart removed since has nothing left to check
    base_charts = repo.snapshot(base, base_tree)
    upgraded = sorted(
        {
            now[0]
            for chart in changed
            if (now := _plugin(read_inputs(source, chart))) is not None
            and (then := _plugin(read_inputs(base_charts, chart))) is not None
            and now[0] == then[0]
            and now != then
        }
    )
    if upgraded:
        wanted = set(upgraded)
        changed |= {
            c
            for c in present
            if (p := _plugin(read_inputs(source, c))) is not None and p[0] in wanted
        }
    return Selection(sorted(changed), base, upgraded)


def _plugin(record: bytes | None) -> tuple[str, str] | None:
    """(name, the plugin part as canonical JSON) of an inputs record; None when unreadable."""
    if record is None:
        return None
    try:
        plugin = json.loads(record)["plugin"]
        return str(plugin["name"]), json.dumps(plugin, sort_keys=True)
    except (ValueError, KeyError, TypeError):
        return None  # the check itself reports an unreadable record


def chart_dirs(root: Path, selection: Selection) -> list[Path]:
    """The directories of the selected charts under `root`."""
    return [root / c for c in selection.charts]
