"""`overseer render`, `overseer validate` and `overseer diff`."""

from __future__ import annotations

import functools
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ..config import REVIEW, Settings
from ..errors import UserError
from ..service import diff as diff_service
from ..service import render as service_render
from ..service.context import Context
from ..service.diff import ChartDiff
from ..validate import validate as run_validate
from .common import emit_data, progress_bar, with_context


@click.command("render")
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing; exit 1 and list the charts that differ from a fresh render.",
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
    check: bool,
    offline: bool,
    ref: str | None,
    force: bool,
    full: bool,
    progress: bool,
    remote: str | None,
) -> None:
    """Render every live deployment into the GitOps repository and commit the changes."""
    if check:
        drifts = service_render.check(service, service.charts(ref), offline=offline)
        for d in drifts:
            click.echo(f"{d.path}: {d.reason}")
        if drifts:
            click.echo(f"{len(drifts)} chart(s) differ from a fresh render", err=True)
            sys.exit(1)
        click.echo("all charts match a fresh render")
        return
    if offline or ref:
        raise click.UsageError("--offline and --ref only apply to --check")
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


@click.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--ref",
    metavar="REF",
    help="Validate the charts of this commit of the GitOps repository (no PATHS).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Fail on kube-score's warnings and image findings (a latest tag, a pull policy other "
    "than Always) too.",
)
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on a terminal.")
def validate(paths: tuple[Path, ...], ref: str | None, strict: bool, progress: bool) -> None:
    """Run helm lint, kubeconform and kube-score on every chart under PATHS.

    helm lint --strict, then helm template | kubeconform -strict, then kube-score.
    PATHS default to the GitOps repository's files (brought up to date first), or with --ref to
    the charts of that commit. kube-score's critical findings fail a chart; the checks named in
    OVERSEER_SCORE_SKIP are not run.
    """
    if ref and paths:
        raise click.UsageError("give PATHS or --ref, not both")
    settings = Settings.from_env()
    with charts_directory(settings, ref, list(paths)) as targets:
        bar = progress_bar("validating", progress)
        check = functools.partial(run_validate, score_skip=settings.score_skip, strict=strict)
        if bar is None:
            reports = check(targets)
        else:
            with bar:
                task = bar.add_task("validate", total=None)
                reports = check(
                    targets, progress=lambda d, t: bar.update(task, completed=d, total=t)
                )
        if ref:  # named as in the commit, not by the scratch directory they were read into
            for r in reports:
                r.chart = f"{ref}:{Path(r.chart).relative_to(targets[0])}"
    failed = [r for r in reports if r.problems]
    for r in reports:
        if r.problems:
            click.echo(f"FAIL {r.chart}")
        elif r.warnings:
            click.echo(f"WARN {r.chart}")
        for line in (*r.problems, *(f"warning: {w}" for w in r.warnings)):
            click.echo(f"  {line}")
    click.echo(f"{len(reports) - len(failed)} of {len(reports)} chart(s) valid")
    if failed:
        sys.exit(1)


@contextmanager
def charts_directory(
    settings: Settings, ref: str | None, paths: list[Path]
) -> Iterator[list[Path]]:
    """The directories to validate: PATHS, the repository's files, or a commit's charts."""
    if paths:
        yield paths
        return
    ctx = Context(settings)
    try:
        if ref is None:
            ctx.charts()  # brings the files Overseer keeps up to date
            yield [settings.repo]
            return
        snapshot = ctx.snapshot(ref)
        with tempfile.TemporaryDirectory(prefix="overseer-validate-") as tmp:
            # Laid out as <namespace>/<release>, as in the repository.
            for chart in sorted(snapshot.chart_paths()):
                snapshot.export(chart, Path(tmp) / chart)
            yield [Path(tmp)]
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
    help="Exit 0 when nothing differs, 2 when something does, 1 on an error.",
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
        sys.exit(2)
