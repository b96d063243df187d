"""Concurrent writers: separate `overseer` processes rendering into one repository at once."""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import Cli, commit_count


def test_concurrent_creates_never_fail_or_lose_a_change(cli: Cli, claude_manifest: Path) -> None:
    assert cli("plugin", "register", str(claude_manifest)).exit_code == 0
    env = {**os.environ, **cli.env}

    def create(i: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "overseer",
                "deploy",
                "create",
                "claude-environment",
                "--set",
                "ANTHROPIC_API_KEY=k",
                "--requirement",
                f"worker {i}",
                "-o",
                "json",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(create, range(12)))
    for r in results:
        assert r.returncode == 0, r.stderr
        assert "index.lock" not in r.stderr
    releases = {json.loads(r.stdout)["deployment_id"] for r in results}
    repo = cli.settings.repo
    assert {p.parent.name for p in repo.glob("a8s/*/Chart.yaml")} == releases
    # Each create may commit its own chart, or a concurrent render may have committed it first.
    assert 1 <= commit_count(repo) <= 12
    committed = subprocess.run(
        ["git", "-C", str(repo), "ls-files"], capture_output=True, text=True, check=True
    ).stdout
    charts = {line.split("/")[1] for line in committed.splitlines() if line.startswith("a8s/")}
    assert charts == releases
    assert (
        subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True
        ).stdout
        == ""
    )
    fsck = subprocess.run(
        ["git", "-C", str(repo), "fsck", "--strict"], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr
    assert cli("render", "--check").exit_code == 0
