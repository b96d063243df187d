"""The HTTP API against a real `overseer serve`, real PostgreSQL, git, helm and the kwok cluster."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from generator.config import Settings
from tests.conftest import ROOT, Cli, Kube, commit_count

MANIFEST = ROOT / "environments" / "claude" / "plugin.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`overseer serve` in a subprocess."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.args = args
        self.log = Path(env["OVERSEER_HOME"]) / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        Path(self.env["OVERSEER_HOME"]).mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["overseer", "serve", "--port", str(self.port), *self.args],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its writer process and git commands die with it (`kill`)
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/openapi.json", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, self.log.read_text()
            if time.monotonic() > deadline:  # not left running for nobody to stop
                self.stop(signal.SIGKILL)
                raise AssertionError("server did not start: " + self.log.read_text())
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)

    def kill(self) -> None:
        """SIGKILL the server and everything it started (its writer, a git push), as a pod dies."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(60)


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {**os.environ, **Cli(settings).env, "OVERSEER_WORKER_INTERVAL": "0.5"}
    env.pop("OVERSEER_API_TOKEN", None)
    env.update(extra)
    return env


@pytest.fixture
def api(kube_settings: Settings) -> Iterator[Server]:
    server = Server(server_env(kube_settings)).start()
    yield server
    server.stop()


@pytest.fixture
def api_no_worker(settings: Settings) -> Iterator[Server]:
    server = Server(server_env(settings), "--no-worker").start()
    yield server
    server.stop()


# --- The specification's integration test -----------------------------------------------------
# Adapted only to run here: the URL comes from the fixture, the manifest path from the repository,
# and the "ANTHROPIC_API_KEY" check compares case-insensitively (as written it could never hold).

OVERSEER_URL = "http://localhost:8000"


async def wait_for_deployment_ready(
    client: httpx.AsyncClient, deployment_id: str, timeout: int = 300
) -> None:
    """Wait for deployment to be ready."""
    start_time = asyncio.get_event_loop().time()
    while True:
        if asyncio.get_event_loop().time() - start_time > timeout:
            raise TimeoutError(
                f"Deployment {deployment_id} did not become ready within {timeout} seconds"
            )

        response = await client.get(f"{OVERSEER_URL}/deployments/{deployment_id}")
        if response.status_code != 200:
            raise Exception(f"Failed to get deployment status: {response.text}")

        status = response.json()["status"]
        if status == "READY":
            return
        if status == "FAILED":
            raise Exception(f"Deployment {deployment_id} failed")

        await asyncio.sleep(5)


async def spec_test_plugin_registration_and_deployment() -> None:
    """Test the complete plugin registration and deployment flow using Claude environment."""
    manifest_path = MANIFEST
    assert manifest_path.exists(), f"Plugin manifest not found at {manifest_path}"

    async with httpx.AsyncClient() as client:
        with open(manifest_path, "rb") as f:
            files = {"manifest_file": ("plugin.yaml", f)}
            response = await client.post(f"{OVERSEER_URL}/plugins", files=files)
            assert response.status_code == 200, f"Failed to register plugin: {response.text}"
            plugin_data = response.json()
            assert plugin_data["name"] == "claude-environment"

        deploy_data = {
            "environment_type": "claude-environment",
            "tools": [],
            "data": {"ANTHROPIC_API_KEY": "test-key", "HEIGHT": "768", "WIDTH": "1024"},
            "requirement": "test deployment",
        }
        response = await client.post(f"{OVERSEER_URL}/deployments", json=deploy_data)
        assert response.status_code == 201, f"Failed to create deployment: {response.text}"
        deployment_data = response.json()

        deployment_id = deployment_data["deployment_id"]
        await wait_for_deployment_ready(client, deployment_id)

        response = await client.get(f"{OVERSEER_URL}/deployments/{deployment_id}/connect")
        assert response.status_code == 200, f"Failed to get connection details: {response.text}"
        connection = response.json()
        assert "novnc_port" in connection["connection_details"]

        response = await client.delete(f"{OVERSEER_URL}/deployments/{deployment_id}")
        assert response.status_code == 200, f"Failed to delete deployment: {response.text}"


