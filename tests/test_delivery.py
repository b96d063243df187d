"""The repository syncs without Overseer: Argo CD and Flux files, and secrets carried by charts.

Every generated engine file and every chart passes kubeconform against the real CRD schemas;
SOPS files open with the pinned `sops` and an age key made by `age-keygen`; SealedSecrets open
with the pinned `kubeseal` and the controller's private key. No secret value reaches Git.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from generator.delivery import load
from generator.errors import Misconfigured
from generator.tools.kubeconform import validate
from generator.validate import validate_engine_files
from tests.conftest import Cli, git_log, need
from tests.forge import Gitea

SECRET = "sk-delivery-TOPSECRET-91d3"
ROTATED = "sk-delivery-ROTATED-77aa"
NAMESPACES = "team-apply,team-sops,team-sealed,team-ext"

pytestmark = [pytest.mark.postgres, pytest.mark.helm]


# --- keys ----------------------------------------------------------------------------------


def delivery_file(where: Path, age: str, cert: Path, *, engine: str = "flux") -> Path:
    path = where / "delivery.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "repoURL": "https://git.example.com/platform/gitops.git",
                "engine": engine,
                "secrets": {
                    "default": {"method": "apply"},
                    "namespaces": {
                        "team-sops": {"method": "sops", "age": [age]},
                        "team-sealed": {"method": "sealed-secrets", "certificateFile": cert.name},
                        "team-ext": {
                            "method": "external-secrets",
                            "store": {"name": "vault", "kind": "ClusterSecretStore"},
                        },
                    },
                },
            }
        )
    )
    if cert.parent != where:
        (where / cert.name).write_bytes(cert.read_bytes())  # relative to the delivery file
    return path


@pytest.fixture
def pulled(
    cli: Cli,
    claude_manifest: Path,
    tmp_path: Path,
    age_key: tuple[Path, str],
    sealing_key: tuple[Path, Path],
) -> Cli:
    """The CLI with a delivery file: Flux, and one namespace per secret method."""
    cli.env.update(
        OVERSEER_DELIVERY=str(delivery_file(tmp_path, age_key[1], sealing_key[1])),
        OVERSEER_ALLOWED_NAMESPACES=NAMESPACES,
    )
    assert cli("plugin", "register", str(claude_manifest)).exit_code == 0
    return cli


def create(cli: Cli, namespace: str, *sets: str) -> str:
    result = cli(
        "deploy", "create", "claude-environment", "--namespace", namespace, *sets, "-o", "json"
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    return str(json.loads(result.stdout)["deployment_id"])


def show(repo: Path, path: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(repo), "show", f"HEAD:{path}"], capture_output=True, check=True
    ).stdout


def exists(repo: Path, path: str) -> bool:
    return (
        subprocess.run(
            ["git", "-C", str(repo), "cat-file", "-e", f"HEAD:{path}"], capture_output=True
        ).returncode
        == 0
    )


def sops_decrypt(key: Path, data: bytes) -> dict[str, object]:
    sops = need("sops", "run `make tools` (builds the pinned sops into ~/.cache/overseer)")
    out = subprocess.run(
        [sops, "decrypt", "--input-type", "yaml", "--output-type", "yaml", "/dev/stdin"],
        input=data,
        capture_output=True,
        check=True,
        env={**os.environ, "SOPS_AGE_KEY_FILE": str(key)},
    ).stdout
    loaded: dict[str, object] = yaml.safe_load(out)
    return loaded


def unseal(key: Path, data: bytes) -> dict[str, str]:
    kubeseal = need(
        "kubeseal", "run `make tools` (builds the pinned kubeseal into ~/.cache/overseer)"
    )
    out = subprocess.run(
        [kubeseal, "--recovery-unseal", "--recovery-private-key", str(key), "-o", "json"],
        input=data,
        capture_output=True,
        check=True,
    ).stdout
    secret = json.loads(out)
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def rendered_secret_values(documents: list[dict[str, object]]) -> dict[str, str]:
    secrets = [d for d in documents if d and d.get("kind") == "Secret"]
    assert len(secrets) == 1, secrets
    data = secrets[0]["data"]
    assert isinstance(data, dict)
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def no_plaintext_anywhere(repo: Path, *values: str) -> None:
    objects = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch"],
        capture_output=True,
        check=True,
    ).stdout
    assert b"secretEnv" in objects  # the objects were read...
    for value in values:
        assert value.encode() not in objects  # ...and hold no value,
        assert base64.b64encode(value.encode()) not in objects  # nor its base64
    for path in repo.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            for value in values:
                assert value.encode() not in path.read_bytes(), path


# --- the delivery file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ({"secrets": {"default": {"method": "sops"}}}, "secrets.default: method sops needs `age`"),
        (
            {"secrets": {"namespaces": {"x": {"method": "sops", "age": ["age1nope"]}}}},
            "secrets.namespaces.x.age: 'age1nope' is not an age recipient",
        ),
        ({"engine": "argocd"}, "`repoURL` is required with `engine`"),
        ({"engine": "spinnaker", "repoURL": "u"}, "engine: Input should be 'argocd' or 'flux'"),
        ({"engine": ["argocd", "flux"], "repoURL": "u"}, "engine: Input should be"),
        ({"secrets": {"default": {"method": "sealed-secrets"}}}, "needs `certificate`"),
        ({"secrets": {"default": {"method": "vault"}}}, "secrets.default.method"),
        ({"secret": {}}, "secret: Extra inputs are not permitted"),
        (
            {
                "secrets": {
                    "default": {
                        "method": "external-secrets",
                        "store": {"name": "v"},
                        "key": "x/{release}/{team}",
                    }
                }
            },
            "only {namespace} and {release} may stand in braces",
        ),
    ],
)
def test_a_bad_delivery_file_names_the_field(
    tmp_path: Path, content: dict[str, object], named: str
) -> None:
    path = tmp_path / "delivery.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(Misconfigured) as err:
        load(path)
    assert named in err.value.message
    assert f"OVERSEER_DELIVERY={path}" in err.value.message


def test_a_bad_delivery_file_fails_the_command_with_nothing_written(
    cli: Cli, claude_manifest: Path, tmp_path: Path
) -> None:
    assert cli("plugin", "register", str(claude_manifest)).exit_code == 0
    path = tmp_path / "delivery.yaml"
    path.write_text("engine: flux\n")
    result = cli("deploy", "create", "claude-environment", "--set", "ANTHROPIC_API_KEY=k",
                 env={"OVERSEER_DELIVERY": str(path)})  # fmt: skip
    assert result.exit_code == 1
    assert "repoURL" in result.stderr
    assert cli("deploy", "list", "-o", "json").stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("secrets", "named"),
    [
        (
            {"namespaces": {"team-sosp": {"method": "sops", "age": ["age1" + "q" * 58]}}},
            "secrets.namespaces names team-sosp, which no deployment may use",
        ),
        (
            {"default": {"method": "sealed-secrets", "certificate": "not a certificate"}},
            "sealed-secrets certificate: not a PEM certificate",
        ),
    ],
)
def test_what_only_a_render_would_find_stops_the_command_at_once(
    cli: Cli, claude_manifest: Path, tmp_path: Path, secrets: dict[str, object], named: str
) -> None:
    assert cli("plugin", "register", str(claude_manifest)).exit_code == 0
    path = tmp_path / "delivery.yaml"
    path.write_text(yaml.safe_dump({"secrets": secrets}))
    result = cli("deploy", "create", "claude-environment", "--set", "ANTHROPIC_API_KEY=k",
                 env={"OVERSEER_DELIVERY": str(path)})  # fmt: skip
    assert result.exit_code == 1
    assert named in result.stderr
    assert cli("deploy", "list", "-o", "json").stdout.strip() == "[]"


# --- engines -------------------------------------------------------------------------------


@pytest.mark.parametrize("release", ["claude-environment-b0000001", "web", "a-1", "2024-01-01"])
@pytest.mark.parametrize("sops", [False, True])
@pytest.mark.parametrize("source", ["overseer", "overseer-release-placeholder"])
def test_a_helmrelease_filled_in_is_the_one_the_dumper_writes(
    release: str, sops: bool, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generator.chart_path import ChartPath
    from generator.delivery import engines
    from generator.delivery.config import Delivery

    flux = Delivery.model_validate(
        {"engine": "flux", "repoURL": "https://git.example.com/g", "flux": {"source": source}}
    )
    path = ChartPath.of("team-a", release)
    files = engines.release_files(flux, path, b"sealed" if sops else None)
    assert files["helmrelease.yaml"] == engines.dump(engines._helm_release(flux, path, sops))
    filled = release.startswith(("claude", "a-")) and source == "overseer"
    again = engines.release_files(flux, path, b"sealed" if sops else None)
    assert again == files
    if filled:  # the second file of this namespace is filled in, with no dump at all
        monkeypatch.setattr(engines, "dump", lambda doc: pytest.fail("dumped"))
        engines.release_files(flux, ChartPath.of("team-a", "other-1"), b"s" if sops else None)


def switch(cli: Cli, tmp_path: Path, age: str, cert: Path, engine: str) -> None:
    """Point the CLI at a delivery file naming another engine."""
    where = tmp_path / engine
    where.mkdir()
    cli.env["OVERSEER_DELIVERY"] = str(delivery_file(where, age, cert, engine=engine))


def listing(repo: Path, under: str) -> list[str]:
    return subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "HEAD", under],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip


def test_engine_files_follow_the_charts_in_the_same_commits(
    pulled: Cli, tmp_path: Path, age_key: tuple[Path, str], sealing_key: tuple[Path, Path]
) -> None:
    repo = pulled.settings.repo
    first = create(pulled, "team-sealed", "--set", "ANTHROPIC_API_KEY=k")
    second = create(pulled, "team-ext")

    source = yaml.safe_load(show(repo, ".overseer/flux/gitrepository.yaml"))
    assert source["spec"]["url"] == "https://git.example.com/platform/gitops.git"
    release = yaml.safe_load(show(repo, f".overseer/flux/team-sealed/{first}/helmrelease.yaml"))
    chart = release["spec"]["chart"]["spec"]
    assert chart["chart"] == f"./team-sealed/{first}"
    assert chart["reconcileStrategy"] == "Revision"
    assert release["metadata"]["namespace"] == "team-sealed"

    # Deleting a deployment takes its HelmRelease away in the commit that removes its chart.
    assert pulled("deploy", "delete", first).exit_code == 0
    changed = git_log(repo, "-1", "--name-status", "--format=").split("\n")
    assert f"D\tteam-sealed/{first}/values.yaml" in changed
    assert f"D\t.overseer/flux/team-sealed/{first}/helmrelease.yaml" in changed
    assert exists(repo, f".overseer/flux/team-ext/{second}/helmrelease.yaml")

    # One installer owns each release: with an engine, Overseer's apply stands aside, and a
    # secret value whose namespace's method is `apply` would reach no cluster.
    refused = pulled("apply")
    assert refused.exit_code == 1
    assert "flux syncs the repository" in refused.stderr and "`apply: true`" in refused.stderr
    lost = pulled("deploy", "create", "claude-environment", "--namespace", "team-apply",
                  "--set", f"ANTHROPIC_API_KEY={SECRET}")  # fmt: skip
    assert lost.exit_code == 1
    assert "ANTHROPIC_API_KEY" in lost.stderr and "would reach no cluster" in lost.stderr
    assert SECRET not in lost.stdout + lost.stderr

    # Nothing changed: a render writes nothing, commits nothing.
    head = git_log(repo, "-1", "--format=%H")
    assert pulled("render").exit_code == 0
    assert pulled("render", "--full").exit_code == 0
    assert git_log(repo, "-1", "--format=%H") == head

    # Another engine: one commit takes Flux's files away and writes Argo CD's.
    switch(pulled, tmp_path, age_key[1], sealing_key[1], "argocd")
    assert pulled("render").exit_code == 0
    assert listing(repo, ".overseer/flux") == []
    changed = git_log(repo, "-1", "--name-status", "--format=").split("\n")
    assert "A\t.overseer/argocd/applicationset.yaml" in changed
    assert "D\t.overseer/flux/gitrepository.yaml" in changed
    assert "overseer: render (engine files)" in git_log(repo, "-1", "--format=%s")
    appset = yaml.safe_load(show(repo, ".overseer/argocd/applicationset.yaml"))
    directories = appset["spec"]["generators"][0]["git"]["directories"]
    assert directories == [{"path": f"{ns}/*"} for ns in sorted(NAMESPACES.split(","))]
    template = appset["spec"]["template"]
    assert template["metadata"]["name"] == "{{ index .path.segments 0 }}.{{ .path.basename }}"
    assert template["spec"]["destination"]["namespace"] == "{{ index .path.segments 0 }}"
    project = yaml.safe_load(show(repo, ".overseer/argocd/appproject.yaml"))
    assert sorted(d["namespace"] for d in project["spec"]["destinations"]) == sorted(
        NAMESPACES.split(",")
    )
    assert project["spec"]["clusterResourceWhitelist"] == []
    # helm-secrets decrypts secrets.enc.yaml, in the SOPS namespace only.
    assert '(list "team-sops")' in appset["spec"]["templatePatch"]
    assert "secrets://secrets.enc.yaml" in appset["spec"]["templatePatch"]
    head = git_log(repo, "-1", "--format=%H")
    assert pulled("render", "--full").exit_code == 0
    assert git_log(repo, "-1", "--format=%H") == head
    # The namespaces Overseer uses are an input too: one more, and the project follows.
    pulled.env["OVERSEER_ALLOWED_NAMESPACES"] = NAMESPACES + ",team-new"
    assert pulled("render").exit_code == 0
    project = yaml.safe_load(show(repo, ".overseer/argocd/appproject.yaml"))
    assert "team-new" in [d["namespace"] for d in project["spec"]["destinations"]]


def test_engine_files_pass_kubeconform_against_their_crds(
    pulled: Cli, tmp_path: Path, age_key: tuple[Path, str], sealing_key: tuple[Path, Path]
) -> None:
    repo = pulled.settings.repo
    for ns in ("team-sops", "team-sealed"):
        create(pulled, ns, "--set", f"ANTHROPIC_API_KEY={SECRET}")
    create(pulled, "team-ext")
    kinds = {yaml.safe_load(show(repo, name))["kind"] for name in listing(repo, ".overseer")}
    assert kinds == {"GitRepository", "HelmRelease", "Secret"}
    report = validate_engine_files(repo)
    assert report is not None and report.problems == []
    # `overseer validate` of the repository checks them too, beside the charts.
    result = pulled("validate", str(repo), "-o", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    checked = [c["chart"] for c in json.loads(result.stdout)["charts"]]
    assert ".overseer" in checked and len(checked) == 4
    # The check can fail: a field the CRD does not know.
    doc = yaml.safe_load(show(repo, ".overseer/flux/gitrepository.yaml"))
    doc["spec"]["branch"] = "main"
    (repo / ".overseer/flux/gitrepository.yaml").write_text(yaml.safe_dump(doc))
    report = validate_engine_files(repo)
    assert report is not None
    assert len(report.problems) == 1 and "GitRepository/overseer" in report.problems[0]
    assert "branch" in report.problems[0]
    assert pulled("validate", str(repo)).exit_code == 3
    subprocess.run(["git", "-C", str(repo), "checkout", "--", "."], check=True)

    switch(pulled, tmp_path, age_key[1], sealing_key[1], "argocd")
    assert pulled("render").exit_code == 0
    kinds = {yaml.safe_load(show(repo, name))["kind"] for name in listing(repo, ".overseer")}
    assert kinds == {"ApplicationSet", "AppProject"}
    report = validate_engine_files(repo)
    assert report is not None and report.problems == []


def test_without_crd_schemas_custom_resources_are_a_warning(
    pulled: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CI job with only `pip install overseer` still validates the charts themselves."""
    repo = pulled.settings.repo
    create(pulled, "team-sealed", "--set", f"ANTHROPIC_API_KEY={SECRET}")
    monkeypatch.setenv("OVERSEER_CRD_SCHEMAS", str(tmp_path / "none"))
    result = pulled("validate", str(repo), "-o", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    warnings = [w for c in json.loads(result.stdout)["charts"] for w in c["warnings"]]
    assert any("SealedSecret" in w["message"] and "make tools" in w["message"] for w in warnings)


# --- secrets -------------------------------------------------------------------------------


def helm_template(chart: Path, *values: Path) -> list[dict[str, object]]:
    """`helm template` with the pinned helm, as a person or an engine runs it."""
    binary = need("helm", "run `make tools` (builds the pinned helm into ~/.cache/overseer)")
    files = [arg for v in values for arg in ("-f", str(v))]
    text = subprocess.run(
        [binary, "template", chart.name, str(chart), "--namespace", chart.parent.name, *files],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(text) if d]


def export(repo: Path, path: str, dest: Path) -> Path:
    """The chart as committed, in a directory of its own."""
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "HEAD", path], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / path


