"""Gitea through its REST API (/api/v1), with httpx: Gitea's own Python client is unmaintained."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from ..errors import ForgeFailed, Unauthorized
from . import CLOSED, MERGED, OPEN, PullRequest, WebhookEvent, hmac_sha256, lower_keys
from . import require_signature as _require


class Gitea:
    """Pull requests of one Gitea repository."""

    name = "gitea"

    def __init__(self, url: str, repo: str, token: str, secret: str | None) -> None:
        self.repo = repo
        self.secret = secret
        self.client = httpx.Client(
            base_url=url.rstrip("/") + f"/api/v1/repos/{repo}",
            headers={"Authorization": f"token {token}", "Accept": "application/json"},
            timeout=30,
        )

    def _call(self, action: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            response = self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ForgeFailed(self.name, action, str(exc) or type(exc).__name__) from None
        if response.status_code >= 400:
            raise ForgeFailed(
                self.name,
                action,
                f"HTTP {response.status_code}: {response.text[:300]}",
                response.status_code,
            )
        data = response.json()
        assert isinstance(data, dict)  # noqa: S101 - every call here answers an object
        return data

    @staticmethod
    def _pull(data: dict[str, Any]) -> PullRequest:
        state = MERGED if data.get("merged") else (OPEN if data.get("state") == "open" else CLOSED)
        return PullRequest(int(data["number"]), str(data.get("html_url", "")), state)

    def open(self, branch: str, base: str, title: str, body: str) -> PullRequest:
        """Open a pull request of `branch` into `base`."""
        data = {"head": branch, "base": base, "title": title, "body": body}
        return self._pull(self._call(f"open a pull request for {branch}", "POST", "/pulls", data))

    def find(self, branch: str, base: str) -> PullRequest | None:
        """The open pull request of `branch` into `base` (Gitea answers the newest of any state)."""
        try:
            data = self._call(
                f"find the pull request of {branch}", "GET", f"/pulls/{base}/{branch}"
            )
        except ForgeFailed as exc:
            if "HTTP 404" in exc.message:
                return None
            raise
        pull = self._pull(data)
        return pull if pull.state == OPEN else None

    def edit(self, number: int, title: str, body: str) -> PullRequest:
        """Replace the title and body."""
        data = {"title": title, "body": body}
        return self._pull(
            self._call(f"edit pull request #{number}", "PATCH", f"/pulls/{number}", data)
        )

    def get(self, number: int) -> PullRequest:
        """Read its state."""
        return self._pull(self._call(f"read pull request #{number}", "GET", f"/pulls/{number}"))

    def close(self, number: int) -> PullRequest:
        """Close it without merging."""
        data = {"state": "closed"}
        return self._pull(
            self._call(f"close pull request #{number}", "PATCH", f"/pulls/{number}", data)
        )

    def event(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """Gitea signs the body with HMAC-SHA256 (hex) in X-Gitea-Signature."""
        if not self.secret:
            raise Unauthorized("webhook: OVERSEER_WEBHOOK_SECRET is not set; webhooks are refused")
        h = lower_keys(headers)
        _require(h.get("x-gitea-signature"), hmac_sha256(self.secret, body), "X-Gitea-Signature")
        return WebhookEvent(h.get("x-gitea-delivery"), _pull_number(h.get("x-gitea-event"), body))


def _pull_number(event: str | None, body: bytes) -> int | None:
    # Gitea and GitHub both say "pull_request" and carry the number at the top level.
    if event != "pull_request":
        return None
    try:
        payload = json.loads(body)
        return int(payload.get("number") or payload["pull_request"]["number"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
