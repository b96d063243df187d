"""What a change does to a chart, shown as a reviewer wants it: the chart's files and the manifests.

Two diffs per chart: the files of the chart (unified, as `git diff` shows them), and the manifests
`helm template` renders from each side, as helm-diff shows a release. Secret values never appear:
they are not in a chart, and where a template needs one it gets `<redacted>`. A cluster's live
manifest is compared the same way, with every Secret's data redacted first.
"""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..chart_path import ChartPath
from ..delivery.secrets import carry_ciphertext
from ..errors import UserError
from ..render import INPUTS_FILE, Chart, Renderer
from ..store import deployments as store
from ..store import render_rows
from ..store.db import Connection
from ..tools import helm
from ..validate import placeholder_values
from .check import fresh_charts
from .context import Context
from .render import Plugins
from .rows import render_input

REDACTED = "<redacted>"


@dataclass(frozen=True)
class ChartDiff:
    """One chart's change: added, changed or removed, with its two diffs."""

    path: str  # namespace/release
    action: str  # added, changed, removed
    files: str  # unified diff of the chart's files
    manifests: str  # unified diff of `helm template` output

    def as_dict(self) -> dict[str, str]:
        """For `-o json`."""
        return {
            "chart": self.path,
            "action": self.action,
            "files": self.files,
            "manifests": self.manifests,
        }


_FIRST = {"values.yaml": 0, "Chart.yaml": 1}


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8", errors="replace").splitlines(keepends=True)


def files_diff(path: str, old: Mapping[str, bytes], new: Mapping[str, bytes]) -> str:
    """A unified diff of every file that differs, `a/<path>/<file>` against `b/<path>/<file>`."""
    out: list[str] = []
    # What differs between deployments first: a long diff is cut in a pull request's body, and
    # the shared templates are what a reviewer needs least.
    for name in sorted(old.keys() | new.keys(), key=lambda n: (_FIRST.get(n, len(_FIRST)), n)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        out += difflib.unified_diff(
            _lines(before or b""),
            _lines(after or b""),
            f"a/{path}/{name}" if before is not None else "/dev/null",
            f"b/{path}/{name}" if after is not None else "/dev/null",
        )
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def template(chart: Mapping[str, bytes], path: str, secret_revision: str = "") -> str:
    """`helm template` of a chart's files, with `<redacted>` for every secret it needs."""
    namespace, release = ChartPath(path).namespace, ChartPath(path).release
    with tempfile.TemporaryDirectory(prefix="overseer-diff-") as tmp:
        root = Path(tmp) / release
        for name, data in chart.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        values: dict[str, Any] = placeholder_values(root)
        if values:
            values = {"secretEnv": dict.fromkeys(values["secretEnv"], REDACTED)}
        if secret_revision:  # as apply passes it, so a live diff does not show it as a change
            values["secretRevision"] = secret_revision
        return helm.template(root, values, release=release, namespace=namespace)


def redact_secrets(manifests: str) -> str:
    """The objects of a YAML stream, each Secret's data replaced by `<redacted>`, in a stable order.

    Hooks (`helm test` pods) are left out: a release's manifest does not hold them either.
    """
    docs: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(manifests):
        if not isinstance(doc, dict):
            continue
        if "helm.sh/hook" in (doc.get("metadata", {}).get("annotations") or {}):
            continue
        if doc.get("kind") == "Secret":
            for key in ("data", "stringData"):
                if isinstance(doc.get(key), dict):
                    doc[key] = dict.fromkeys(doc[key], REDACTED)
        docs.append(doc)
    docs.sort(key=lambda d: (str(d.get("kind")), str(d.get("metadata", {}).get("name"))))
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=True) for d in docs)