def test_a_sops_chart_installs_with_its_decrypted_values(
    pulled: Cli, age_key: tuple[Path, str], tmp_path: Path
) -> None:
    repo = pulled.settings.repo
    release = create(pulled, "team-sops", "--set", f"ANTHROPIC_API_KEY={SECRET}")
    chart = export(repo, f"team-sops/{release}", tmp_path)
    encrypted = (chart / "secrets.enc.yaml").read_bytes()
    assert b"sops:" in encrypted and age_key[1].encode() in encrypted
    opened = sops_decrypt(age_key[0], encrypted)
    assert opened == {"secretEnv": {"ANTHROPIC_API_KEY": SECRET}}

    values = tmp_path / "decrypted.yaml"
    values.write_text(yaml.safe_dump(opened))
    documents = helm_template(chart, values)
    assert rendered_secret_values(documents) == {"ANTHROPIC_API_KEY": SECRET}
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(yaml.safe_dump_all(documents))
    assert validate([manifests]) == []

    # Flux reads the same values from a Secret its kustomize-controller decrypts.
    flux = sops_decrypt(
        age_key[0], show(repo, f".overseer/flux/team-sops/{release}/secret-values.enc.yaml")
    )
    assert yaml.safe_load(flux["stringData"]["values.yaml"]) == opened  # type: ignore[index]
    release_doc = yaml.safe_load(show(repo, f".overseer/flux/team-sops/{release}/helmrelease.yaml"))
    assert release_doc["spec"]["valuesFrom"][0]["name"] == f"{release}-secret-values"

    no_plaintext_anywhere(repo, SECRET)