async def spec_test_plugin_validation() -> None:
    """Test plugin validation through Overseer API."""
    async with httpx.AsyncClient() as client:
        deploy_data = {
            "environment_type": "claude-environment",
            "tools": [],
            "data": {"HEIGHT": "768", "WIDTH": "1024"},
            "requirement": "test deployment",
        }
        response = await client.post(f"{OVERSEER_URL}/deployments", json=deploy_data)
        assert response.status_code == 400
        assert "ANTHROPIC_API_KEY".lower() in response.text.lower()

        deploy_data["environment_type"] = "non-existent-plugin"
        response = await client.post(f"{OVERSEER_URL}/deployments", json=deploy_data)
        assert response.status_code == 404


@pytest.mark.cluster
def test_spec_integration(api: Server, kube: Kube) -> None:
    global OVERSEER_URL
    OVERSEER_URL = api.url
    asyncio.run(spec_test_plugin_registration_and_deployment())
    asyncio.run(spec_test_plugin_validation())
    listed = httpx.get(f"{api.url}/deployments").json()
    assert listed == []  # the deployment is deleted
    releases = kube.helm("list", "-A", "-o", "json").stdout
    deadline = time.monotonic() + 60
    while any(r["namespace"] == api.env["OVERSEER_NAMESPACE"] for r in json.loads(releases)):
        assert time.monotonic() < deadline, "the release was not uninstalled"
        time.sleep(0.5)
        releases = kube.helm("list", "-A", "-o", "json").stdout


# --- Behaviour ----------------------------------------------------------------------------------


def test_docs_load_nothing_from_elsewhere(api_no_worker: Server) -> None:
    url = api_no_worker.url
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{url}{page}")
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert assets and not [a for a in assets if "://" in a], assets
        for asset in assets:
            got = httpx.get(f"{url}{asset}")
            assert got.status_code == 200 and len(got.content) > 1000, asset
        assert "/openapi.json" in html.text


def test_endpoints_and_error_shape(api_no_worker: Server) -> None:
    url = api_no_worker.url
    with MANIFEST.open("rb") as f:
        created = httpx.post(f"{url}/plugins", files={"manifest_file": ("plugin.yaml", f)})
    assert created.status_code == 200
    # Advice on the manifest comes as the Kubernetes API sends its own: Warning headers.
    warnings = created.headers.get_list("warning")
    assert [w.split(" ", 3)[:3] for w in warnings] == [
        ["299", "-", '"image.tag'],
        ["299", "-", '"image.pull_policy'],
    ]
    plugin = created.json()
    assert set(plugin) >= {
        "id",
        "name",
        "version",
        "image_name",
        "registry_url",
        "is_active",
        "created_at",
        "updated_at",
        "manifest",
    }
    assert httpx.get(f"{url}/plugins").json()[0]["name"] == "claude-environment"
    assert httpx.get(f"{url}/plugins/claude-environment").json()["id"] == plugin["id"]
    missing = httpx.get(f"{url}/plugins/nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "status": 404,
            "message": 'plugin "nope" is not registered; see GET /plugins',  # the API's wording
            "problems": [],
        }
    }
    bad = httpx.post(
        f"{url}/plugins", files={"manifest_file": ("bad.yaml", b"name: Bad\nversion: 1\n")}
    )
    assert bad.status_code == 400  # as the specification's register_plugin answers
    assert any(p.startswith("name (line 1)") for p in bad.json()["error"]["problems"])
    assert any(
        p.startswith("image (line 1): required key is missing")
        for p in bad.json()["error"]["problems"]
    )
    huge = httpx.post(
        f"{url}/plugins", files={"manifest_file": ("big.yaml", b"#" * (1024 * 1024 + 10))}
    )
    assert huge.status_code == 413
    conflict = httpx.post(
        f"{url}/plugins",
        files={"manifest_file": ("p.yaml", MANIFEST.read_bytes().replace(b'"768"', b'"1"'))},
    )
    assert conflict.status_code == 409 and "bump the version" in conflict.text
    malformed = httpx.post(f"{url}/deployments", json={"tools": "x"})
    assert malformed.status_code == 422 and malformed.json()["error"]["problems"]
    body = {
        "environment_type": "claude-environment",
        "data": {"ANTHROPIC_API_KEY": "sk-api-secret"},
        "tools": ["git"],
        "requirement": "r",
        "ttl_seconds": 600,
    }
    dep = httpx.post(f"{url}/deployments", json=body)
    assert dep.status_code == 201, dep.text
    view = dep.json()
    assert view["status"] == "CREATING" and view["namespace"] and view["rendered_commit"]
    assert view["data"]["ANTHROPIC_API_KEY"] == "<redacted>" and "sk-api-secret" not in dep.text
    by_id = httpx.get(f"{url}/deployments/{view['id']}").json()
    by_name = httpx.get(f"{url}/deployments/{view['deployment_id']}").json()
    assert by_id == by_name
    connect = httpx.get(f"{url}/deployments/{view['id']}/connect").json()
    assert connect["connection_details"]["novnc_port"] == 6080
    unknown = httpx.post(
        f"{url}/deployments", json={**body, "data": {"ANTHROPIC_API_KEY": "k", "ZOOM": "2"}}
    )
    assert unknown.status_code == 400 and "ZOOM" in unknown.json()["error"]["message"]
    patched = httpx.patch(
        f"{url}/deployments/{view['deployment_id']}",
        json={"data": {"HEIGHT": "900", "ANTHROPIC_API_KEY": "sk-rotated"}, "tools": []},
    )
    assert patched.status_code == 200, patched.text
    updated = patched.json()
    assert updated["status"] == "UPDATING" and updated["data"]["HEIGHT"] == "900"
    assert updated["tools"] == [] and updated["rendered_commit"] != view["rendered_commit"]
    assert updated["data"]["ANTHROPIC_API_KEY"] == "<redacted>" and "sk-rotated" not in patched.text
    for change, status, words in [
        ({"data": {"ZOOM": "2"}}, 400, "ZOOM"),
        ({"unset": ["ANTHROPIC_API_KEY"]}, 400, "ANTHROPIC_API_KEY"),
        ({"colour": "red"}, 422, "colour"),
    ]:
        refused = httpx.patch(f"{url}/deployments/{view['id']}", json=change)
        assert refused.status_code == status and words in refused.text, refused.text
    assert httpx.patch(f"{url}/deployments/nope", json={}).status_code == 404
    gone = httpx.delete(f"{url}/deployments/{view['id']}")
    assert gone.status_code == 200 and gone.json()["status"] == "DELETED"
    assert httpx.delete(f"{url}/deployments/{view['id']}").status_code == 404