def text_diff(before: str, after: str, a: str, b: str) -> str:
    """A unified diff of two texts."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), a, b
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def chart_diff(path: str, old: Chart | None, new: Chart | None) -> ChartDiff:
    """Both diffs of one chart between two versions (None: absent on that side)."""
    action = "added" if old is None else "removed" if new is None else "changed"
    before = redact_secrets(template(old, path)) if old else ""
    after = redact_secrets(template(new, path)) if new else ""
    return ChartDiff(
        path,
        action,
        files_diff(path, old or {}, new or {}),
        text_diff(before, after, f"a/{path} (helm template)", f"b/{path} (helm template)"),
    )


def pending(ctx: Context) -> list[ChartDiff]:
    """What a full render would change now: every live deployment against the base's chart.

    The base is HEAD (in review mode, the remote's main as last fetched). Nothing is written.
    A hand edit shows too, as `render --check` reports it and `render --full` overwrites it.
    """
    base = ctx.snapshot("HEAD") if ctx.repo.head() else None
    present = base.chart_paths() if base else set()
    out: list[ChartDiff] = []
    seen: set[str] = set()
    for path, new in fresh_charts(ctx):
        seen.add(path)
        old = base.read_chart(path) if base and path in present else None
        if old != new:
            out.append(chart_diff(path, old, new))
    for path in sorted(present - seen):
        assert base is not None  # noqa: S101 - present is empty without a base
        out.append(chart_diff(path, base.read_chart(path), None))
    return sorted(out, key=lambda d: d.path)


def preview(ctx: Context, conn: Connection, dep_id: str) -> list[ChartDiff]:
    """What committing one deployment's row, as `conn` sees it, would change (a dry run)."""
    base = ctx.snapshot("HEAD") if ctx.repo.head() else None
    record = store.get(conn, dep_id)
    assert record is not None  # noqa: S101 - the caller's row
    path = record.chart_path
    old = base.read_chart(path) if base and base.tree_of(path) is not None else None
    rows = list(render_rows.iter_live_for_render(conn, ids=[dep_id]))
    new = None
    if rows:
        plugin = Plugins().get(rows[0])
        new = Renderer().render(render_input(rows[0], plugin.manifest, ctx.delivery), plugin)
        # Encrypted files are made at commit time; the preview shows the committed ones.
        carry_ciphertext(new, old or {}, INPUTS_FILE)
    return [] if old == new else [chart_diff(path, old, new)]


def between(ctx: Context, old_ref: str, new_ref: str) -> list[ChartDiff]:
    """The charts that differ between two commits."""
    old, new = ctx.snapshot(old_ref), ctx.snapshot(new_ref)
    paths = ctx.repo.objects.diff(ctx.repo.tree_of(old.commit), ctx.repo.tree_of(new.commit))
    charts = sorted({"/".join(p.split("/")[:2]) for p in paths if not p.startswith(".")})
    return [
        chart_diff(
            p,
            old.read_chart(p) if old.tree_of(p) is not None else None,
            new.read_chart(p) if new.tree_of(p) is not None else None,
        )
        for p in charts
        if "/" in p
    ]


def live(ctx: Context, idents: Sequence[str] = ()) -> list[ChartDiff]:
    """Each applied release's manifest in the cluster against its chart on main, helm-diff style."""
    from .apply import cluster, source  # apply builds on render, as this module does

    commit = source(ctx)
    snap = ctx.repo.snapshot(commit) if commit else None
    with ctx.transaction() as conn:
        records = [
            r
            for r in store.apply_candidates(conn, list(idents))
            if r.helm_revision is not None or idents
        ]
    out = []
    for r in records:
        path = r.chart_path
        chart = snap.read_chart(path) if snap and snap.tree_of(path) is not None else None
        try:
            running = helm.manifest(cluster(ctx), r.deployment_id, r.namespace)
        except helm.HelmFailed as exc:
            raise UserError(
                f"could not read release {r.deployment_id} from the cluster: {exc.reason}",
                hint="check OVERSEER_KUBECONFIG (or KUBECONFIG)",
                api_hint="check the server's cluster settings",
            ) from None
        want = (
            redact_secrets(template(chart, path, r.applied_secret_revision or "")) if chart else ""
        )
        have = redact_secrets(running) if running else ""
        text = text_diff(have, want, f"{path} (in the cluster)", f"{path} (on main)")
        if text:
            action = "missing" if running is None else "removed" if chart is None else "drifted"
            out.append(ChartDiff(path, action, "", text))
    return out