def test_rotating_a_sops_secret_commits_new_ciphertext_and_rolls_the_pods(
    pulled: Cli, age_key: tuple[Path, str]
) -> None:
    repo = pulled.settings.repo
    release = create(pulled, "team-sops", "--set", f"ANTHROPIC_API_KEY={SECRET}")
    path = f"team-sops/{release}"
    before = show(repo, f"{path}/secrets.enc.yaml")
    revision = yaml.safe_load(show(repo, f"{path}/values.yaml"))["secretRevision"]
    assert revision

    head = git_log(repo, "-1", "--format=%H")
    assert pulled("render", "--full").exit_code == 0  # nothing changed: the ciphertext stays
    assert git_log(repo, "-1", "--format=%H") == head
    # A plain variable changes the chart, not its ciphertext, nor the pods' secret revision.
    assert pulled("deploy", "update", release, "--set", "HEIGHT=900").exit_code == 0
    assert git_log(repo, "-1", "--format=%H") != head
    assert show(repo, f"{path}/secrets.enc.yaml") == before
    assert yaml.safe_load(show(repo, f"{path}/values.yaml"))["secretRevision"] == revision
    head = git_log(repo, "-1", "--format=%H")

    result = pulled("deploy", "update", release, "--set-env", "ANTHROPIC_API_KEY",
                    env={"ANTHROPIC_API_KEY": ROTATED})  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    after = show(repo, f"{path}/secrets.enc.yaml")
    assert after != before
    assert sops_decrypt(age_key[0], after) == {"secretEnv": {"ANTHROPIC_API_KEY": ROTATED}}
    assert yaml.safe_load(show(repo, f"{path}/values.yaml"))["secretRevision"] != revision
    assert git_log(repo, "-1", "--format=%H") != head
    no_plaintext_anywhere(repo, SECRET, ROTATED)


