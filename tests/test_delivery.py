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
from generator.errors import UserError
from generator.tools.kubeconform import validate
from generator.validate import validate_engine_files
from tests.conftest import Cli, git_log, need
from tests.forge import Gitea

SECRET = "sk-delivery-TOPSECRET-91d3"
ROTATED = "sk-delivery-ROTATED-77aa"
NAMESPACES = "team-apply,team-sops,team-sealed,team-ext"

pytestmark = [pytest.mark.postgres, pytest.mark.helm]


# --- keys ----------------------------------------------------------------------------------


def delivery_file(
    where: Path, age: str, cert: Path, *, engines: tuple[str, ...] = ("argocd", "flux")
) -> Path:
    path = where / "delivery.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "repoURL": "https://git.example.com/platform/gitops.git",
                "engines": list(engines),
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
    """The CLI with a delivery file: both engines, and one namespace per secret method."""
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
        ({"engines": ["argocd"]}, "`repoURL` is required with `engines`"),
        ({"engines": ["spinnaker"], "repoURL": "u"}, "engines.0"),
        ({"secrets": {"default": {"method": "sealed-secrets"}}}, "needs `certificate`"),
        ({"secrets": {"default": {"method": "vault"}}}, "secrets.default.method"),
        ({"secret": {}}, "secret: Extra inputs are not permitted"),
    ],
)
def test_a_bad_delivery_file_names_the_field(
    tmp_path: Path, content: dict[str, object], named: str
) -> None:
    path = tmp_path / "delivery.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(UserError) as err:
        load(path)
    assert named in err.value.message
    assert f"OVERSEER_DELIVERY={path}" in err.value.message


def test_a_bad_delivery_file_fails_the_command_with_nothing_written(
    cli: Cli, claude_manifest: Path, tmp_path: Path
) -> None:
    assert cli("plugin", "register", str(claude_manifest)).exit_code == 0
    path = tmp_path / "delivery.yaml"
    path.write_text("engines: [flux]\n")
    result = cli("deploy", "create", "claude-environment", "--set", "ANTHROPIC_API_KEY=k",
                 env={"OVERSEER_DELIVERY": str(path)})  # fmt: skip
    assert result.exit_code == 1
    assert "repoURL" in result.stderr
    assert cli("deploy", "list", "-o", "json").stdout.strip() == "[]"


# --- engines -------------------------------------------------------------------------------


def test_engine_files_follow_the_charts_in_the_same_commits(pulled: Cli) -> None:
    repo = pulled.settings.repo
    first = create(pulled, "team-apply", "--set", "ANTHROPIC_API_KEY=k")
    second = create(pulled, "team-apply", "--set", "ANTHROPIC_API_KEY=k")

    appset = yaml.safe_load(show(repo, ".overseer/argocd/applicationset.yaml"))
    directories = appset["spec"]["generators"][0]["git"]["directories"]
    assert directories == [{"path": f"{ns}/*"} for ns in sorted(NAMESPACES.split(","))]
    project = yaml.safe_load(show(repo, ".overseer/argocd/appproject.yaml"))
    assert sorted(d["namespace"] for d in project["spec"]["destinations"]) == sorted(
        NAMESPACES.split(",")
    )
    assert project["spec"]["clusterResourceWhitelist"] == []
    source = yaml.safe_load(show(repo, ".overseer/flux/gitrepository.yaml"))
    assert source["spec"]["url"] == "https://git.example.com/platform/gitops.git"
    release = yaml.safe_load(show(repo, f".overseer/flux/team-apply/{first}/helmrelease.yaml"))
    chart = release["spec"]["chart"]["spec"]
    assert chart["chart"] == f"./team-apply/{first}"
    assert chart["reconcileStrategy"] == "Revision"
    assert release["metadata"]["namespace"] == "team-apply"

    # Deleting a deployment takes its HelmRelease away in the commit that removes its chart.
    assert pulled("deploy", "delete", first).exit_code == 0
    changed = git_log(repo, "-1", "--name-status", "--format=").split("\n")
    assert f"D\tteam-apply/{first}/values.yaml" in changed
    assert f"D\t.overseer/flux/team-apply/{first}/helmrelease.yaml" in changed
    assert exists(repo, f".overseer/flux/team-apply/{second}/helmrelease.yaml")

    # One installer owns each release: with engines, Overseer's apply stands aside.
    refused = pulled("apply")
    assert refused.exit_code == 1
    assert "argocd, flux syncs the repository" in refused.stderr
    assert "`apply: true`" in refused.stderr

    # Nothing changed: a render writes nothing, commits nothing.
    head = git_log(repo, "-1", "--format=%H")
    assert pulled("render").exit_code == 0
    assert pulled("render", "--full").exit_code == 0
    assert git_log(repo, "-1", "--format=%H") == head


