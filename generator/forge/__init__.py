"""Forges that hold pull requests: Gitea, GitHub and GitLab, behind one small interface.

Review mode needs five things of a forge: open a pull request for a branch, edit its title and
body, read its state, close it, and tell a genuine webhook delivery from a forged one. Each
adapter is thin over the forge's maintained client (githubkit, python-gitlab) or, for Gitea,
plain httpx. A webhook's payload is never trusted for the state it claims: the handler reads the
pull request back through the API, so a replayed or reordered delivery changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ..config import Settings
from ..errors import Misconfigured, Unauthorized

OPEN, MERGED, CLOSED = "open", "merged", "closed"
FORGES = ("gitea", "github", "gitlab")


@dataclass(frozen=True)
class PullRequest:
    """A pull (merge) request as Overseer needs it."""

    number: int
    url: str
    state: str  # OPEN, MERGED or CLOSED (closed without merging)


@dataclass(frozen=True)
class WebhookEvent:
    """A verified delivery: its id (for replays) and the pull request it concerns, if any."""

    delivery: str | None
    number: int | None


class Forge(Protocol):
    """What review mode asks of a forge."""

    name: str

    def open(self, branch: str, base: str, title: str, body: str) -> PullRequest:
        """Open a pull request of `branch` into `base`."""
        ...

    def find(self, branch: str, base: str) -> PullRequest | None:
        """The open pull request of `branch` into `base`, if there is one."""
        ...

    def edit(self, number: int, title: str, body: str) -> PullRequest:
        """Replace the title and body of an open pull request."""
        ...

    def get(self, number: int) -> PullRequest:
        """Read a pull request's state."""
        ...

    def close(self, number: int) -> PullRequest:
        """Close a pull request without merging it."""
        ...

    def event(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """Verify a webhook delivery (raise Unauthorized) and say what it concerns."""
        ...


def hmac_sha256(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of a body, as Gitea and GitHub sign deliveries."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def require_signature(given: str | None, expected: str, header: str) -> None:
    """Compare in constant time; a missing or different signature is a 401."""
    if not given:
        raise Unauthorized(f"webhook: no {header} header; configure the webhook's secret")
    if not hmac.compare_digest(given.strip(), expected):
        raise Unauthorized(f"webhook: {header} does not match; check the webhook's secret")


def lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names compared case-insensitively."""
    return {k.lower(): v for k, v in headers.items()}


def from_settings(settings: Settings) -> Forge:
    """The forge the settings name, with its token and webhook secret."""
    kind, repo, token = settings.forge, settings.forge_repo, settings.forge_token
    if kind not in FORGES:
        raise Misconfigured(
            f"OVERSEER_FORGE={kind or ''!r}: review mode needs a forge; set it to "
            + ", ".join(FORGES)
        )
    if not repo or "/" not in repo:
        raise Misconfigured(
            f"OVERSEER_FORGE_REPO={repo or ''!r}: give the repository as owner/name"
        )
    if not token:
        raise Misconfigured(
            "OVERSEER_FORGE_TOKEN (or OVERSEER_FORGE_TOKEN_FILE) is not set; review mode "
            "opens pull requests with it"
        )
    secret = settings.webhook_secret
    if kind == "gitea":
        if not settings.forge_url:
            raise Misconfigured("OVERSEER_FORGE_URL is not set; give the Gitea server's address")
        from .gitea import Gitea

        return Gitea(settings.forge_url, repo, token, secret)
    if kind == "github":
        from .github import GitHubForge

        return GitHubForge(settings.forge_url, repo, token, secret)
    from .gitlab import GitLabForge

    return GitLabForge(settings.forge_url, repo, token, secret)
