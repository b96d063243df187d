"""Review mode against a real Gitea and the kwok cluster: proposals, merges, closes, webhooks.

Also apply following Git in direct mode: hand edits and reverts on the remote's main.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from generator.config import Settings
from tests.conftest import Cli, Kube
from tests.forge import Gitea
from tests.test_api import MANIFEST, Server, server_env

SECRET_VALUE = "sk-review-" + uuid.uuid4().hex  # must appear in no pull request, branch or output


def run(cli: Cli, env: dict[str, str], *args: str) -> str:
    result = cli(*args, env=env)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert SECRET_VALUE not in result.stdout + result.stderr
    return result.stdout


def create(cli: Cli, env: dict[str, str], *extra: str) -> dict[str, Any]:
    out = run(
        cli,
        env,
        "deploy",
        "create",
        "claude-environment",
        "--set",
        f"ANTHROPIC_API_KEY={SECRET_VALUE}",
        *extra,
        "-o",
        "json",
    )
    data: dict[str, Any] = json.loads(out)
    return data


def show(cli: Cli, env: dict[str, str], ident: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(run(cli, env, "deploy", "show", ident, "-o", "json"))
    return data


def registered(cli: Cli, env: dict[str, str]) -> None:
    run(cli, env, "plugin", "register", str(MANIFEST))


def no_secret_on_the_forge(gitea: Gitea, repo: str, remote: str, tmp: Path) -> None:
    for pull in gitea.pulls(repo):
        assert SECRET_VALUE not in pull["title"] + pull["body"]
    clone = tmp / f"check-{uuid.uuid4().hex[:6]}"
    subprocess.run(["git", "clone", "-q", "--mirror", remote, str(clone)], check=True)
    history = subprocess.run(
        ["git", "-C", str(clone), "log", "--all", "-p", "--format=%B"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert SECRET_VALUE not in history.stdout


def release_status(kube: Kube, release: str, namespace: str) -> str | None:
    proc = kube.helm("status", release, "-n", namespace, "-o", "json")
    return json.loads(proc.stdout)["info"]["status"] if proc.returncode == 0 else None


def wait_for(check: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.mark.cluster
def test_close_without_merging_rejects_a_create_and_undoes_an_update(
    kcli: Cli, kube: Kube, gitea: Gitea, review_env: dict[str, str], tmp_path: Path
) -> None:
    env, repo = review_env, review_env["OVERSEER_FORGE_REPO"]
    registered(kcli, env)
    dep = create(kcli, env)
    release, ns = dep["deployment_id"], dep["namespace"]
    assert dep["status"] == "PROPOSED"
    pull = dep["pull_request"]
    assert pull["state"] == "open" and pull["change"] == "create"
    [branch] = [b for b in gitea.branches(repo) if b != "main"]
    assert branch.startswith(f"overseer/{release}-")
    assert gitea.pull(repo, pull["number"])["head"]["ref"] == branch
    # Not merged: apply installs nothing, however often it runs.
    assert "nothing to apply" in run(kcli, env, "apply")
    assert release_status(kube, release, ns) is None
    gitea.close(repo, pull["number"])
    run(kcli, env, "apply")  # asks the forge first
    shown = show(kcli, env, release)
    assert shown["status"] == "REJECTED" and shown["pull_request"]["state"] == "closed"
    assert release_status(kube, release, ns) is None
    assert gitea.branches(repo) == ["main"]
    assert release not in run(kcli, env, "deploy", "list")  # no longer live

    # An update of a live deployment, closed: the previous values stay.
    live = create(kcli, env, "--set", "HEIGHT=700")
    gitea.merge(repo, live["pull_request"]["number"])
    assert "applied" in run(kcli, env, "apply")
    assert show(kcli, env, live["deployment_id"])["status"] == "READY"
    run(kcli, env, "deploy", "update", live["deployment_id"], "--set", "HEIGHT=900")
    update = show(kcli, env, live["deployment_id"])
    assert update["status"] == "PROPOSED" and update["data"]["HEIGHT"] == "900"
    gitea.close(repo, update["pull_request"]["number"])
    run(kcli, env, "apply")
    after = show(kcli, env, live["deployment_id"])
    assert after["status"] == "REJECTED" and after["data"]["HEIGHT"] == "700"
    # The next rounds propose nothing again: the database matches main once more.
    before = len(gitea.pulls(repo))
    run(kcli, env, "render")
    assert len(gitea.pulls(repo)) == before
    no_secret_on_the_forge(gitea, repo, env["OVERSEER_GIT_REMOTE"], tmp_path)


@pytest.mark.cluster
def test_two_changes_merge_in_either_order_and_an_update_reuses_its_pull_request(
    kcli: Cli, kube: Kube, gitea: Gitea, review_env: dict[str, str], tmp_path: Path
) -> None:
    env, repo = review_env, review_env["OVERSEER_FORGE_REPO"]
    registered(kcli, env)
    first, second = create(kcli, env), create(kcli, env)
    n1, n2 = first["pull_request"]["number"], second["pull_request"]["number"]
    assert n1 != n2
    # An update while the first is open: the same pull request, its branch rebuilt from main.
    run(kcli, env, "deploy", "update", first["deployment_id"], "--set", "HEIGHT=901")
    updated = show(kcli, env, first["deployment_id"])
    assert updated["pull_request"]["number"] == n1
    assert [p["number"] for p in gitea.pulls(repo, "open")] == [n2, n1]
    assert 'HEIGHT: "901"' in gitea.pull(repo, n1)["body"]
    # Each branch holds only its own change: two merges, in the order opposite to creation.
    gitea.merge(repo, n2)
    gitea.merge(repo, n1)
    outcomes = run(kcli, env, "apply")
    assert outcomes.count(" applied ") == 2, outcomes
    for dep in (first, second):
        assert show(kcli, env, dep["deployment_id"])["status"] == "READY"
        assert release_status(kube, dep["deployment_id"], dep["namespace"]) == "deployed"
    env_vars = kube.json("get", "deployment", first["deployment_id"], "-n", first["namespace"])
    container = env_vars["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    assert {"name": "HEIGHT", "value": "901"} in container["env"]
    assert gitea.branches(repo) == ["main"]
    # A deletion is proposed too, and the release goes only once it is merged.
    run(kcli, env, "deploy", "delete", second["deployment_id"])
    assert release_status(kube, second["deployment_id"], second["namespace"]) == "deployed"
    removal = show(kcli, env, second["deployment_id"])["pull_request"]
    assert removal["change"] == "delete" and removal["state"] == "open"
    gitea.merge(repo, removal["number"])
    assert "uninstalled" in run(kcli, env, "apply")
    assert release_status(kube, second["deployment_id"], second["namespace"]) is None
    assert show(kcli, env, second["deployment_id"])["status"] == "DELETED"
    no_secret_on_the_forge(gitea, repo, env["OVERSEER_GIT_REMOTE"], tmp_path)


@contextmanager
def review_server(settings: Settings, review: dict[str, str], *, poll: str) -> Iterator[Server]:
    """`overseer serve` in review mode, polling every `poll` seconds, with the plugin registered."""
    server = Server(server_env(settings, **review, OVERSEER_POLL_INTERVAL=poll)).start()
    try:
        with MANIFEST.open("rb") as fh:
            registered = httpx.post(f"{server.url}/plugins", files={"manifest_file": fh})
        assert registered.status_code == 200, registered.text
        yield server
    finally:
        server.stop()


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.cluster
def test_full_cycle_through_the_api_and_a_webhook(
    kube_settings: Settings, kube: Kube, gitea: Gitea, review_env: dict[str, str]
) -> None:
    with review_server(kube_settings, review_env, poll="3600") as server:
        repo, secret = review_env["OVERSEER_FORGE_REPO"], review_env["OVERSEER_WEBHOOK_SECRET"]
        gitea.add_webhook(repo, f"{server.url}/webhooks/gitea", secret)
        body = {
            "environment_type": "claude-environment",
            "data": {"ANTHROPIC_API_KEY": SECRET_VALUE},
        }
        created = httpx.post(f"{server.url}/deployments", json=body, timeout=60)
        assert created.status_code == 201, created.text
        dep_id = created.json()["id"]

        def get() -> dict[str, Any]:
            data: dict[str, Any] = httpx.get(f"{server.url}/deployments/{dep_id}").json()
            return data

        shown = get()
        assert shown["status"] == "PROPOSED", shown
        number = shown["pull_request"]["number"]
        assert shown["pull_request"]["url"].endswith(f"/pulls/{number}")
        assert "an API client" in gitea.pull(repo, number)["body"]

        # A forged delivery is refused and changes nothing; so is one with no signature.
        fake = json.dumps({"action": "closed", "number": number}).encode()
        for headers in ({"X-Gitea-Signature": sign("wrong", fake)}, {}):
            answer = httpx.post(
                f"{server.url}/webhooks/gitea",
                content=fake,
                headers={"X-Gitea-Event": "pull_request", **headers},
            )
            assert answer.status_code == 401, answer.text
        assert httpx.post(f"{server.url}/webhooks/github", content=fake).status_code == 404
        assert get()["status"] == "PROPOSED"

        gitea.merge(repo, number)  # Gitea delivers the signed webhook; no poll runs for an hour
        wait_for(lambda: get()["status"] == "READY", "READY after the merge's webhook")
        with psycopg.connect(kube_settings.database_url or "") as conn:  # Gitea's delivery did it
            row = conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()
        assert row is not None and row[0] >= 1
        assert release_status(kube, shown["deployment_id"], shown["namespace"]) == "deployed"
        assert get()["pull_request"]["state"] == "merged"

        # A replay of a genuine delivery changes nothing.
        delivery = str(uuid.uuid4())
        signed = {
            "X-Gitea-Event": "pull_request",
            "X-Gitea-Delivery": delivery,
            "X-Gitea-Signature": sign(secret, fake),
        }
        first = httpx.post(f"{server.url}/webhooks/gitea", content=fake, headers=signed)
        again = httpx.post(f"{server.url}/webhooks/gitea", content=fake, headers=signed)
        assert first.status_code == 200 and again.json()["status"] == "duplicate"
        assert get()["status"] == "READY"


@pytest.mark.cluster
def test_polling_alone_reaches_ready_when_no_webhook_comes(
    kube_settings: Settings, kube: Kube, gitea: Gitea, review_env: dict[str, str]
) -> None:
    with review_server(kube_settings, review_env, poll="1") as server:
        repo = review_env["OVERSEER_FORGE_REPO"]
        body = {"environment_type": "claude-environment", "data": {"ANTHROPIC_API_KEY": "k"}}
        dep_id = httpx.post(f"{server.url}/deployments", json=body, timeout=60).json()["id"]
        shown = httpx.get(f"{server.url}/deployments/{dep_id}").json()
        gitea.merge(repo, shown["pull_request"]["number"])  # no webhook is configured
        wait_for(
            lambda: httpx.get(f"{server.url}/deployments/{dep_id}").json()["status"] == "READY",
            "READY by polling",
        )


def git(*args: str, cwd: Path) -> str:
    hand = ["-c", "user.name=reviewer", "-c", "user.email=r@example.invalid"]
    done = subprocess.run(
        ["git", *hand, *args], cwd=cwd, capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.mark.cluster
def test_hand_edits_and_reverts_on_the_remotes_main_reach_the_cluster(
    kcli: Cli, kube: Kube, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    env = {"OVERSEER_GIT_REMOTE": str(remote)}  # direct mode
    registered(kcli, env)
    dep = create(kcli, env)
    release, ns, chart = dep["deployment_id"], dep["namespace"], dep["chart"]
    assert run(kcli, env, "apply").splitlines()[1].split()[2:5] == ["applied", "READY", "1"]

    def height() -> str:
        spec = kube.json("get", "deployment", release, "-n", ns)["spec"]
        env_list = spec["template"]["spec"]["containers"][0]["env"]  # type: ignore[index]
        return str(next(e["value"] for e in env_list if e["name"] == "HEIGHT"))

    assert height() == "768"
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True)
    values = work / chart / "values.yaml"
    values.write_text(values.read_text().replace('HEIGHT: "768"', 'HEIGHT: "640"'))
    git("commit", "-qam", "hand edit", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    assert run(kcli, env, "apply").splitlines()[1].split()[2:5] == ["applied", "READY", "2"]
    assert height() == "640"
    # The database stays the source for rendering: the edit is reported as drift.
    drift = kcli("render", "--check", "--ref", "refs/overseer/remote-main", env=env)
    assert drift.exit_code == 3 and f"{chart}: differs: values.yaml" in drift.stdout
    git("revert", "--no-edit", "HEAD", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    assert run(kcli, env, "apply").splitlines()[1].split()[2:5] == ["applied", "READY", "3"]
    assert height() == "768"
    # `--ref` applies what another commit says: the hand edit again, from its sha.
    edited = git("rev-parse", "HEAD~1", cwd=work).strip()
    out = run(kcli, env, "apply", "--ref", edited)
    assert out.splitlines()[1].split()[2:5] == ["applied", "READY", "4"] and height() == "640"
    # A commit without the chart uninstalls it; main, which the database renders again, puts it
    # back (the database is the source for rendering, Git's main for applying).
    git("rm", "-rq", chart, cwd=work)
    git("commit", "-qm", "remove by hand", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    removed = git("rev-parse", "HEAD", cwd=work).strip()
    out = run(kcli, env, "apply", "--ref", removed)
    assert out.splitlines()[1].split()[:3] == [release, ns, "uninstalled"]
    assert release_status(kube, release, ns) is None
    out = run(kcli, env, "apply")
    assert out.splitlines()[1].split()[2:4] == ["applied", "READY"]
    git("pull", "-q", "origin", "main", cwd=work)
    assert (work / chart / "values.yaml").is_file()  # rendered again, on top of the removal


@pytest.mark.cluster
def test_an_expiry_and_a_plugin_upgrade_are_proposed_too(
    kcli: Cli, kube: Kube, gitea: Gitea, review_env: dict[str, str]
) -> None:
    env, repo = review_env, review_env["OVERSEER_FORGE_REPO"]
    registered(kcli, env)
    dep = create(kcli, env, "--ttl", "3600")
    release, ns = dep["deployment_id"], dep["namespace"]
    gitea.merge(repo, dep["pull_request"]["number"])
    run(kcli, env, "apply")
    assert release_status(kube, release, ns) == "deployed"
    with psycopg.connect(kcli.env["DATABASE_URL"]) as conn:  # time passes: its TTL runs out
        conn.execute(
            "UPDATE deployments SET expires_at = now() - interval '1 second' WHERE id = %s",
            (dep["id"],),
        )
    # The TTL ran out: the removal is proposed, and the release stays until it is merged.
    assert "proposed" in run(kcli, env, "gc")
    expiry = show(kcli, env, release)["pull_request"]
    assert expiry["change"] == "expire" and expiry["state"] == "open"
    assert release_status(kube, release, ns) == "deployed"
    gitea.close(repo, expiry["number"])  # the reviewers keep it
    run(kcli, env, "apply")
    kept = show(kcli, env, release)
    assert kept["status"] == "REJECTED" and kept["expires_at"] is None and not kept["deleted_at"]
    assert "nothing expired" in run(kcli, env, "gc")
    # A plugin's new version re-renders its deployments: proposed as an upgrade.
    upgraded = MANIFEST.read_text().replace("version: 1.0.0", "version: 1.1.0")
    newer = kcli.settings.repo.parent / "plugin-1.1.0.yaml"
    newer.write_text(upgraded)
    run(kcli, env, "plugin", "register", str(newer))
    run(kcli, env, "render")
    upgrade = show(kcli, env, release)["pull_request"]
    assert upgrade["change"] == "upgrade" and upgrade["state"] == "open"
    assert "claude-environment@1.1.0" in gitea.pull(repo, upgrade["number"])["title"]
    gitea.merge(repo, upgrade["number"])
    out = run(kcli, env, "apply")
    assert out.splitlines()[1].split()[:3] == [release, ns, "applied"]
    labels = kube.json("get", "deployment", release, "-n", ns)["metadata"]["labels"]
    assert labels["helm.sh/chart"] == "claude-environment-1.1.0"  # type: ignore[index]


def test_review_mode_refuses_to_run_without_what_it_needs(
    cli: Cli, gitea: Gitea, review_env: dict[str, str]
) -> None:
    registered(cli, {})
    for missing, message in (
        (
            "OVERSEER_GIT_REMOTE",
            "review mode proposes pull requests on a remote; set OVERSEER_GIT_REMOTE",
        ),
        (
            "OVERSEER_FORGE",
            "OVERSEER_FORGE='': review mode needs a forge; set it to gitea, github, gitlab",
        ),
        ("OVERSEER_FORGE_TOKEN", "OVERSEER_FORGE_TOKEN (or OVERSEER_FORGE_TOKEN_FILE) is not set"),
    ):
        env = {**review_env, missing: ""}
        result = cli(
            "deploy", "create", "claude-environment", "--set", "ANTHROPIC_API_KEY=k", env=env
        )
        assert result.exit_code == 1 and message in result.stderr, result.stderr
    # The forge refuses (a token it does not know): a clear error, and nothing is stored.
    env = {**review_env, "OVERSEER_FORGE_TOKEN": "not-a-token"}
    result = cli("deploy", "create", "claude-environment", "--set", "ANTHROPIC_API_KEY=k", env=env)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: gitea: ") and "failed: HTTP 401" in result.stderr
    assert json.loads(run(cli, review_env, "deploy", "list", "-o", "json")) == []
    assert gitea.pulls(review_env["OVERSEER_FORGE_REPO"]) == []
    # The token may come from a file (a mounted Secret) instead of the environment.
    token_file = cli.settings.repo.parent / "forge-token"
    token_file.write_text(review_env["OVERSEER_FORGE_TOKEN"] + "\n")
    env = {**review_env, "OVERSEER_FORGE_TOKEN": "", "OVERSEER_FORGE_TOKEN_FILE": str(token_file)}
    assert create(cli, env)["status"] == "PROPOSED"


@pytest.mark.cluster
def test_apply_refuses_to_uninstall_most_releases_at_once(kcli: Cli, kube: Kube) -> None:
    registered(kcli, {})
    deps = [create(kcli, {}) for _ in range(3)]
    assert run(kcli, {}, "apply").count(" applied ") == 3
    first = git("rev-list", "--max-parents=0", "HEAD", cwd=kcli.settings.repo).strip()
    # The first commit holds one chart of three: two would go, most of what is installed.
    refused = kcli("apply", "--ref", first)
    assert refused.exit_code == 5
    assert (
        f"apply would uninstall 2 of 3 releases, whose charts are gone from {first}"
        in refused.stderr
    )
    assert all(release_status(kube, d["deployment_id"], d["namespace"]) == "deployed" for d in deps)
    forced = run(kcli, {}, "apply", "--ref", first, "--force")
    assert forced.count(" uninstalled ") == 2
