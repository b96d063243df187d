"""What a change does to a chart, shown as a reviewer wants it: the chart's files and the manifests.

Two diffs per chart: the files of the chart (unified, as `git diff` shows them), and the manifests
`helm template` renders from each side, as helm-diff shows a release. Secret values never appear:
they are not in a chart, and where a template needs one it gets `<redacted>`. A cluster's live
manifest is compared the same way, with every Secret's data redacted first.
"""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..render import Chart
from ..tools import helm
from ..validate import placeholder_values

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


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8", errors="replace").splitlines(keepends=True)


def files_diff(path: str, old: Mapping[str, bytes], new: Mapping[str, bytes]) -> str:
    """A unified diff of every file that differs, `a/<path>/<file>` against `b/<path>/<file>`."""
    out: list[str] = []
    for name in sorted(old.keys() | new.keys()):
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


def template(chart: Mapping[str, bytes], path: str) -> str:
    """`helm template` of a chart's files, with `<redacted>` for every secret it needs."""
    namespace, release = path.split("/", 1)
    with tempfile.TemporaryDirectory(prefix="overseer-diff-") as tmp:
        root = Path(tmp) / release
        for name, data in chart.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        values = placeholder_values(root)
        if values:
            values = {"secretEnv": dict.fromkeys(values["secretEnv"], REDACTED)}
        return helm.template(root, values, release=release, namespace=namespace)


def redact_secrets(manifests: str) -> str:
    """The same YAML stream with the data of every Secret replaced by `<redacted>`."""
    docs = []
    for doc in yaml.safe_load_all(manifests):
        if isinstance(doc, dict) and doc.get("kind") == "Secret":
            for key in ("data", "stringData"):
                if isinstance(doc.get(key), dict):
                    doc[key] = dict.fromkeys(doc[key], REDACTED)
        if doc is not None:
            docs.append(doc)
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
