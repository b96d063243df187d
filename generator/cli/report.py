"""What the CI checks (`render --check`, `validate`) print, and the exit codes they share.

One scheme for both, so a CI step can tell a finding from a failure of the check itself:
0 every chart checked is clean; 3 at least one chart drifted or is invalid (a missing or
unreadable inputs record included); 1 the check could not run (a ref that does not exist, a tool
missing or failing), so nothing is known about the charts. A usage error exits 2, as for every command.

Three shapes of output: text for people, JSON for scripts, and GitHub Actions workflow commands
(`::error file=...::`) that a pull request shows beside the failing file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import click

from ..errors import UserError
from ..service.changed import Selection
from .common import emit_data

CLEAN, ERROR, FINDINGS = 0, 1, 3
TEXT, JSON, GITHUB = "text", "json", "github"

F = TypeVar("F", bound=Callable[..., Any])


def format_option(func: F) -> F:
    """Add --output/-o (alias --format): text, json or github."""
    return click.option(
        "--output",
        "-o",
        "--format",
        "fmt",
        type=click.Choice([TEXT, JSON, GITHUB]),
        default=TEXT,
        show_default=True,
        help="text; json (a report for scripts); github (GitHub Actions annotations naming "
        "each failing file).",
    )(func)


@contextmanager
def check_errors() -> Iterator[None]:
    """Any error of a check exits 1, whatever its usual code: 3 means findings, nothing else."""
    try:
        yield
    except UserError as exc:
        click.echo(f"Error: {exc.for_cli()}", err=True)
        sys.exit(ERROR)


@dataclass(frozen=True)
class Finding:
    """One problem (or warning) of a chart, and the file it is about when known."""

    message: str
    file: str | None = None  # relative to the repository's root


@dataclass
class Outcome:
    """One chart checked."""

    chart: str
    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The chart's entry in the JSON report."""
        return {
            "chart": self.chart,
            "ok": not self.problems,
            "problems": [{"file": f.file, "message": f.message} for f in self.problems],
            "warnings": [{"file": f.file, "message": f.message} for f in self.warnings],
        }


def selection_data(selection: Selection | None, since: str | None) -> dict[str, Any] | None:
    """How the charts were chosen, for the JSON report (None: all of them)."""
    if selection is None:
        return None
    if since is None:
        return {"paths": True, "charts": len(selection.charts)}
    return {"changed_since": since, "base": selection.base, "plugins": selection.plugins}


def describe(selection: Selection, since: str | None) -> str:
    """One line on stderr saying what is checked and why."""
    if since is None:
        return f"checking {len(selection.charts)} chart(s) holding the paths given"
    base = f" ({selection.base[:12]})" if selection.base else ""
    line = f"checking {len(selection.charts)} chart(s) changed since {since}{base}"
    if selection.plugins:
        line += f", every chart of changed plugin(s) {', '.join(selection.plugins)} included"
    return line


def _escape(text: str, *, prop: bool = False) -> str:
    # The escapes GitHub's runner undoes: data escapes %, CR and LF; properties also : and ,.
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def annotation(level: str, finding: Finding, title: str) -> str:
    """A GitHub Actions workflow command for one finding."""
    props = [f"file={_escape(finding.file, prop=True)}"] if finding.file else []
    props.append(f"title={_escape(title, prop=True)}")
    return f"::{level} {','.join(props)}::{_escape(finding.message)}"


def finish(
    command: str,
    outcomes: list[Outcome],
    fmt: str,
    *,
    title: str,
    selection: dict[str, Any] | None,
    text: Callable[[], None],
) -> NoReturn:
    """Print the report in `fmt` (text through `text`) and exit CLEAN or FINDINGS."""
    failed = [o for o in outcomes if o.problems]
    if fmt == JSON:
        emit_data(
            {
                "command": command,
                "result": "clean" if not failed else "failed",
                "exit_code": FINDINGS if failed else CLEAN,
                "checked": len(outcomes),
                "failed": len(failed),
                "selection": selection,
                "charts": [o.as_dict() for o in outcomes],
            },
            JSON,
        )
    elif fmt == GITHUB:
        for o in outcomes:
            for f in o.problems:
                click.echo(annotation("error", f, title))
            for f in o.warnings:
                click.echo(annotation("warning", f, title))
        click.echo(f"{len(outcomes) - len(failed)} of {len(outcomes)} chart(s) passed {command}")
    else:
        text()
    sys.exit(FINDINGS if failed else CLEAN)
