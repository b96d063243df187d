"""What a pull request of review mode says: its title, its body, and the trailers of its commit."""

from __future__ import annotations

from .diff import ChartDiff

_VERBS = {
    "create": "deploy",
    "update": "update",
    "delete": "delete",
    "expire": "expire",
    "upgrade": "re-render",
}
_DIFF_LIMIT = 20_000  # characters of each diff in a pull request's body


def title(kind: str, release: str, plugin: str) -> str:
    """E.g. `overseer: deploy claude-environment-k3j9x2ab (claude-environment@1.0.0)`."""
    return f"overseer: {_VERBS[kind]} {release} ({plugin})"


def trailers(kind: str, dep_id: str, path: str, plugin: str) -> str:
    """The commit's and the pull request's trailers, as a render's commits carry them."""
    return f"Overseer-Deployment: {dep_id} {path} {plugin}\nOverseer-Change: {kind}\n"


def _fenced(text: str) -> str:
    if len(text) > _DIFF_LIMIT:
        text = text[:_DIFF_LIMIT] + "\n... (cut; `overseer diff` shows all of it)\n"
    return f"```diff\n{text or '(no difference)'}\n```"


def body(
    kind: str,
    path: str,
    release: str,
    dep_id: str,
    plugin: str,
    requested_by: str,
    change: ChartDiff,
    trailer_lines: str,
) -> str:
    """The pull request's body: what changes, for whom, both diffs (secrets redacted), trailers."""
    return "\n".join(
        [
            f"Overseer proposes to **{_VERBS[kind]}** `{path}`.",
            "",
            "| | |",
            "|---|---|",
            f"| Deployment | `{release}` (`{dep_id}`) |",
            f"| Plugin | `{plugin}` |",
            f"| Requested by | {requested_by} |",
            "",
            "Nothing reaches the cluster until this pull request is merged. Closing it without "
            "merging undoes the change in Overseer.",
            "",
            "<details><summary>Chart diff</summary>",
            "",
            _fenced(change.files),
            "</details>",
            "",
            "<details><summary>Manifest diff (<code>helm template</code>, secret values redacted)"
            "</summary>",
            "",
            _fenced(change.manifests),
            "</details>",
            "",
            trailer_lines,
        ]
    )
