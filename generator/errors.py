"""The error hierarchy shared by every stage.

`UserError` and its subclasses carry a message meant for a person: the CLI prints it and exits
with `exit_code`, the HTTP API returns it with `http_status`. Anything else escaping is a bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class OverseerError(Exception):
    """Base of every error Overseer raises on purpose."""


class UserError(OverseerError):
    """An error caused by input or environment that the user can fix.

    `message` says what is wrong. The next step depends on who reads it: `hint` names CLI
    commands and flags and is shown by the CLI only; `api_hint` is the HTTP API's counterpart.
    """

    exit_code = 1
    http_status = 400

    def __init__(self, message: str, *, hint: str = "", api_hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.api_hint = api_hint

    def for_cli(self) -> str:
        """The message with the CLI's next step."""
        return _join(self.message, self.hint)

    def for_api(self) -> str:
        """The message with the API's next step."""
        return _join(self.message, self.api_hint)


def _join(message: str, hint: str) -> str:
    # A hint that starts with a comma continues the sentence; any other is a clause of its own.
    if not hint:
        return message
    return message + hint if hint.startswith(",") else f"{message}; {hint}"


@dataclass(frozen=True)
class Problem:
    """One validation finding: where it is and what is wrong."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.path or "(top level)"
        if self.line is not None:
            where = f"{where} (line {self.line})"
        return f"{where}: {self.message}"


class ValidationFailed(UserError):
    """Several problems found in one pass; all of them are reported (400, as the spec's POST /plugins)."""

    exit_code = 2
    http_status = 400

    def __init__(self, subject: str, problems: Sequence[Problem]) -> None:
        self.subject = subject
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{subject}: validation failed:\n{lines}")


class ManifestInputError(UserError):
    """The manifest bytes cannot be read as a YAML mapping (size, encoding, aliases, syntax)."""

    exit_code = 2
    http_status = 400


class ManifestTooLarge(ManifestInputError):
    """The manifest is over the size cap."""

    http_status = 413

    def __init__(self, source: str, size: int, limit: int) -> None:
        super().__init__(
            f"{source}: manifest is {size} bytes, over the {limit}-byte limit; "
            "split it or remove embedded data"
        )


class NotFound(UserError):
    """A named object does not exist (or is not active)."""

    exit_code = 3
    http_status = 404

    @classmethod
    def deployment(cls, ident: str, state: str = "not found") -> NotFound:
        """No deployment by that id or release name (or it is gone)."""
        return cls(
            f'deployment "{ident}" {state}',
            hint="see `overseer deploy list`",
            api_hint="see GET /deployments",
        )

    @classmethod
    def plugin(cls, name: str, state: str = "is not registered") -> NotFound:
        """No plugin by that name (or it is deactivated)."""
        return cls(
            f'plugin "{name}" {state}',
            hint="see `overseer plugin list`",
            api_hint="see GET /plugins",
        )


class Conflict(UserError):
    """The request contradicts what is already stored."""

    exit_code = 4
    http_status = 409


class MissingVariables(UserError):
    """A deployment request lacks required variables."""

    exit_code = 2
    http_status = 400

    def __init__(self, plugin: str, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        names = ", ".join(self.missing)
        super().__init__(
            f'plugin "{plugin}": missing required variable(s): {names}; '
            f'pass each with --set NAME=VALUE (API: in "data")'
        )


class UnknownVariables(UserError):
    """A deployment request names variables the manifest does not declare."""

    exit_code = 2
    http_status = 400

    def __init__(self, plugin: str, unknown: Sequence[str], known: Sequence[str]) -> None:
        self.unknown = list(unknown)
        super().__init__(
            f'plugin "{plugin}": unknown variable(s): {", ".join(unknown)}; '
            f"known variables are: {', '.join(known) or '(none)'}"
        )


class MassDeletionRefused(UserError):
    """A render would remove most charts at once, which usually means the wrong database."""

    exit_code = 5
    http_status = 409

    def __init__(self, removing: int, total: int, *, what: str = "", where: str = "") -> None:
        if what:  # apply: releases whose charts left main
            message = (
                f"apply would uninstall {removing} of {total} {what}, whose charts are gone from "
                f"{where}; this usually means a wrong commit or remote. Check it"
            )
            hint = ", or pass --force"
        else:
            message = (
                f"render would remove {removing} of {total} charts; this usually means "
                "DATABASE_URL points at the wrong database. Check it"
            )
            hint = ", or pass --force to remove them"
        super().__init__(message, hint=hint)


class ToolMissing(UserError):
    """An external binary (helm, kubeconform, git) is not installed."""

    exit_code = 6
    http_status = 503

    def __init__(self, tool: str, hint: str) -> None:
        super().__init__(f"{tool} not found: {hint}")


class DatabaseUnavailable(UserError):
    """PostgreSQL cannot be reached."""

    exit_code = 7
    http_status = 503


class RemoteUnavailable(UserError):
    """The Git remote, where main is agreed, cannot be reached."""

    exit_code = 1
    http_status = 503


class GitFailed(UserError):
    """A git command failed underneath: the server's fault, never the request's (HTTP 500)."""

    exit_code = 1
    http_status = 500

    def __init__(self, command: str, detail: str, hint: str = "", *, output: str = "") -> None:
        self.command = command
        self.detail = detail
        self.output = output  # all git said, for callers that tell one failure from another
        super().__init__(
            f"git {command} failed: {detail or 'no answer'}" + (f"; {hint}" if hint else "")
        )


class RenderFailed(UserError):
    """A server's render round failed underneath (its writer process died): a 500."""

    exit_code = 1
    http_status = 500


class ForgeFailed(UserError):
    """The forge (Gitea, GitHub, GitLab) refused or failed a call: not the request's fault (502)."""

    exit_code = 1
    http_status = 502

    def __init__(self, forge: str, action: str, detail: str, status: int | None = None) -> None:
        self.forge = forge
        self.action = action
        # What the operator can check, from what the forge answered.
        hint = {
            401: "check OVERSEER_FORGE_TOKEN",
            403: "check that OVERSEER_FORGE_TOKEN may push branches and write pull requests",
            404: "check OVERSEER_FORGE_REPO and OVERSEER_FORGE_URL",
        }.get(status or 0, "")
        super().__init__(f"{forge}: {action} failed: {detail}", hint=hint, api_hint=hint)


class Misconfigured(UserError):
    """The server's settings cannot do what was asked (e.g. review mode with no forge): a 503."""

    exit_code = 1
    http_status = 503


class Unauthorized(UserError):
    """A request whose credentials or signature do not check out (401)."""

    exit_code = 1
    http_status = 401


class Forbidden(UserError):
    """Allowed to ask, but not this: a scope the token lacks, a namespace it may not touch (403)."""

    exit_code = 8
    http_status = 403
