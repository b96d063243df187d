"""The local Gitea of `make forge-up`, as the review-mode tests use it: repositories, merges, hooks."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


class Gitea:
    """A reviewer's hands on the forge: its API, with the admin token."""

    def __init__(self, env: dict[str, str]) -> None:
        self.url = env["OVERSEER_TEST_GITEA_URL"]
        self.user = env["OVERSEER_TEST_GITEA_USER"]
        self.token = env["OVERSEER_TEST_GITEA_TOKEN"]
        self.http = httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"token {self.token}"},
            timeout=30,
        )

    @classmethod
    def running(cls) -> Gitea | None:
        """The Gitea `tools/forge.sh` started, or None when it is not up."""
        found = subprocess.run(
            ["bash", str(ROOT / "tools" / "forge.sh"), "env"], capture_output=True, text=True
        )
        if found.returncode != 0:
            return None
        env: dict[str, str] = {}
        for line in Path(found.stdout.strip()).read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        return cls(env)

    def new_repo(self) -> str:
        """A fresh repository with a first commit on main; its owner/name."""
        name = "gitops-" + uuid.uuid4().hex[:10]
        answer = self.http.post(
            "/user/repos", json={"name": name, "default_branch": "main", "auto_init": True}
        )
        answer.raise_for_status()
        return f"{self.user}/{name}"

    def clone_url(self, repo: str) -> str:
        """An HTTP remote with the token in it (tests only)."""
        host = self.url.removeprefix("http://")
        return f"http://{self.user}:{self.token}@{host}/{repo}.git"

    def review_env(self, repo: str, secret: str) -> dict[str, str]:
        """The settings of review mode against `repo` on this Gitea."""
        return {
            "OVERSEER_MODE": "review",
            "OVERSEER_FORGE": "gitea",
            "OVERSEER_FORGE_URL": self.url,
            "OVERSEER_FORGE_REPO": repo,
            "OVERSEER_FORGE_TOKEN": self.token,
            "OVERSEER_GIT_REMOTE": self.clone_url(repo),
            "OVERSEER_WEBHOOK_SECRET": secret,
        }

    def pulls(self, repo: str, state: str = "all") -> list[dict[str, Any]]:
        """Pull requests, newest first."""
        answer = self.http.get(f"/repos/{repo}/pulls", params={"state": state, "limit": 50})
        answer.raise_for_status()
        data: list[dict[str, Any]] = answer.json()
        return data

    def pull(self, repo: str, number: int) -> dict[str, Any]:
        """One pull request."""
        answer = self.http.get(f"/repos/{repo}/pulls/{number}")
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data

    def merge(self, repo: str, number: int) -> None:
        """Merge as a reviewer would; Gitea answers 405 while it still checks mergeability."""
        deadline = time.monotonic() + 60
        while True:
            answer = self.http.post(f"/repos/{repo}/pulls/{number}/merge", json={"Do": "merge"})
            if answer.status_code == 200:
                return
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.3)

    def close(self, repo: str, number: int) -> None:
        """Close without merging."""
        self.http.patch(
            f"/repos/{repo}/pulls/{number}", json={"state": "closed"}
        ).raise_for_status()

    def branches(self, repo: str) -> list[str]:
        """Branch names."""
        answer = self.http.get(f"/repos/{repo}/branches")
        answer.raise_for_status()
        return sorted(b["name"] for b in answer.json())

    def add_webhook(self, repo: str, url: str, secret: str) -> None:
        """Deliver pull-request events to `url`, signed with `secret`."""
        answer = self.http.post(
            f"/repos/{repo}/hooks",
            json={
                "type": "gitea",
                "active": True,
                "events": ["pull_request"],
                "config": {"url": url, "content_type": "json", "secret": secret},
            },
        )
        answer.raise_for_status()