def test_hundred_concurrent_creates(api_no_worker: Server, settings: Settings) -> None:
    url = api_no_worker.url
    with MANIFEST.open("rb") as f:
        assert (
            httpx.post(f"{url}/plugins", files={"manifest_file": ("plugin.yaml", f)}).status_code
            == 200
        )
    body = {"environment_type": "claude-environment", "data": {"ANTHROPIC_API_KEY": "k"}}

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            return list(
                await asyncio.gather(
                    *(client.post(f"{url}/deployments", json=body) for _ in range(100))
                )
            )

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [201] * 100, [
        r.text for r in responses if r.status_code != 201
    ][:3]
    releases = {r.json()["deployment_id"] for r in responses}
    assert len(releases) == 100
    repo = settings.repo
    # The server wrote objects and a ref only; its files follow when a reader asks.
    assert not (repo / settings.namespace).exists()
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "--name-only", "HEAD", f"{settings.namespace}/"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert {p.rsplit("/", 1)[1] for p in listed} == releases
    assert commit_count(repo) <= 100  # group commit: several deployments per commit
    fsck = subprocess.run(
        ["git", "-C", str(repo), "fsck", "--strict"], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr
    assert Cli(settings)("render", "--check").exit_code == 0  # brings the files up to date
    assert {p.name for p in repo.glob(f"{settings.namespace}/*")} == releases
    assert len(httpx.get(f"{url}/deployments").json()) == 100


@pytest.mark.cluster
def test_accepted_work_survives_a_restart(kube_settings: Settings, kube: Kube) -> None:
    env = server_env(kube_settings)
    first = Server(env, "--no-worker").start()  # accepts and renders, never applies
    with MANIFEST.open("rb") as f:
        httpx.post(f"{first.url}/plugins", files={"manifest_file": ("plugin.yaml", f)})
    dep = httpx.post(
        f"{first.url}/deployments",
        json={"environment_type": "claude-environment", "data": {"ANTHROPIC_API_KEY": "k"}},
    ).json()
    first.stop(signal.SIGKILL)  # killed between accept and apply
    second = Server(env).start()
    try:
        deadline = time.monotonic() + 120
        while (
            status := httpx.get(f"{second.url}/deployments/{dep['id']}").json()["status"]
        ) != "READY":
            assert status != "FAILED" and time.monotonic() < deadline, status
            time.sleep(0.5)
    finally:
        second.stop()


def test_auth(settings: Settings) -> None:
    server = Server(server_env(settings, OVERSEER_API_TOKEN="s3cret-token"), "--no-worker").start()
    try:
        files = {"manifest_file": ("plugin.yaml", MANIFEST.read_bytes())}
        denied = httpx.post(f"{server.url}/plugins", files=files)
        assert denied.status_code == 401
        assert "Authorization: Bearer" in denied.json()["error"]["message"]
        assert denied.headers["www-authenticate"] == "Bearer"
        wrong = httpx.post(
            f"{server.url}/plugins", files=files, headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        assert httpx.delete(f"{server.url}/deployments/x").status_code == 401
        assert httpx.patch(f"{server.url}/deployments/x", json={}).status_code == 401
        ok = httpx.post(
            f"{server.url}/plugins", files=files, headers={"Authorization": "Bearer s3cret-token"}
        )
        assert ok.status_code == 200
        # Once tokens are in use, reading needs one too; only health and the API's description
        # are open.
        assert httpx.get(f"{server.url}/plugins").status_code == 401
        bearer = {"Authorization": "Bearer s3cret-token"}
        assert httpx.get(f"{server.url}/plugins", headers=bearer).status_code == 200
        for open_path in ("/healthz", "/openapi.json", "/docs"):
            assert httpx.get(f"{server.url}{open_path}").status_code == 200, open_path
    finally:
        server.stop()
    refused = subprocess.run(
        ["overseer", "serve", "--host", "0.0.0.0", "--port", str(free_port())],  # noqa: S104
        env=server_env(settings),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode != 0
    assert (
        "refusing to listen on 0.0.0.0 without authentication: set OVERSEER_API_TOKEN or create "
        "a token (`overseer token create`)" in refused.stderr
    )


def test_database_unreachable_is_503(settings: Settings) -> None:
    server = Server(
        server_env(settings, DATABASE_URL="postgresql://u:pw@127.0.0.1:1/x"), "--no-worker"
    ).start()
    try:
        answer = httpx.get(f"{server.url}/plugins", timeout=30)
        assert answer.status_code == 503
        assert answer.json()["error"]["message"].startswith(
            "cannot connect to PostgreSQL at postgresql://u:***@127.0.0.1:1/x"
        )
    finally:
        server.stop()


def test_fuzz_finds_no_server_error(api_no_worker: Server) -> None:
    import schemathesis
    from hypothesis import HealthCheck
    from hypothesis import settings as hsettings

    with MANIFEST.open("rb") as f:
        httpx.post(f"{api_no_worker.url}/plugins", files={"manifest_file": ("plugin.yaml", f)})
    schema = schemathesis.openapi.from_url(f"{api_no_worker.url}/openapi.json")
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = operation.as_strategy()

        @hsettings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @__import__("hypothesis").given(case=strategy)
        def check(case: object) -> None:
            response = case.call(base_url=api_no_worker.url)  # type: ignore[attr-defined]
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                )  # type: ignore[attr-defined]

        check()
    assert failures == []


def test_a_git_failure_is_the_servers_fault_and_changes_nothing(api_no_worker: Server) -> None:
    url, repo = api_no_worker.url, Path(api_no_worker.env["OVERSEER_REPO"])
    body = {"environment_type": "claude-environment", "data": {"ANTHROPIC_API_KEY": "k"}}
    with MANIFEST.open("rb") as fh:
        assert httpx.post(f"{url}/plugins", files={"manifest_file": fh}).status_code == 200
    assert httpx.post(f"{url}/deployments", json=body, timeout=60).status_code == 201
    before = commit_count(repo)
    # A real fault, made on demand: another writer's lock on the branch.
    lock = repo / ".git" / "refs" / "heads" / "main.lock"
    lock.write_text("")
    failed = httpx.post(f"{url}/deployments", json=body, timeout=60)
    assert failed.status_code == 500, failed.text
    assert failed.json()["error"]["message"].startswith("git update-ref failed: ")
    assert len(httpx.get(f"{url}/deployments").json()) == 1  # the failed request stored nothing
    assert commit_count(repo) == before
    lock.unlink()
    assert httpx.post(f"{url}/deployments", json=body, timeout=60).status_code == 201
    assert len(httpx.get(f"{url}/deployments").json()) == 2
