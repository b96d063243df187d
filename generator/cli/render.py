"""`overseer render`, `overseer validate` and `overseer diff`."""

from __future__ import annotations

import functools
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import click

from ..charts import ChartSource
from ..config import REVIEW, Settings
from ..errors import UserError
from ..service import changed
from ..service import check as check_service
from ..service import diff as diff_service
from ..service import render as service_render
from ..service.changed import Selection
from ..service.check import Drift
from ..service.context import Context
from ..service.diff import ChartDiff
from ..validate import ChartReport
from ..validate import validate as run_validate
from .common import emit_data, progress_bar, with_context
from .report import (
    FINDINGS,
    TEXT,
    Finding,
    Outcome,
    check_errors,
    describe,
    finish,
    format_option,
    selection_data,
)


@click.command("render")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing; exit 3 and list the charts that differ from a fresh render (1: the "
    "check failed). PATHS (files or directories of the repository) limit it to their charts.",
)
@click.option(
    "--offline",
    is_flag=True,
    help="With --check: re-render each chart from its own inputs record, without the database.",
)
@click.option(
    "--ref",
    metavar="REF",
    help="With --check: read the charts of this commit (a sha, a branch, HEAD) instead of the files.",
)
@click.option(
    "--changed-since",
    metavar="REF",
    help="With --check: only the charts changed since commit REF (and every chart of a plugin "
    "whose version changed).",
)
@format_option
@click.option("--force", is_flag=True, help="Allow removing most charts at once.")
@click.option(
    "--full",
    is_flag=True,
    help="Re-render every chart, not only those whose inputs changed (repairs hand edits).",
)
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on a terminal.")
@click.option(
    "--remote", metavar="URL", help="Push each commit to this Git remote [env OVERSEER_GIT_REMOTE]."
)
@with_context
def render(
    service: Context,
    paths: tuple[Path, ...],
    check: bool,
    offline: bool,
    ref: str | None,
    changed_since: str | None,
    fmt: str,
    force: bool,
    full: bool,
    progress: bool,
    remote: str | None,
) -> None:
    """Render every live deployment into the GitOps repository and commit the changes."""
    if check:
        check_charts(service, list(paths), offline, ref, changed_since, fmt)
    if offline or ref or changed_since or paths or fmt != TEXT:
        raise click.UsageError(
            "PATHS, --offline, --ref, --changed-since and -o only apply to --check"
        )
    service.settings = service.settings.with_(git_remote=remote)
    bar = progress_bar("rendering", progress)
    if bar is None:
        result = service_render.render(service, force=force, full=full)
    else:
        with bar:
            task = bar.add_task("render", total=None)
            result = service_render.render(
                service,
                force=force,
                full=full,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    summary = f"{len(result.added)} added, {len(result.changed)} changed, {len(result.removed)} removed, {result.unchanged} unchanged"
    if service.settings.mode == REVIEW:
        click.echo(f"proposed {len(result.proposals)} change(s): {summary}")
        for line in result.proposals:
            click.echo(f"  {line}")
    elif result.commit:
        pushed = f" (pushed to {result.pushed})" if result.pushed else ""
        click.echo(f"committed {result.commit[:12]}{pushed}: {summary}")
    else:
        pushed = f" (pushed to {result.pushed})" if result.pushed else ""
        click.echo(f"nothing to commit{pushed}: {summary}")
    if result.push_error:
        click.echo(
            f"Error: {result.push_error}; the commit stands, and the next render pushes it",
            err=True,
        )
        sys.exit(1)


def _select(
    service: Context,
    source: ChartSource,
    paths: list[Path],
    ref: str | None,
    since: str | None,
) -> Selection | None:
    """The charts a check covers: PATHS', those changed since `since`, or (None) all."""
    if paths and since:
        raise click.UsageError("give PATHS or --changed-since, not both")
    if since:
        selection = changed.changed_since(service, since, source, ref)
    elif paths:
        selection = changed.from_paths(service.settings.repo, paths, source.chart_paths())
    else:
        return None
    click.echo(describe(selection, since), err=True)
    return selection


def check_charts(
    service: Context,
    paths: list[Path],
    offline: bool,
    ref: str | None,
    since: str | None,
    fmt: str,
) -> NoReturn:
    """`render --check`: compare, report in `fmt`, and exit 0, 1 or 3 (see `report`)."""
    with check_errors():
        source = service.charts(ref)
        selection = _select(service, source, paths, ref, since)
        only = selection.charts if selection is not None else None
        drifts = check_service.check(service, source, offline=offline, only=only)
        checked = set(only) if only is not None else source.chart_paths()
    outcomes = {c: Outcome(c) for c in sorted(checked | {d.path for d in drifts})}
    for d in drifts:
        outcomes[d.path].problems += _drift_findings(d)

    def text() -> None:
        for d in drifts:
            click.echo(f"{d.path}: {d.reason}")
        if drifts:
            click.echo(f"{len(drifts)} chart(s) differ from a fresh render", err=True)
        elif selection is None:
            click.echo("all charts match a fresh render")
        elif not selection.charts:
            click.echo("no charts to check")
        else:
            click.echo(f"all {len(selection.charts)} chart(s) checked match a fresh render")

    finish(
        "render --check",
        list(outcomes.values()),
        fmt,
        title="Overseer: chart differs from a fresh render",
        selection=selection_data(selection, since),
        text=text,
    )


def _drift_findings(d: Drift) -> list[Finding]:
    """One finding per file a drift is about, so an annotation sits on each."""
    if not d.files:  # a chart missing, or with no deployment: no file to point at
        return [Finding(f"{d.path}: {d.reason}")]
    if not d.reason.startswith("differs"):  # the record of inputs is missing or unreadable
        return [Finding(f"{d.path}: {d.reason}", f"{d.path}/{d.files[0]}")]
    return [
        Finding(
            f"{d.path}/{name} differs from a fresh render; charts are generated: "
            "change the deployment, not the chart",
            f"{d.path}/{name}",
        )
        for name in d.files
    ]


@click.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--ref",
    metavar="REF",
    help="Validate the charts of this commit of the GitOps repository (no PATHS).",
)
@click.option(
    "--changed-since",
    metavar="REF",
    help="Only the charts changed since commit REF (and every chart of a plugin whose version "
    "changed); no PATHS.",
)
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    help="GitOps repository read without PATHS [env OVERSEER_REPO; default ./rendered].",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Fail on kube-score's warnings and image findings (a latest tag, a pull policy other "
    "than Always) too.",
)
@format_option
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on a terminal.")
def validate(
    paths: tuple[Path, ...],
    ref: str | None,
    changed_since: str | None,
    repo: Path | None,
    strict: bool,
    fmt: str,
    progress: bool,
) -> None:
    """Run helm lint, kubeconform and kube-score on every chart under PATHS.

    helm lint --strict, then helm template | kubeconform -strict, then kube-score.
    PATHS (directories, or files standing for the chart that holds them) default to the GitOps
    repository's files (brought up to date first), or with --ref to the charts of that commit.
    kube-score's critical findings fail a chart; the checks named in OVERSEER_SCORE_SKIP are not
    run. Exit 0 all valid, 3 a chart is not, 1 the check failed.
    """
    if ref and paths:
        raise click.UsageError("give PATHS or --ref, not both")
    if changed_since and paths:
        raise click.UsageError("give PATHS or --changed-since, not both")
    settings = Settings.from_env().with_(repo=repo.absolute() if repo else None)
    with check_errors(), charts_directory(settings, ref, list(paths), changed_since) as found:
        targets, selection = found
        reports: list[ChartReport] = []
        if targets:
            bar = progress_bar("validating", progress)
            run = functools.partial(run_validate, score_skip=settings.score_skip, strict=strict)
            if bar is None:
                reports = run(targets)
            else:
                with bar:
                    task = bar.add_task("validate", total=None)
                    reports = run(
                        targets, progress=lambda d, t: bar.update(task, completed=d, total=t)
                    )
        scratch = targets[0] if ref and targets else None  # a commit's charts, copied there
        outcomes = [_outcome(r, settings.repo, scratch, ref) for r in reports]
    failed = [r for r in reports if r.problems]

    def text() -> None:
        for r in reports:
            if r.problems:
                click.echo(f"FAIL {r.chart}")
            elif r.warnings:
                click.echo(f"WARN {r.chart}")
            for line in (*r.problems, *(f"warning: {w}" for w in r.warnings)):
                click.echo(f"  {line}")
        click.echo(f"{len(reports) - len(failed)} of {len(reports)} chart(s) valid")

    finish(
        "validate",
        outcomes,
        fmt,
        title="Overseer: chart is not valid",
        selection=selection_data(selection, changed_since),
        text=text,
    )


