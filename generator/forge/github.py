"""GitHub through githubkit (generated from GitHub's OpenAPI description)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from githubkit import GitHub
from githubkit.exception import GitHubException, RequestFailed

from ..errors import ForgeFailed, Unauthorized
from . import CLOSED, MERGED, OPEN, PullRequest, WebhookEvent, hmac_sha256, lower_keys
from . import require_signature as _require
from .gitea import _pull_number


class GitHubForge:
    """Pull requests of one GitHub (or GitHub Enterprise) repository."""

    name = "github"

    def __init__(self, url: str | None, repo: str, token: str, secret: str | None) -> None:
        self.owner, self.repo = repo.split("/", 1)
        self.secret = secret
        # url: GitHub Enterprise's API root; None is api.github.com.
        self.client = GitHub(token, base_url=url) if url else GitHub(token)

    def _call(self, action: str, call: Callable[[], Any]) -> Any:
        # The answer's JSON, not githubkit's parsed model: only three fields are read, and a
        # field GitHub adds or drops elsewhere in the schema must not fail the call.
        try:
            return call().json()
        except RequestFailed as exc:
            detail = f"HTTP {exc.response.status_code}: {exc.response.text[:300]}"
            raise ForgeFailed(self.name, action, detail, exc.response.status_code) from None
        except GitHubException as exc:
            raise ForgeFailed(self.name, action, str(exc) or type(exc).__name__) from None

    def _pull(self, action: str, call: Callable[[], Any]) -> PullRequest:
        pull = self._call(action, call)
        merged = bool(pull.get("merged") or pull.get("merged_at"))
        state = MERGED if merged else (OPEN if pull.get("state") == "open" else CLOSED)
        return PullRequest(int(pull["number"]), str(pull.get("html_url", "")), state)

    def open(self, branch: str, base: str, title: str, body: str) -> PullRequest:
        """Open a pull request of `branch` into `base`."""
        return self._pull(
            f"open a pull request for {branch}",
            lambda: self.client.rest.pulls.create(
                self.owner,
                self.repo,
                data={"head": branch, "base": base, "title": title, "body": body},
            ),
        )

    def find(self, branch: str, base: str) -> PullRequest | None:
        """The open pull request of `branch` into `base`."""
        pulls = self._call(
            f"find the pull request of {branch}",
            lambda: self.client.rest.pulls.list(
                self.owner, self.repo, head=f"{self.owner}:{branch}", base=base, state="open"
            ),
        )
        return (
            PullRequest(int(pulls[0]["number"]), str(pulls[0]["html_url"]), OPEN) if pulls else None
        )

    def edit(self, number: int, title: str, body: str) -> PullRequest:
        """Replace the title and body."""
        return self._pull(
            f"edit pull request #{number}",
            lambda: self.client.rest.pulls.update(
                self.owner, self.repo, number, data={"title": title, "body": body}
            ),
        )

    def get(self, number: int) -> PullRequest:
        """Read its state."""
        return self._pull(
            f"read pull request #{number}",
            lambda: self.client.rest.pulls.get(self.owner, self.repo, number),
        )

    def close(self, number: int) -> PullRequest:
        """Close it without merging."""
        return self._pull(
            f"close pull request #{number}",
            lambda: self.client.rest.pulls.update(
                self.owner, self.repo, number, data={"state": "closed"}
            ),
        )

    def event(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """GitHub signs the body with HMAC-SHA256 in X-Hub-Signature-256 ("sha256=<hex>")."""
        if not self.secret:
            raise Unauthorized("webhook: OVERSEER_WEBHOOK_SECRET is not set; webhooks are refused")
        h = lower_keys(headers)
        expected = "sha256=" + hmac_sha256(self.secret, body)
        _require(h.get("x-hub-signature-256"), expected, "X-Hub-Signature-256")
        return WebhookEvent(h.get("x-github-delivery"), _pull_number(h.get("x-github-event"), body))
