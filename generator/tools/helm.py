"""The one wrapper around Helm: the pinned CLI, and the same engine in-process.

The in-process engine (the helm-python-sdk wheel, Helm v4's Go SDK behind a C ABI) lints and
renders a chart in about a millisecond, which is what makes validating thousands of charts
cheap. The CLI, pinned to the same Helm version, stays the way charts are applied.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .binaries import find

_WARNING = 2


@dataclass(frozen=True)
class LintFinding:
    """One `helm lint` message at warning level or above."""

    path: str
    message: str


def lint(chart: Path, values: dict[str, Any], *, strict: bool = True) -> list[LintFinding]:
    """Lint in-process; with `strict`, warnings count as failures (as `helm lint --strict`)."""
    import helm_python

    report = helm_python.lint(str(chart), values or None, strict=strict)
    floor = _WARNING if strict else _WARNING + 1
    findings = [
        LintFinding(m.get("path", ""), m.get("error", ""))
        for m in report.get("messages", [])
        if int(m.get("severity", 0)) >= floor
    ]
    findings += [LintFinding("", e) for e in report.get("errors", []) if e]
    return findings


def template(chart: Path, values: dict[str, Any], *, release: str, namespace: str) -> str:
    """Render in-process, as `helm template` does: the manifests as one YAML stream."""
    import helm_python

    with helm_python.Chart.load(str(chart)) as loaded:
        rendered = loaded.render(values or None, name=release, namespace=namespace, is_install=True)
    docs = []
    for path in sorted(rendered):
        text = rendered[path]
        if not path.endswith((".yaml", ".yml")) or not text.strip():
            continue
        docs.append(f"---\n# Source: {path}\n{text.strip()}\n")
    return "".join(docs)


def cli(
    *args: str, input_text: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the helm CLI; the caller interprets the exit code."""
    return subprocess.run(
        [find("helm"), *args],
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