def test_engine_files_pass_kubeconform_against_their_crds(pulled: Cli, tmp_path: Path) -> None:
    repo = pulled.settings.repo
    for ns in ("team-apply", "team-sops", "team-sealed"):
        create(pulled, ns, "--set", f"ANTHROPIC_API_KEY={SECRET}")
    create(pulled, "team-ext")
    listing = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "HEAD", ".overseer"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    kinds = {yaml.safe_load(show(repo, name))["kind"] for name in listing}
    assert kinds == {"ApplicationSet", "AppProject", "GitRepository", "HelmRelease", "Secret"}
    report = validate_engine_files(repo)
    assert report is not None and report.problems == []
    # `overseer validate` of the repository checks them too, beside the charts.
    result = pulled("validate", str(repo), "-o", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    checked = [c["chart"] for c in json.loads(result.stdout)["charts"]]
    assert ".overseer" in checked and len(checked) == 5
    # The check can fail: a field the CRD does not know.
    doc = yaml.safe_load(show(repo, ".overseer/flux/gitrepository.yaml"))
    doc["spec"]["branch"] = "main"
    (repo / ".overseer/flux/gitrepository.yaml").write_text(yaml.safe_dump(doc))
    report = validate_engine_files(repo)
    assert report is not None
    assert len(report.problems) == 1 and "GitRepository/overseer" in report.problems[0]
    assert "branch" in report.problems[0]
    assert pulled("validate", str(repo)).exit_code == 3


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

    # Argo CD hands secrets.enc.yaml to helm-secrets, in this namespace only.
    appset = yaml.safe_load(show(repo, ".overseer/argocd/applicationset.yaml"))
    assert '(list "team-sops")' in appset["spec"]["templatePatch"]
    assert "secrets://secrets.enc.yaml" in appset["spec"]["templatePatch"]
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
    create(pulled, "team-sealed", "--set", f"ANTHROPIC_API_KEY={SECRET}")
    create(pulled, "team-ext")
    assert pulled("render", "--check", "--offline").exit_code == 0
    assert pulled("render", "--check").exit_code == 0
    (repo / f"team-sops/{sops_release}/secrets.enc.yaml").unlink()
    result = pulled("render", "--check", "--offline")
    assert result.exit_code == 3
    assert "secrets.enc.yaml" in result.stdout + result.stderr


def test_turning_an_engine_off_removes_its_files(
    pulled: Cli, tmp_path: Path, age_key: tuple[Path, str], sealing_key: tuple[Path, Path]
) -> None:
    repo = pulled.settings.repo
    create(pulled, "team-apply", "--set", "ANTHROPIC_API_KEY=k")
    assert exists(repo, ".overseer/flux/gitrepository.yaml")
    only_argo = tmp_path / "argo"
    only_argo.mkdir()
    pulled.env["OVERSEER_DELIVERY"] = str(
        delivery_file(only_argo, age_key[1], sealing_key[1], engines=("argocd",))
    )
    assert pulled("render").exit_code == 0
    assert not exists(repo, ".overseer/flux")
    assert exists(repo, ".overseer/argocd/applicationset.yaml")


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
    assert delivery.engines == ("argocd", "flux")
    assert [delivery.secrets.of(ns).method for ns in ("team-a", "team-b", "team-c", "x")] == [
        "sops",
        "sealed-secrets",
        "external-secrets",
        "apply",
    ]


# --- review mode ---------------------------------------------------------------------------


def test_review_mode_proposes_each_chart_with_its_engine_files(
    pulled: Cli, gitea: Gitea, review_env: dict[str, str], tmp_path: Path,
    sealing_key: tuple[Path, Path],
) -> None:  # fmt: skip
    env, repo = review_env, review_env["OVERSEER_FORGE_REPO"]
    first = create_in(pulled, env, "team-sealed", f"ANTHROPIC_API_KEY={SECRET}")
    second = create_in(pulled, env, "team-apply", "ANTHROPIC_API_KEY=k")
    pulls = {p["number"]: p for p in gitea.pulls(repo, "open")}
    assert len(pulls) == 2
    # Both branches add the same shared files: they merge one after the other, cleanly.
    for number in sorted(pulls):
        gitea.merge(repo, number)
    clone = tmp_path / "main"
    subprocess.run(["git", "clone", "-q", env["OVERSEER_GIT_REMOTE"], str(clone)], check=True)
    for path in (
        f"team-sealed/{first}/templates/sealedsecret.yaml",
        f".overseer/flux/team-sealed/{first}/helmrelease.yaml",
        f".overseer/flux/team-apply/{second}/helmrelease.yaml",
        ".overseer/flux/gitrepository.yaml",
        ".overseer/argocd/applicationset.yaml",
    ):
        assert (clone / path).is_file(), path
    sealed = (clone / f"team-sealed/{first}/templates/sealedsecret.yaml").read_bytes()
    assert unseal(sealing_key[0], sealed) == {"ANTHROPIC_API_KEY": SECRET}
    report = validate_engine_files(clone)
    assert report is not None and report.problems == []
    no_plaintext_anywhere(clone, SECRET)
    # A deletion proposes the chart's and its HelmRelease's removal together.
    assert pulled("render", env=env).exit_code == 0  # settles the merged proposals
    assert pulled("deploy", "delete", first, env=env).exit_code == 0
    [removal] = gitea.pulls(repo, "open")
    gitea.merge(repo, removal["number"])
    subprocess.run(["git", "-C", str(clone), "pull", "-q"], check=True)
    assert not (clone / f"team-sealed/{first}").exists()
    assert not (clone / f".overseer/flux/team-sealed/{first}").exists()
    assert (clone / f".overseer/flux/team-apply/{second}/helmrelease.yaml").is_file()


def create_in(cli: Cli, env: dict[str, str], namespace: str, value: str) -> str:
    result = cli("deploy", "create", "claude-environment", "--namespace", namespace,
                 "--set", value, "-o", "json", env=env)  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    return str(json.loads(result.stdout)["deployment_id"])
