"""The one wrapper around Helm: the pinned CLI, and the same engine in-process.

The in-process engine (the helm-python-sdk wheel, Helm v4's Go SDK behind a C ABI) lints and
renders a chart in about a millisecond, which is what makes validating thousands of charts
cheap. The CLI, pinned to the same Helm version, stays the way charts are applied.
"""

from __future__ import annotations

import json
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


@dataclass(frozen=True)
class Cluster:
    """Where releases go: a kubeconfig (None: helm's default) and how long to wait."""

    kubeconfig: Path | None
    timeout: str
    create_namespaces: bool = True

    def args(self) -> list[str]:
        """Flags every cluster-facing helm command takes."""
        return ["--kubeconfig", str(self.kubeconfig)] if self.kubeconfig else []


class HelmFailed(Exception):
    """A helm command failed; `reason` is helm's own message, trimmed."""

    def __init__(self, command: str, stderr: str) -> None:
        lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
        self.reason = (
            " ".join(ln.removeprefix("Error: ") for ln in lines[-3:]) or f"helm {command} failed"
        )
        super().__init__(self.reason)

    @property
    def pending(self) -> bool:
        """Whether the release is locked by an interrupted operation."""
        return "another operation" in self.reason and "in progress" in self.reason


def _json(proc: subprocess.CompletedProcess[str], command: str) -> Any:
    if proc.returncode != 0:
        raise HelmFailed(command, proc.stderr)
    return json.loads(proc.stdout or "null")


def upgrade_install(
    cluster: Cluster, release: str, chart: Path, namespace: str, values_file: Path
) -> dict[str, Any]:
    """`helm upgrade --install` with rollback on failure, wait and timeout; the release JSON."""
    proc = cli(
        "upgrade",
        "--install",
        release,
        str(chart),
        "--namespace",
        namespace,
        # Creating one needs a cluster-wide right; without it, a namespace that exists is used.
        *(["--create-namespace"] if cluster.create_namespaces else []),
        "--rollback-on-failure",
        "--wait=watcher",
        "--timeout",
        cluster.timeout,
        "--values",
        str(values_file),
        "--output",
        "json",
        *cluster.args(),
        timeout=_seconds(cluster.timeout) + 120,
    )
    result: dict[str, Any] = _json(proc, "upgrade")
    return result


def status(cluster: Cluster, release: str, namespace: str) -> dict[str, Any] | None:
    """The release's status JSON, or None when there is no such release."""
    proc = cli("status", release, "--namespace", namespace, "--output", "json", *cluster.args())
    if proc.returncode != 0 and "not found" in proc.stderr:
        return None
    result: dict[str, Any] = _json(proc, "status")
    return result


def history(cluster: Cluster, release: str, namespace: str) -> list[dict[str, Any]]:
    """Every stored revision of the release, oldest first."""
    proc = cli("history", release, "--namespace", namespace, "--output", "json", *cluster.args())
    if proc.returncode != 0 and "not found" in proc.stderr:
        return []
    result: list[dict[str, Any]] = _json(proc, "history")
    return result


def rollback(cluster: Cluster, release: str, namespace: str, revision: int) -> None:
    """Roll back to `revision` and wait for it."""
    proc = cli(
        "rollback",
        release,
        str(revision),
        "--namespace",
        namespace,
        "--wait=watcher",
        "--timeout",
        cluster.timeout,
        *cluster.args(),
        timeout=_seconds(cluster.timeout) + 120,
    )
    if proc.returncode != 0:
        raise HelmFailed("rollback", proc.stderr)


def uninstall(cluster: Cluster, release: str, namespace: str) -> bool:
    """Uninstall and wait for the objects to go; False when the release did not exist."""
    proc = cli(
        "uninstall",
        release,
        "--namespace",
        namespace,
        "--wait",
        "--timeout",
        cluster.timeout,
        *cluster.args(),
        timeout=_seconds(cluster.timeout) + 120,
    )
    if proc.returncode != 0:
        if "not found" in proc.stderr:
            return False
        raise HelmFailed("uninstall", proc.stderr)
    return True


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    total, number = 0.0, ""
    for ch in duration:
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number:
            total += float(number) * units[ch]
            number = ""
    return total + (float(number) if number else 0)


def manifest(cluster: Cluster, release: str, namespace: str) -> str | None:
    """The manifests of the release's current revision, or None when there is no such release."""
    proc = cli("get", "manifest", release, "--namespace", namespace, *cluster.args())
    if proc.returncode != 0:
        if "not found" in proc.stderr:
            return None
        raise HelmFailed("get manifest", proc.stderr)
    return proc.stdout