def _outcome(report: ChartReport, root: Path, scratch: Path | None, ref: str | None) -> Outcome:
    """A validation report as an outcome naming files from the repository's root."""
    chart = Path(report.chart)
    if scratch is not None:  # read from a commit into a scratch directory
        where = chart.relative_to(scratch).as_posix()
        report.chart = f"{ref}:{where}"
    else:
        where = _relative(chart, root)

    def finding(line: str) -> Finding:
        source = report.sources.get(line)
        return Finding(line, f"{where}/{source}" if source else None)

    return Outcome(
        where,
        [finding(p) for p in report.problems],
        [finding(w) for w in report.warnings],
    )


def _relative(chart: Path, root: Path) -> str:
    # Annotations name files from the repository's root (the workflow's checkout), or failing
    # that from the working directory, which is where a pre-commit hook runs.
    absolute = chart.absolute()
    for base in (root.absolute(), Path.cwd()):
        if absolute.is_relative_to(base):
            return absolute.relative_to(base).as_posix()
    return chart.as_posix()


@contextmanager
def charts_directory(
    settings: Settings, ref: str | None, paths: list[Path], since: str | None = None
) -> Iterator[tuple[list[Path], Selection | None]]:
    """The directories to validate (PATHS, the repository's files, or a commit's charts).

    With `since`, only the charts changed since that commit: their directories, or, read from
    commit `ref`, copies of them; a selection that is empty yields no directory at all.
    """
    if paths:
        yield paths, None
        return
    ctx = Context(settings)
    try:
        source = ctx.charts(ref)  # without a ref, brings the files Overseer keeps up to date
        selection = changed.changed_since(ctx, since, source, ref) if since else None
        if selection is not None:
            click.echo(describe(selection, since), err=True)
        if ref is None:
            if selection is None:
                yield [settings.repo], None
            else:
                yield changed.chart_dirs(settings.repo, selection), selection
            return
        snapshot = ctx.snapshot(ref)
        wanted = selection.charts if selection is not None else sorted(snapshot.chart_paths())
        with tempfile.TemporaryDirectory(prefix="overseer-validate-") as tmp:
            # Laid out as <namespace>/<release>, as in the repository.
            for chart in wanted:
                snapshot.export(chart, Path(tmp) / chart)
            yield ([Path(tmp)] if wanted else []), selection
    finally:
        ctx.close()


