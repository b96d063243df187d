"""GitLab merge requests through python-gitlab."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import gitlab
from gitlab.exceptions import GitlabError

from ..errors import ForgeFailed, Unauthorized
from . import CLOSED, MERGED, OPEN, PullRequest, WebhookEvent, lower_keys
from . import require_signature as _require


class GitLabForge:
    """Merge requests of one GitLab project."""

    name = "gitlab"

    def __init__(self, url: str | None, repo: str, token: str, secret: str | None) -> None:
        self.secret = secret
        self.client = gitlab.Gitlab(url or "https://gitlab.com", private_token=token, timeout=30)
        # lazy: no request until the first call; `repo` is the project's path (group/name).
        self.project = self.client.projects.get(repo, lazy=True)

    def _call(self, action: str, call: Callable[[], Any]) -> PullRequest:
        try:
            mr = call()
        except GitlabError as exc:
            code = f"HTTP {exc.response_code}: " if exc.response_code else ""
            raise ForgeFailed(
                self.name, action, f"{code}{exc.error_message}", exc.response_code
            ) from None
        state = {"opened": OPEN, "merged": MERGED}.get(str(mr.state), CLOSED)
        return PullRequest(int(mr.iid), str(mr.web_url), state)

    def open(self, branch: str, base: str, title: str, body: str) -> PullRequest:
        """Open a merge request of `branch` into `base`."""
        data = {"source_branch": branch, "target_branch": base, "title": title, "description": body}
        return self._call(
            f"open a merge request for {branch}", lambda: self.project.mergerequests.create(data)
        )

    def find(self, branch: str, base: str) -> PullRequest | None:
        """The open merge request of `branch` into `base`."""
        action = f"find the merge request of {branch}"
        try:
            found = self.project.mergerequests.list(
                source_branch=branch, target_branch=base, state="opened", get_all=False
            )
        except GitlabError as exc:
            code = f"HTTP {exc.response_code}: " if exc.response_code else ""
            raise ForgeFailed(
                self.name, action, f"{code}{exc.error_message}", exc.response_code
            ) from None
        mrs = list(found)
        return PullRequest(int(mrs[0].iid), str(mrs[0].web_url), OPEN) if mrs else None

    def _update(self, number: int, data: dict[str, str]) -> Any:
        mr = self.project.mergerequests.get(number, lazy=True)
        for key, value in data.items():
            setattr(mr, key, value)
        mr.save()
        return self.project.mergerequests.get(number)

    def edit(self, number: int, title: str, body: str) -> PullRequest:
        """Replace the title and description."""
        return self._call(
            f"edit merge request !{number}",
            lambda: self._update(number, {"title": title, "description": body}),
        )

    def get(self, number: int) -> PullRequest:
        """Read its state."""
        return self._call(
            f"read merge request !{number}", lambda: self.project.mergerequests.get(number)
        )

    def close(self, number: int) -> PullRequest:
        """Close it without merging."""
        return self._call(
            f"close merge request !{number}", lambda: self._update(number, {"state_event": "close"})
        )

    def event(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """GitLab sends the configured secret token itself in X-Gitlab-Token (no HMAC)."""
        if not self.secret:
            raise Unauthorized("webhook: OVERSEER_WEBHOOK_SECRET is not set; webhooks are refused")
        h = lower_keys(headers)
        _require(h.get("x-gitlab-token"), self.secret, "X-Gitlab-Token")
        number = None
        if h.get("x-gitlab-event") == "Merge Request Hook":
            try:
                number = int(json.loads(body)["object_attributes"]["iid"])
            except (ValueError, KeyError, TypeError):
                number = None
        return WebhookEvent(h.get("x-gitlab-event-uuid"), number)