def test_a_sealed_secret_opens_with_the_controllers_key_only_for_its_name(
    pulled: Cli, sealing_key: tuple[Path, Path], tmp_path: Path
) -> None:
    repo = pulled.settings.repo
    release = create(pulled, "team-sealed", "--set", f"ANTHROPIC_API_KEY={SECRET}")
    chart = export(repo, f"team-sealed/{release}", tmp_path)
    sealed = (chart / "templates/sealedsecret.yaml").read_bytes()
    assert unseal(sealing_key[0], sealed) == {"ANTHROPIC_API_KEY": SECRET}
    # Strict scope: under another name the controller refuses to open it.
    doc = yaml.safe_load(sealed)
    doc["metadata"]["name"] = doc["spec"]["template"]["metadata"]["name"] = "another"
    with pytest.raises(subprocess.CalledProcessError):
        unseal(sealing_key[0], yaml.safe_dump(doc).encode())

    values = yaml.safe_load((chart / "values.yaml").read_bytes())
    assert values["existingSecret"] == f"{release}-env"
    documents = helm_template(chart)
    kinds = sorted(str(d["kind"]) for d in documents)
    assert "SealedSecret" in kinds and "Secret" not in kinds
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    assert f"name: {release}-env" in yaml.safe_dump(deployment)
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(yaml.safe_dump_all(documents))
    assert validate([manifests]) == []
    no_plaintext_anywhere(repo, SECRET)


