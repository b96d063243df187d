"""A secret value never reaches the GitOps history, the rendered tree, CLI output or logs."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cli

SECRET = "sk-ant-TOPSECRET-5f2c9a"


@pytest.mark.parametrize("method", ["apply", "sops", "sealed-secrets"])
def test_secret_value_appears_nowhere(
    cli: Cli,
    claude_manifest: Path,
    caplog: pytest.LogCaptureFixture,
    method: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """With every method: `apply` keeps values in the database, the others encrypt them."""
    if method != "apply":  # the chart carries its secrets: encrypted, never in the clear
        delivery = {"method": method}
        if method == "sops":
            delivery["age"] = [request.getfixturevalue("age_key")[1]]
        else:
            delivery["certificateFile"] = str(request.getfixturevalue("sealing_key")[1])
        path = tmp_path / "delivery.yaml"
        path.write_text(json.dumps({"engine": "flux", "repoURL": "https://git.example.com/g",
                                    "secrets": {"default": delivery}}))  # fmt: skip
        cli.env["OVERSEER_DELIVERY"] = str(path)
    caplog.set_level(logging.DEBUG)
    outputs = []

    def run(*args: str) -> None:
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        outputs.append(result.stdout + result.stderr)

    run("plugin", "register", str(claude_manifest))
    run(
        "deploy",
        "create",
        "claude-environment",
        "--set",
        f"ANTHROPIC_API_KEY={SECRET}",
        "--tool",
        "git",
    )
    outputs.append(
        cli(
            "deploy",
            "create",
            "claude-environment",
            "--set-env",
            "ANTHROPIC_API_KEY",
            env={"ANTHROPIC_API_KEY": SECRET},
        ).stdout
    )
    run("deploy", "list", "-o", "json")
    for fmt in ("table", "json", "yaml"):
        ids = cli("deploy", "list", "-o", "json").stdout
        assert SECRET not in ids
        for line in cli("deploy", "list").stdout.splitlines()[1:]:
            run("deploy", "show", line.split()[0], "-o", fmt)
    run("render")
    run("render", "--check")
    run("render", "--full")
    first = cli("deploy", "list").stdout.splitlines()[1].split()[0]
    run("deploy", "delete", first)

    for text in outputs:
        assert SECRET not in text
    assert SECRET not in caplog.text
    repo = cli.settings.repo
    history = subprocess.run(
        ["git", "-C", str(repo), "log", "--all", "-p", "--format=%B"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "ANTHROPIC_API_KEY" in history  # the history was read, and names the variable...
    assert SECRET not in history  # ...but never its value
    if method != "apply":  # ...though its ciphertext is there
        assert ("secrets.enc.yaml" if method == "sops" else "sealedsecret.yaml") in history
    objects = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch"],
        capture_output=True,
        check=True,
    ).stdout
    assert SECRET.encode() not in objects
    assert base64.b64encode(SECRET.encode()) not in objects
    for path in repo.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            assert SECRET.encode() not in path.read_bytes(), path
    for path in cli.settings.home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
