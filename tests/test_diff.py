"""`overseer diff`, `--dry-run` and `?dry_run=true`: what a change would do, secrets redacted."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import httpx
import pytest

from generator.config import Settings
from generator.service.diff import redact_secrets
from tests.conftest import Cli, Kube, commit_count
from tests.test_api import MANIFEST, Server, server_env

SECRET = "sk-diff-" + uuid.uuid4().hex


def deploy(cli: Cli, *extra: str) -> dict[str, str]:
    result = cli(
        "deploy",
        "create",
        "claude-environment",
        "--set",
        f"ANTHROPIC_API_KEY={SECRET}",
        *extra,
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    data: dict[str, str] = json.loads(result.stdout)
    return data


def test_diff_shows_what_a_render_would_commit(cli: Cli) -> None:
    assert cli("plugin", "register", str(MANIFEST)).exit_code == 0
    dep = deploy(cli, "--no-render")
    chart = dep["chart"]
    pending = cli("diff", "--detailed-exitcode")
    assert pending.exit_code == 3, pending.stderr
    assert pending.stdout.startswith(f"=== {chart} (added)\n")
    assert f"+++ b/{chart}/values.yaml" in pending.stdout
    assert (
        f"+++ b/{chart} (helm template)" in pending.stdout and "kind: Deployment" in pending.stdout
    )
    assert "<redacted>" in pending.stdout and SECRET not in pending.stdout
    assert cli("render").exit_code == 0
    clean = cli("diff", "--detailed-exitcode")
    assert clean.exit_code == 0 and clean.stdout == "" and "no differences" in clean.stderr

    assert (
        cli(
            "deploy", "update", dep["deployment_id"], "--set", "HEIGHT=900", "--no-render"
        ).exit_code
        == 0
    )
    changed = cli("diff", "-o", "json", "--detailed-exitcode")
    assert changed.exit_code == 3
    [entry] = json.loads(changed.stdout)
    assert entry["chart"] == chart and entry["action"] == "changed"
    assert '-  HEIGHT: "768"\n+  HEIGHT: "900"\n' in entry["files"]
    lines = entry["manifests"].splitlines()
    assert any(line.startswith("+") and line.endswith("value: '900'") for line in lines)
    assert any(line.startswith("-") and line.endswith("value: '768'") for line in lines)
    assert cli("render").exit_code == 0
    between = cli("diff", "--from", "HEAD~1", "--to", "HEAD")
    assert between.exit_code == 0 and '+  HEIGHT: "900"' in between.stdout
    assert SECRET not in between.stdout
    broken = cli("diff", "--from", "no-such-ref", "--detailed-exitcode")
    assert broken.exit_code == 1 and "no-such-ref" in broken.stderr


def test_dry_runs_store_nothing(cli: Cli) -> None:
    assert cli("plugin", "register", str(MANIFEST)).exit_code == 0
    repo = cli.settings.repo
    dry = cli(
        "deploy",
        "create",
        "claude-environment",
        "--set",
        f"ANTHROPIC_API_KEY={SECRET}",
        "--dry-run",
    )
    assert dry.exit_code == 0, dry.stderr
    assert (
        "(added)" in dry.stdout
        and "dry run: nothing stored (1 chart(s) would change)" in dry.stdout
    )
    assert SECRET not in dry.stdout
    assert json.loads(cli("deploy", "list", "-o", "json").stdout) == []
    dep = deploy(cli)
    commits = commit_count(repo)
    dry = cli("deploy", "update", dep["deployment_id"], "--set", "HEIGHT=901", "--dry-run")
    assert dry.exit_code == 0 and '+  HEIGHT: "901"' in dry.stdout
    shown = json.loads(cli("deploy", "show", dep["deployment_id"], "-o", "json").stdout)
    assert shown["data"]["HEIGHT"] == "768" and shown["status"] == dep["status"]
    assert commit_count(repo) == commits
    same = cli("deploy", "update", dep["deployment_id"], "--set", "HEIGHT=768", "--dry-run")
    assert same.exit_code == 1 and "nothing to change" in same.stderr


def test_api_dry_run(settings: Settings) -> None:
    server = Server(server_env(settings), "--no-worker").start()
    try:
        api_dry_run(server.url)
    finally:
        server.stop()


def api_dry_run(url: str) -> None:
    with MANIFEST.open("rb") as fh:
        assert httpx.post(f"{url}/plugins", files={"manifest_file": fh}).status_code == 200
    body = {"environment_type": "claude-environment", "data": {"ANTHROPIC_API_KEY": SECRET}}
    dry = httpx.post(f"{url}/deployments", params={"dry_run": "true"}, json=body, timeout=60)
    assert dry.status_code == 200, dry.text
    answer = dry.json()
    assert answer["deployment"]["status"] == "CREATING" and len(answer["changes"]) == 1
    assert answer["changes"][0]["action"] == "added" and SECRET not in dry.text
    assert httpx.get(f"{url}/deployments").json() == []
    created = httpx.post(f"{url}/deployments", json=body, timeout=60).json()
    patch = {"data": {"HEIGHT": "333"}}
    dry = httpx.patch(f"{url}/deployments/{created['id']}", params={"dry_run": "true"}, json=patch)
    assert dry.status_code == 200 and 'HEIGHT: "333"' in dry.json()["changes"][0]["files"]
    assert httpx.get(f"{url}/deployments/{created['id']}").json()["data"]["HEIGHT"] == "768"


@pytest.mark.cluster
def test_live_diff_shows_drift_after_a_manual_helm_upgrade(
    kcli: Cli, kube: Kube, tmp_path: Path
) -> None:
    assert kcli("plugin", "register", str(MANIFEST)).exit_code == 0
    dep = deploy(kcli)
    release, ns = dep["deployment_id"], dep["namespace"]
    assert kcli("apply").exit_code == 0
    calm = kcli("diff", "--live", "--detailed-exitcode")
    assert calm.exit_code == 0, calm.stdout
    upgraded = kube.helm(
        "upgrade",
        release,
        "-n",
        ns,
        "--reuse-values",
        "--set-string",
        "env.HEIGHT=1",
        str(kcli.settings.repo / dep["chart"]),
    )
    assert upgraded.returncode == 0, upgraded.stderr
    drift = kcli("diff", "--live", release, "--detailed-exitcode")
    assert drift.exit_code == 3
    assert drift.stdout.startswith(f"=== {dep['chart']} (drifted)\n")
    lines = drift.stdout.splitlines()
    assert any(line.startswith("-") and line.endswith("value: '1'") for line in lines)
    assert any(line.startswith("+") and line.endswith("value: '768'") for line in lines)
    hidden = base64.b64encode(SECRET.encode()).decode()  # how the Secret holds it
    assert SECRET not in drift.stdout and hidden not in drift.stdout
    # The release's manifest holds the value; what the diff compares holds it nowhere.
    running = kube.helm("get", "manifest", release, "-n", ns).stdout
    assert hidden in running
    compared = redact_secrets(running)
    assert hidden not in compared and "ANTHROPIC_API_KEY: <redacted>" in compared


def test_live_diff_without_a_cluster_says_what_to_check(cli: Cli, tmp_path: Path) -> None:
    assert cli("plugin", "register", str(MANIFEST)).exit_code == 0
    dep = deploy(cli)
    missing = {"OVERSEER_KUBECONFIG": str(tmp_path / "no-such-kubeconfig")}
    for extra in ((), ("--detailed-exitcode",)):
        result = cli("diff", "--live", dep["deployment_id"], *extra, env=missing)
        assert result.exit_code == 1
        assert result.stderr.startswith(
            f"Error: could not read release {dep['deployment_id']} from the cluster: "
        )
        assert result.stderr.endswith("; check OVERSEER_KUBECONFIG (or KUBECONFIG)\n")