def test_external_secrets_take_no_value_and_name_the_key(pulled: Cli, tmp_path: Path) -> None:
    repo = pulled.settings.repo
    refused = pulled("deploy", "create", "claude-environment", "--namespace", "team-ext",
                     "--set", f"ANTHROPIC_API_KEY={SECRET}")  # fmt: skip
    assert refused.exit_code != 0
    assert "ANTHROPIC_API_KEY" in refused.stderr and "'vault'" in refused.stderr
    assert SECRET not in refused.stdout + refused.stderr
    release = create(pulled, "team-ext")  # the required secret is the store's to hold
    chart = export(repo, f"team-ext/{release}", tmp_path)
    external = yaml.safe_load((chart / "templates/externalsecret.yaml").read_bytes())
    assert external["spec"]["dataFrom"] == [{"extract": {"key": f"overseer/team-ext/{release}"}}]
    assert external["spec"]["target"]["name"] == f"{release}-env"
    documents = helm_template(chart)
    assert "Secret" not in [d["kind"] for d in documents]
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(yaml.safe_dump_all(documents))
    assert validate([manifests]) == []


def test_the_offline_check_carries_ciphertext_and_misses_none(pulled: Cli) -> None:
    repo = pulled.settings.repo
    sops_release = create(pulled, "team-sops", "--set", f"ANTHROPIC_API_KEY={SECRET}")
    sealed_release = create(pulled, "team-sealed", "--set", f"ANTHROPIC_API_KEY={SECRET}")
    create(pulled, "team-ext")
    assert pulled("render", "--check", "--offline").exit_code == 0
    assert pulled("render", "--check").exit_code == 0
    encrypted = repo / f"team-sops/{sops_release}/secrets.enc.yaml"
    kept = encrypted.read_bytes()
    encrypted.unlink()
    result = pulled("render", "--check", "--offline")
    assert result.exit_code == 3
    assert "secrets.enc.yaml" in result.stdout + result.stderr
    encrypted.write_bytes(kept)
    assert pulled("render", "--check", "--offline").exit_code == 0
    # A plaintext Secret in place of the SealedSecret is drift, not carried ciphertext.
    sealed = repo / f"team-sealed/{sealed_release}/templates/sealedsecret.yaml"
    sealed.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Secret",
                                      "stringData": {"ANTHROPIC_API_KEY": "clear"}}))  # fmt: skip
    result = pulled("render", "--check", "--offline")
    assert result.exit_code == 3
    assert "sealedsecret.yaml" in result.stdout + result.stderr