def print_diffs(diffs: list[ChartDiff], output: str) -> None:
    """Chart diffs as text (files, then manifests), or as data (JSON or YAML)."""
    if output != "text":
        emit_data([d.as_dict() for d in diffs], output)
        return
    for d in diffs:
        click.echo(f"=== {d.path} ({d.action})")
        if d.files:
            click.echo(d.files, nl=False)
        if d.manifests:
            click.echo(d.manifests, nl=False)


@click.command("diff")
@click.argument("deployments", nargs=-1, metavar="[DEPLOYMENT]...")
@click.option("--from", "from_ref", metavar="REF", help="Compare this commit ...")
@click.option("--to", "to_ref", metavar="REF", help="... with this one [default: HEAD].")
@click.option(
    "--live",
    is_flag=True,
    help="Compare each release's manifest in the cluster with its chart on main (helm-diff style).",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when nothing differs, 3 when something does, 1 on an error (as the checks do).",
)
@click.option(
    "--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@with_context
def diff(
    service: Context,
    deployments: tuple[str, ...],
    from_ref: str | None,
    to_ref: str | None,
    live: bool,
    detailed_exitcode: bool,
    output: str,
) -> None:
    """Show what a render would commit now, what changed between two commits, or live drift.

    Without options: the charts a full render would add, change or remove, against HEAD (a hand
    edit included). Each chart shows its files' diff and the diff of the manifests `helm template`
    renders. Secret values never appear: they are not in charts, and every Secret's data is shown
    as <redacted>.
    """
    if deployments and not live:
        raise click.UsageError("DEPLOYMENT names only apply with --live")
    try:
        if live:
            diffs = diff_service.live(service, deployments)
        elif from_ref or to_ref:
            diffs = diff_service.between(service, from_ref or "HEAD", to_ref or "HEAD")
        else:
            diffs = diff_service.pending(service)
    except UserError as exc:
        if not detailed_exitcode:
            raise
        click.echo(f"Error: {exc.for_cli()}", err=True)
        sys.exit(1)
    print_diffs(diffs, output)
    if not diffs and output == "text":
        click.echo("no differences", err=True)
    if detailed_exitcode and diffs:
        sys.exit(FINDINGS)
