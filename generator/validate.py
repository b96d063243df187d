"""Validate rendered charts: helm lint, kubeconform, and kube-score's production checks.

`helm lint --strict`, then `helm template | kubeconform -strict`, then kube-score.
Lint and template run in-process through the Helm engine (one call per chart, a few ms each);
all rendered manifests then go through a single kubeconform process and a single kube-score
process. The naive loop (three processes per chart) is what `bench/` compares this against.

kube-score's critical findings fail a chart. Its warnings, and the findings about what the
manifest chose (a `latest` tag, a pull policy other than Always, no cpu or memory bounds), are
reported without failing, unless `strict`.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import SCORE_SKIP
from .errors import UserError
from .tools import helm, kube_score, kubeconform
from .tools.kubeconform import KUBERNETES_VERSION as KUBERNETES

PLACEHOLDER = "overseer-validate-placeholder"


# Findings about what the manifest chose (the spec's example uses `latest` and Never) or left
# out (cpu and memory bounds): `plugin register` warns about them, and only --strict fails.
MANIFEST_CHECKS = frozenset(
    {"container-image-tag", "container-image-pull-policy", "container-resources"}
)


@dataclass
class ChartReport:
    """Every problem found in one chart, and what is only worth a warning."""

    chart: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # A finding's text -> the chart's file it is about (relative to the chart), where known:
    # what a CI annotation points a reviewer at.
    sources: dict[str, str] = field(default_factory=dict)


def find_charts(paths: Iterable[Path]) -> list[Path]:
    """Chart directories at or below each path, sorted; a file stands for the chart holding it.

    A file in no chart (a README beside the charts) selects nothing: a pre-commit hook passes
    whatever files a commit touches.
    """
    charts: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: no such file or directory")
        if path.is_file():
            holder = next((p for p in path.parents if (p / "Chart.yaml").is_file()), None)
            if holder is not None:
                charts.add(holder)
            continue
        if (path / "Chart.yaml").is_file():
            charts.add(path)
            continue
        charts.update(
            p.parent for p in path.rglob("Chart.yaml") if ".git" not in p.relative_to(path).parts
        )
    return sorted(charts)


def placeholder_values(chart: Path) -> dict[str, Any]:
    """Values for secrets the schema requires: they are never in Git, so validation supplies them."""
    try:
        schema = json.loads((chart / "values.schema.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    required = schema.get("then", {}).get("properties", {}).get("secretEnv", {}).get("required", [])
    return {"secretEnv": dict.fromkeys(required, PLACEHOLDER)} if required else {}


def _release_of(chart: Path) -> tuple[str, str]:
    # rendered/<namespace>/<release>; a chart elsewhere validates as release = directory name.
    return chart.name, chart.parent.name if chart.parent.name else "default"


def ci_values(chart: Path) -> dict[str, Any]:
    """`ci/values.yaml`, chart-testing's place for the values a chart is checked with."""
    try:
        loaded = yaml.safe_load((chart / "ci" / "values.yaml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


@dataclass
class _Templated:
    problems: list[str]
    manifests: Path | None  # the file holding the chart's manifests, when they rendered
    sources: dict[str, str]  # finding text or "Kind/name" -> the chart's file it comes from


def _lint_and_template(chart: Path, out_dir: Path, index: int) -> _Templated:
    values = {**ci_values(chart), **placeholder_values(chart)}
    done = _Templated([], None, {})
    for f in helm.lint(chart, values, strict=True):
        line = f"helm lint: {f.path + ': ' if f.path else ''}{f.message}"
        done.problems.append(line)
        if f.path and (chart / f.path).is_file():
            done.sources[line] = f.path
    release, namespace = _release_of(chart)
    try:
        manifests = helm.template(chart, values, release=release, namespace=namespace)
    except Exception as exc:  # the engine raises one error type per failure kind
        done.problems.append(f"helm template: {exc}")
        return done
    done.sources.update(_object_sources(manifests))
    target = out_dir / f"{index:06d}.yaml"
    target.write_text(_isolated(manifests, f"{_SCRATCH}{index:06d}"), encoding="utf-8")
    done.manifests = target
    return done


_SOURCE = re.compile(r"^# Source: [^/\n]+/(.+)$", re.M)
_KIND = re.compile(r"^kind: *(\S+)", re.M)
_NAME = re.compile(r"^metadata:\n(?:[ #].*\n)*?  name: *['\"]?([^'\"\s]+)", re.M)


def _object_sources(manifests: str) -> dict[str, str]:
    """Every object's `Kind/name` -> the template it came from (helm's `# Source:` comment)."""
    found: dict[str, str] = {}
    source = None
    for doc in manifests.split("\n---"):
        named = _SOURCE.search(doc)
        source = named.group(1) if named else source  # a template may yield several objects
        kind, name = _KIND.search(doc), _NAME.search(doc)
        if source and kind and name:
            found.setdefault(f"{kind.group(1)}/{name.group(1)}", source)
    return found


# Each chart's objects go into a namespace of their own for validation: kube-score relates the
# objects of a namespace, and one chart's Service must not be taken to select another's pods.
_SCRATCH = "overseer-validate-"
_METADATA = re.compile(r"^metadata:\n((?:[ #].*\n)*)", re.M)
_NAMESPACE = re.compile(r"^  namespace: .*$", re.M)


def _isolated(manifests: str, namespace: str) -> str:
    """`manifests` with every top-level object's namespace set to `namespace`."""

    def put(match: re.Match[str]) -> str:
        block = match.group(1)
        if _NAMESPACE.search(block):
            return "metadata:\n" + _NAMESPACE.sub(f"  namespace: {namespace}", block)
        return f"metadata:\n  namespace: {namespace}\n{block}"

    return _METADATA.sub(put, manifests)


def validate(
    paths: Iterable[Path],
    *,
    progress: Callable[[int, int], None] | None = None,
    score_skip: Sequence[str] = SCORE_SKIP,
    strict: bool = False,
) -> list[ChartReport]:
    """Validate every chart under `paths`; return one report per chart, problems or not.

    `score_skip` names the kube-score checks a team accepts; `strict` fails on warnings too.
    """
    paths = list(paths)
    charts = find_charts(paths)
    if not charts:
        raise UserError("no charts found (a chart is a directory holding Chart.yaml)")
    reports = [ChartReport(str(c)) for c in charts]
    reports += [engine for root in paths if (engine := validate_engine_files(root)) is not None]
    with tempfile.TemporaryDirectory(prefix="overseer-validate-") as tmp:
        out_dir = Path(tmp)
        rendered: dict[str, int] = {}
        # The engine releases the GIL inside its C calls, so two threads use both cores.
        with ThreadPoolExecutor(max_workers=2) as pool:
            jobs = pool.map(lambda ic: _lint_and_template(ic[1], out_dir, ic[0]), enumerate(charts))
            objects: list[dict[str, str]] = []
            for i, done in enumerate(jobs):
                reports[i].problems += done.problems
                reports[i].sources.update(done.sources)
                objects.append(done.sources)
                if done.manifests is not None:
                    rendered[str(done.manifests)] = i
                if progress is not None:
                    progress(i + 1, len(charts))
        for finding in kubeconform.validate([Path(p) for p in rendered]):
            owner = rendered.get(finding.filename)
            if owner is None:
                raise UserError(f"kubeconform: {finding.filename}: {finding.message}")
            line = f"kubeconform: {finding.kind}/{finding.name}: {finding.message}"
            (reports[owner].warnings if finding.unchecked else reports[owner].problems).append(line)
            _note_source(reports[owner], objects[owner], line, f"{finding.kind}/{finding.name}")
        files = sorted(Path(p) for p in rendered)
        for scored in kube_score.score(files, skip=score_skip, kubernetes_version=KUBERNETES):
            index = scored.namespace.removeprefix(_SCRATCH)
            owner = int(index) if index.isdigit() else -1
            if not 0 <= owner < len(reports):
                raise UserError(f"kube-score: {scored.kind}/{scored.name}: {scored.message}")
            line = f"kube-score: {scored.kind}/{scored.name}: {scored.message} [{scored.check}]"
            _note_source(reports[owner], objects[owner], line, f"{scored.kind}/{scored.name}")
            lenient = scored.grade == kube_score.WARNING or scored.check in MANIFEST_CHECKS
            if lenient and not strict:
                reports[owner].warnings.append(line)
            else:
                reports[owner].problems.append(line)
    for report in reports:  # kube-score's order varies from run to run
        report.warnings.sort()
        # Only findings' files are the report's; the objects' map was a means to them.
        known = {*report.problems, *report.warnings}
        report.sources = {k: v for k, v in report.sources.items() if k in known}
    return reports


ENGINE_DIRS = (".overseer/argocd", ".overseer/flux")


def validate_engine_files(root: Path) -> ChartReport | None:
    """Kubeconform on the Argo CD and Flux files a render wrote under `root`; None if none.

    A SOPS-encrypted manifest is checked as kustomize-controller applies it: without the
    `sops` metadata, which it strips when it decrypts (the values stay strings either way).
    """
    files = sorted(
        f for d in ENGINE_DIRS if (root / d).is_dir() for f in (root / d).rglob("*.yaml")
    )
    if not files:
        return None
    report = ChartReport(str(root / ".overseer"))
    with tempfile.TemporaryDirectory(prefix="overseer-engines-") as tmp:
        checked: dict[str, str] = {}
        for i, f in enumerate(files):
            rel = f.relative_to(root / ".overseer").as_posix()
            if f.name.endswith(".enc.yaml"):
                doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
                if isinstance(doc, dict):
                    doc.pop("sops", None)
                target = Path(tmp) / f"{i:06d}.yaml"
                target.write_text(yaml.safe_dump(doc), encoding="utf-8")
                checked[str(target)] = rel
            else:
                checked[str(f)] = rel
        for finding in kubeconform.validate([Path(p) for p in checked]):
            line = f"kubeconform: {finding.kind}/{finding.name}: {finding.message}"
            (report.warnings if finding.unchecked else report.problems).append(line)
            report.sources[line] = checked.get(finding.filename, "")
    return report


def _note_source(report: ChartReport, objects: dict[str, str], line: str, obj: str) -> None:
    if obj in objects:
        report.sources[line] = objects[obj]