# --- examples ------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_bootstrap_examples_pass_kubeconform_against_their_crds() -> None:
    files = [EXAMPLES / "argocd" / "bootstrap.yaml", EXAMPLES / "flux" / "bootstrap.yaml"]
    kinds = {d["kind"] for f in files for d in yaml.safe_load_all(f.read_text()) if d}
    assert kinds == {"Application", "GitRepository", "Kustomization"}
    assert validate(files) == []


def test_the_example_delivery_file_loads(tmp_path: Path, sealing_key: tuple[Path, Path]) -> None:
    (tmp_path / "delivery.yaml").write_bytes((EXAMPLES / "delivery.yaml").read_bytes())
    (tmp_path / "sealed-secrets.pem").write_bytes(sealing_key[1].read_bytes())
    delivery = load(tmp_path / "delivery.yaml")
    assert delivery.engine == "flux"
    assert [delivery.secrets.of(ns).method for ns in ("team-a", "team-b", "team-c", "x")] == [
        "sops",
        "sealed-secrets",
        "external-secrets",
        "apply",
    ]


# --- review mode ---------------------------------------------------------------------------


def test_review_mode_proposes_each_chart_with_its_engine_files(
    pulled: Cli, gitea: Gitea, review_env: dict[str, str], tmp_path: Path,
    sealing_key: tuple[Path, Path], age_key: tuple[Path, str],
) -> None:  # fmt: skip
    env, repo = review_env, review_env["OVERSEER_FORGE_REPO"]
    first = create_in(pulled, env, "team-sealed", f"ANTHROPIC_API_KEY={SECRET}")
    second = create_in(pulled, env, "team-sops", f"ANTHROPIC_API_KEY={SECRET}")
    # Another round with nothing new moves no branch: kept ciphertext, the same proposals.
    heads = remote_heads(env["OVERSEER_GIT_REMOTE"])
    assert pulled("render", env=env).exit_code == 0
    assert remote_heads(env["OVERSEER_GIT_REMOTE"]) == heads
    pulls = {p["number"]: p for p in gitea.pulls(repo, "open")}
    titles = sorted(p["title"] for p in pulls.values())
    assert len(pulls) == 3 and "overseer: engine files" in titles, titles
    for number in sorted(pulls):  # one per chart, and the engine's setup
        gitea.merge(repo, number)
    clone = tmp_path / "main"
    subprocess.run(["git", "clone", "-q", env["OVERSEER_GIT_REMOTE"], str(clone)], check=True)
    for path in (
        f"team-sealed/{first}/templates/sealedsecret.yaml",
        f".overseer/flux/team-sealed/{first}/helmrelease.yaml",
        f".overseer/flux/team-sops/{second}/helmrelease.yaml",
        f".overseer/flux/team-sops/{second}/secret-values.enc.yaml",
        ".overseer/flux/gitrepository.yaml",
    ):
        assert (clone / path).is_file(), path
    sealed = (clone / f"team-sealed/{first}/templates/sealedsecret.yaml").read_bytes()
    assert unseal(sealing_key[0], sealed) == {"ANTHROPIC_API_KEY": SECRET}
    report = validate_engine_files(clone)
    assert report is not None and report.problems == []
    no_plaintext_anywhere(clone, SECRET)
    # A deletion proposes the chart's and its HelmRelease's removal together.
    assert pulled("render", env=env).exit_code == 0  # settles the merged proposals
    assert gitea.pulls(repo, "open") == []
    assert pulled("deploy", "delete", first, env=env).exit_code == 0
    [removal] = gitea.pulls(repo, "open")
    gitea.merge(repo, removal["number"])
    subprocess.run(["git", "-C", str(clone), "pull", "-q"], check=True)
    assert not (clone / f"team-sealed/{first}").exists()
    assert not (clone / f".overseer/flux/team-sealed/{first}").exists()
    assert (clone / f".overseer/flux/team-sops/{second}/helmrelease.yaml").is_file()

    # Another engine changes no chart: one pull request of its own carries its files.
    switch(pulled, tmp_path, age_key[1], sealing_key[1], "argocd")
    assert pulled("render", env=env).exit_code == 0
    [engine_files] = gitea.pulls(repo, "open")
    assert engine_files["title"] == "overseer: engine files"
    assert engine_files["head"]["ref"] == "overseer/engine-files"
    heads = remote_heads(env["OVERSEER_GIT_REMOTE"])
    assert pulled("render", env=env).exit_code == 0  # proposed already: the same one, unmoved
    assert [p["number"] for p in gitea.pulls(repo, "open")] == [engine_files["number"]]
    assert remote_heads(env["OVERSEER_GIT_REMOTE"]) == heads
    gitea.merge(repo, engine_files["number"])
    subprocess.run(["git", "-C", str(clone), "pull", "-q"], check=True)
    assert (clone / ".overseer/argocd/applicationset.yaml").is_file()
    assert not (clone / ".overseer/flux").exists()
    # Main has them now: nothing more is proposed, and the branch goes.
    assert pulled("render", env=env).exit_code == 0
    assert gitea.pulls(repo, "open") == []
    assert "overseer/engine-files" not in gitea.branches(repo)


def remote_heads(remote: str) -> str:
    return subprocess.run(
        ["git", "ls-remote", "--heads", remote], capture_output=True, text=True, check=True
    ).stdout


def create_in(cli: Cli, env: dict[str, str], namespace: str, value: str) -> str:
    result = cli("deploy", "create", "claude-environment", "--namespace", namespace,
                 "--set", value, "-o", "json", env=env)  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    return str(json.loads(result.stdout)["deployment_id"])
