"""What the GitHub and GitLab adapters ask of their clients, checked against a recording server.

Neither forge can run here, so these are contract tests: a real HTTP server on loopback records
each request (method, path, query, body, auth header) and answers as the forge's API documents.
Gitea is tested end to end in test_review.py. Webhook signatures are checked for all three.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from generator.errors import ForgeFailed, Unauthorized
from generator.forge import CLOSED, MERGED, OPEN
from generator.forge.gitea import Gitea
from generator.forge.github import GitHubForge
from generator.forge.gitlab import GitLabForge


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    auth: str


Route = Callable[[Seen], tuple[int, Any]]


class Recorder:
    """A loopback HTTP server that records requests and answers through `route`."""

    def __init__(self, route: Route) -> None:
        self.seen: list[Seen] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                seen = Seen(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    json.loads(raw) if raw else None,
                    self.headers.get("Authorization") or self.headers.get("PRIVATE-TOKEN") or "",
                )
                recorder.seen.append(seen)
                status, body = route(seen)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Callable[[Route], Recorder]]:
    made: list[Recorder] = []

    def start(route: Route) -> Recorder:
        made.append(Recorder(route))
        return made[-1]

    yield start
    for r in made:
        r.close()


def github_pull(number: int, state: str = "open", merged: bool = False) -> dict[str, Any]:
    return {
        "number": number,
        "state": state,
        "merged": merged,
        "merged_at": "2026-11-29T00:00:00Z" if merged else None,
        "html_url": f"https://github.example/o/r/pull/{number}",
    }


def test_github_adapter_speaks_the_pulls_api(recorder: Callable[[Route], Recorder]) -> None:
    def route(seen: Seen) -> tuple[int, Any]:
        if seen.method == "POST" and seen.path == "/repos/o/r/pulls":
            return 201, github_pull(7)
        if seen.method == "GET" and seen.path == "/repos/o/r/pulls":
            return 200, [github_pull(7)] if seen.query.get("head") == ["o:overseer/a"] else []
        if seen.method == "PATCH" and seen.path == "/repos/o/r/pulls/7":
            closing = (seen.body or {}).get("state") == "closed"
            return 200, github_pull(7, "closed" if closing else "open")
        if seen.method == "GET" and seen.path == "/repos/o/r/pulls/8":
            return 200, github_pull(8, "closed", merged=True)
        return 404, {"message": "Not Found"}

    server = recorder(route)
    forge = GitHubForge(server.url, "o/r", "ghp-token", "hook-secret")
    opened = forge.open("overseer/a", "main", "title", "body")
    assert (opened.number, opened.state) == (7, OPEN)
    assert opened.url == "https://github.example/o/r/pull/7"
    first = server.seen[0]
    assert (first.method, first.path) == ("POST", "/repos/o/r/pulls")
    assert first.body == {"head": "overseer/a", "base": "main", "title": "title", "body": "body"}
    assert first.auth == "token ghp-token" or first.auth == "Bearer ghp-token"
    found = forge.find("overseer/a", "main")
    assert found is not None and found.number == 7
    assert server.seen[-1].query == {"head": ["o:overseer/a"], "base": ["main"], "state": ["open"]}
    assert forge.find("overseer/b", "main") is None
    assert forge.edit(7, "t2", "b2").state == OPEN
    assert server.seen[-1].body == {"title": "t2", "body": "b2"}
    assert forge.close(7).state == CLOSED and server.seen[-1].body == {"state": "closed"}
    assert forge.get(8).state == MERGED
    with pytest.raises(ForgeFailed, match=r"github: read pull request #9 failed: HTTP 404") as gone:
        forge.get(9)
    assert gone.value.for_cli().endswith("; check OVERSEER_FORGE_REPO and OVERSEER_FORGE_URL")


def gitlab_mr(iid: int, state: str = "opened") -> dict[str, Any]:
    return {
        "iid": iid,
        "state": state,
        "web_url": f"https://gitlab.example/g/p/-/merge_requests/{iid}",
    }


def test_gitlab_adapter_speaks_the_merge_requests_api(
    recorder: Callable[[Route], Recorder],
) -> None:
    states = {3: "opened"}
    base = "/api/v4/projects/g%2Fp/merge_requests"

    def route(seen: Seen) -> tuple[int, Any]:
        path = seen.path  # the project's path must reach the API encoded, as one segment
        if seen.method == "POST" and path == base:
            return 201, gitlab_mr(3)
        if seen.method == "GET" and path == base:
            wanted = seen.query.get("source_branch") == ["overseer/a"]
            return 200, [gitlab_mr(3)] if wanted else []
        if seen.method == "PUT" and path == f"{base}/3":
            if (seen.body or {}).get("state_event") == "close":
                states[3] = "closed"
            return 200, gitlab_mr(3, states[3])
        if seen.method == "GET" and path.startswith(f"{base}/"):
            iid = int(path.rsplit("/", 1)[1])
            return (
                (200, gitlab_mr(iid, states.get(iid, "merged")))
                if iid in (3, 4)
                else (404, {"message": "404 Not found"})
            )
        return 404, {"message": "404 Not found"}

    server = recorder(route)
    forge = GitLabForge(server.url, "g/p", "glpat-token", "hook-secret")
    opened = forge.open("overseer/a", "main", "title", "body")
    assert (opened.number, opened.state) == (3, OPEN)
    first = server.seen[0]
    assert first.method == "POST" and first.auth == "glpat-token"
    assert first.body == {
        "source_branch": "overseer/a",
        "target_branch": "main",
        "title": "title",
        "description": "body",
    }
    found = forge.find("overseer/a", "main")
    assert found is not None and found.number == 3
    listed = [s for s in server.seen if s.method == "GET" and s.query][-1]
    assert listed.query["state"] == ["opened"] and listed.query["target_branch"] == ["main"]
    assert forge.edit(3, "t2", "b2").state == OPEN
    put = [s for s in server.seen if s.method == "PUT"][-1]
    assert put.body is not None and put.body["title"] == "t2" and put.body["description"] == "b2"
    assert forge.close(3).state == CLOSED
    assert [s for s in server.seen if s.method == "PUT"][-1].body == {"state_event": "close"}
    assert forge.get(4).state == MERGED
    with pytest.raises(
        ForgeFailed, match=r"gitlab: read merge request !5 failed: HTTP 404"
    ) as gone:
        forge.get(5)
    assert gone.value.for_api().endswith("; check OVERSEER_FORGE_REPO and OVERSEER_FORGE_URL")


def sha256(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_webhook_signatures_of_each_forge() -> None:
    body = json.dumps({"number": 12, "object_attributes": {"iid": 12}}).encode()
    gitea = Gitea("http://127.0.0.1:9", "o/r", "t", "s3cret")
    good = {
        "X-Gitea-Event": "pull_request",
        "X-Gitea-Delivery": "d1",
        "X-Gitea-Signature": sha256("s3cret", body),
    }
    assert gitea.event(good, body).number == 12 and gitea.event(good, body).delivery == "d1"
    github = GitHubForge("http://127.0.0.1:9", "o/r", "t", "s3cret")
    signed = {
        "X-GitHub-Event": "pull_request",
        "X-Hub-Signature-256": "sha256=" + sha256("s3cret", body),
    }
    assert github.event(signed, body).number == 12
    gitlab = GitLabForge("http://127.0.0.1:9", "g/p", "t", "s3cret")
    token = {"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": "s3cret"}
    assert gitlab.event(token, body).number == 12
    # Wrong or missing signatures, a body changed after signing, and no secret configured.
    for forge, headers in (
        (gitea, {**good, "X-Gitea-Signature": sha256("other", body)}),
        (gitea, {"X-Gitea-Event": "pull_request"}),
        (github, {**signed, "X-Hub-Signature-256": sha256("s3cret", body)}),  # no sha256= prefix
        (gitlab, {**token, "X-Gitlab-Token": "guess"}),
    ):
        with pytest.raises(Unauthorized):
            forge.event(headers, body)
    with pytest.raises(Unauthorized):
        gitea.event(good, body + b" ")
    with pytest.raises(Unauthorized, match="OVERSEER_WEBHOOK_SECRET is not set"):
        Gitea("http://127.0.0.1:9", "o/r", "t", None).event(good, body)
    # Other events verify but concern no pull request.
    push = {**good, "X-Gitea-Event": "push"}
    assert gitea.event(push, body).number is None
