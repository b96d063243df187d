"""Custom resources through kubeconform.validate(), and the secret tools' real round trips.

The CRD schemas are the ones `make tools` converts from the pinned Argo CD, Flux, sealed-secrets
and external-secrets CRDs (tools/crd-schemas.sh); sops, age-keygen and kubeseal are the pinned
builds. Locally a missing one skips with `make tools`; under CI=true it fails.
"""

from __future__ import annotations

import base64
import datetime
import importlib.util
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from generator.tools.kubeconform import CRD_SCHEMAS_VAR, crd_schema_dir, validate
from tests.conftest import ROOT, need, unavailable

pytestmark = pytest.mark.helm

HOW = "run `make tools` (builds the pinned {} into ~/.cache/overseer)"
REPO = "https://git.example.com/platform/deployments.git"

# One realistic manifest per kind, as a GitOps repository for Argo CD or Flux would hold it.
VALID: dict[str, dict[str, Any]] = {
    "Application": {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": "shop",
            "namespace": "argocd",
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
        },
        "spec": {
            "project": "team-a",
            "source": {
                "repoURL": REPO,
                "targetRevision": "main",
                "path": "charts/team-a/shop",
                "helm": {"valueFiles": ["values.yaml"], "releaseName": "shop"},
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "team-a"},
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true", "ServerSideApply=true"],
                "retry": {
                    "limit": 5,
                    "backoff": {"duration": "5s", "factor": 2, "maxDuration": "3m"},
                },
            },
        },
    },
    "ApplicationSet": {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": "team-a", "namespace": "argocd"},
        "spec": {
            "goTemplate": True,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [
                {
                    "git": {
                        "repoURL": REPO,
                        "revision": "main",
                        "directories": [{"path": "charts/team-a/*"}],
                    }
                }
            ],
            "template": {
                "metadata": {"name": "{{.path.basename}}"},
                "spec": {
                    "project": "team-a",
                    "source": {"repoURL": REPO, "targetRevision": "main", "path": "{{.path.path}}"},
                    "destination": {
                        "server": "https://kubernetes.default.svc",
                        "namespace": "team-a",
                    },
                },
            },
            "syncPolicy": {"preserveResourcesOnDeletion": True},
        },
    },
    "AppProject": {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": "team-a", "namespace": "argocd"},
        "spec": {
            "description": "Team A's services",
            "sourceRepos": [REPO],
            "destinations": [{"server": "https://kubernetes.default.svc", "namespace": "team-a"}],
            "clusterResourceWhitelist": [{"group": "", "kind": "Namespace"}],
            "namespaceResourceBlacklist": [{"group": "", "kind": "ResourceQuota"}],
            "orphanedResources": {"warn": True},
        },
    },
    "GitRepository": {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "deployments", "namespace": "flux-system"},
        "spec": {
            "interval": "1m0s",
            "url": REPO,
            "ref": {"branch": "main"},
            "secretRef": {"name": "git-credentials"},
            "ignore": "/*\n!/charts/\n",
        },
    },
    "HelmRelease": {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "shop", "namespace": "team-a"},
        "spec": {
            "interval": "10m",
            "chart": {
                "spec": {
                    "chart": "./charts/team-a/shop",
                    "reconcileStrategy": "Revision",
                    "sourceRef": {
                        "kind": "GitRepository",
                        "name": "deployments",
                        "namespace": "flux-system",
                    },
                }
            },
            "install": {"remediation": {"retries": 3}},
            "upgrade": {"remediation": {"retries": 3, "remediateLastFailure": True}},
            # values keeps unknown fields: anything a chart takes passes.
            "values": {"replicaCount": 2, "image": {"tag": "1.4.2"}, "anyKey": [1, "two"]},
        },
    },
    "Kustomization": {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": "flux-system"},
        "spec": {
            "interval": "10m",
            "path": "./clusters/production",
            "prune": True,
            "wait": True,
            "timeout": "5m",
            "sourceRef": {"kind": "GitRepository", "name": "deployments"},
            "decryption": {"provider": "sops", "secretRef": {"name": "sops-age"}},
        },
    },
    "SealedSecret": {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "db", "namespace": "team-a"},
        "spec": {
            "encryptedData": {"password": "AgBy3i4OJSWK+PiTySYZZA9rO43cGDEq"},
            "template": {
                "metadata": {"name": "db", "namespace": "team-a", "labels": {"app": "shop"}},
                "type": "Opaque",
            },
        },
    },
    "ExternalSecret": {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": "db", "namespace": "team-a"},
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": "vault"},
            "target": {"name": "db", "creationPolicy": "Owner"},
            "data": [
                {"secretKey": "password", "remoteRef": {"key": "team-a/db", "property": "password"}}
            ],
        },
    },
    "ClusterSecretStore": {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ClusterSecretStore",
        "metadata": {"name": "vault"},
        "spec": {
            "provider": {
                "vault": {
                    "server": "https://vault.example.com:8200",
                    "path": "secret",
                    "version": "v2",
                    "auth": {
                        "kubernetes": {
                            "mountPath": "kubernetes",
                            "role": "external-secrets",
                            "serviceAccountRef": {
                                "name": "external-secrets",
                                "namespace": "external-secrets",
                            },
                        }
                    },
                }
            }
        },
    },
}

Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    """An edit that sets the dotted `path` (list indexes as numbers) to `value`."""

    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return edit


# (kind, what is wrong, the edit, what the finding must name): one misspelt or unknown field and
# one wrong type per kind.
BROKEN: list[tuple[str, str, Edit, list[str]]] = [
    ("Application", "unknown", _set("spec.source.targetRevison", "main"), ["/spec/source", "additional properties 'targetRevison' not allowed"]),
    ("Application", "type", _set("spec.syncPolicy.retry.limit", "five"), ["/spec/syncPolicy/retry/limit", "want integer"]),
    ("ApplicationSet", "unknown", _set("spec.generators.0.git.revison", "main"), ["/spec/generators/0/git", "additional properties 'revison' not allowed"]),
    ("ApplicationSet", "type", _set("spec.goTemplate", "yes"), ["/spec/goTemplate", "want boolean"]),
    ("AppProject", "unknown", _set("spec.sourceRepo", [REPO]), ["/spec", "additional properties 'sourceRepo' not allowed"]),
    ("AppProject", "type", _set("spec.sourceRepos", REPO), ["/spec/sourceRepos", "want array"]),
    ("GitRepository", "unknown", _set("spec.ref.branh", "main"), ["/spec/ref", "additional properties 'branh' not allowed"]),
    ("GitRepository", "type", _set("spec.interval", 60), ["/spec/interval", "want string"]),
    ("HelmRelease", "unknown", _set("spec.chart.spec.versions", "1.x"), ["/spec/chart/spec", "additional properties 'versions' not allowed"]),
    ("HelmRelease", "type", _set("spec.install.remediation.retries", "3"), ["/spec/install/remediation/retries", "want integer"]),
    ("Kustomization", "unknown", _set("spec.prun", True), ["/spec", "additional properties 'prun' not allowed"]),
    ("Kustomization", "type", _set("spec.prune", "yes"), ["/spec/prune", "want boolean"]),
    ("SealedSecret", "unknown", _set("spec.encryptedDta", {}), ["/spec", "additional properties 'encryptedDta' not allowed"]),
    ("SealedSecret", "type", _set("spec.encryptedData.password", 12), ["/spec/encryptedData/password", "want string"]),
    ("ExternalSecret", "unknown", _set("spec.secretStoreRef.nmae", "vault"), ["/spec/secretStoreRef", "additional properties 'nmae' not allowed"]),
    ("ExternalSecret", "type", _set("spec.data", {"secretKey": "password"}), ["/spec/data", "want array"]),
    ("ClusterSecretStore", "unknown", _set("spec.provider.vault.sever", "https://v"), ["/spec/provider/vault", "additional properties 'sever' not allowed"]),
    ("ClusterSecretStore", "type", _set("spec.provider.vault.auth.kubernetes.role", ["a"]), ["/spec/provider/vault/auth/kubernetes/role", "want string"]),
]  # fmt: skip


def _copy(doc: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = yaml.safe_load(yaml.safe_dump(doc))
    return copied


def _write(path: Path, *docs: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def crd_schemas(kubeconform_bin: str) -> Path:
    found = crd_schema_dir()
    if found is None:
        unavailable(
            f"the CRD schemas are not built ({CRD_SCHEMAS_VAR}="
            f"{os.environ.get(CRD_SCHEMAS_VAR, '')}): run `make tools` (tools/crd-schemas.sh "
            "converts the pinned CRDs into ~/.cache/overseer)"
        )
    return found


@pytest.fixture(scope="module")
def findings(crd_schemas: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Every case below in one kubeconform run, as `overseer validate` does: messages by file."""
    tmp = tmp_path_factory.mktemp("crs")
    files = [_write(tmp / f"valid-{kind}.yaml", doc) for kind, doc in VALID.items()]
    for kind, problem, edit, _ in BROKEN:
        doc = _copy(VALID[kind])
        edit(doc)
        files.append(_write(tmp / f"broken-{kind}-{problem}.yaml", doc))
    by_file: dict[str, list[str]] = {f.name: [] for f in files}
    for finding in validate(files):
        by_file[Path(finding.filename).name].append(finding.message)
    return by_file


@pytest.mark.parametrize("kind", VALID)
def test_valid_custom_resource_passes(kind: str, findings: dict[str, list[str]]) -> None:
    assert findings[f"valid-{kind}.yaml"] == []


@pytest.mark.parametrize(
    ("kind", "problem", "expected"),
    [(kind, problem, expected) for kind, problem, _, expected in BROKEN],
    ids=[f"{kind}-{problem}" for kind, problem, _, _ in BROKEN],
)
def test_broken_custom_resource_fails_naming_the_problem(
    kind: str, problem: str, expected: list[str], findings: dict[str, list[str]]
) -> None:
    [message] = findings[f"broken-{kind}-{problem}.yaml"]
    for part in expected:
        assert part in message


def test_served_versions_only(crd_schemas: Path, tmp_path: Path) -> None:
    """external-secrets v0.16 serves v1 and v1beta1; Flux's v2beta1 HelmRelease is gone."""
    old_api = _copy(VALID["ExternalSecret"]) | {"apiVersion": "external-secrets.io/v1beta1"}
    gone = _copy(VALID["HelmRelease"]) | {"apiVersion": "helm.toolkit.fluxcd.io/v2beta1"}
    found = validate([_write(tmp_path / "old.yaml", old_api), _write(tmp_path / "gone.yaml", gone)])
    assert [(f.kind, Path(f.filename).name) for f in found] == [("HelmRelease", "gone.yaml")]
    assert "helm.toolkit.fluxcd.io/v2beta1" in found[0].message
    assert "index.json" in found[0].message


def test_core_kinds_beside_custom_resources(crd_schemas: Path, tmp_path: Path) -> None:
    """One run takes both; a misspelt core kind keeps kubeconform's own message."""
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "shop"},
        "data": {"a": "b"},
    }
    bad = config | {"kind": "ConfigMapp"}
    typo = config | {"dta": {"a": "b"}}
    found = validate(
        [_write(tmp_path / "mixed.yaml", config, VALID["HelmRelease"], bad, typo)],
    )
    assert sorted((f.kind, f.message.split(" - ")[-1]) for f in found) == [
        ("ConfigMap", "at '': additional properties 'dta' not allowed"),
        ("ConfigMapp", "could not find schema for ConfigMapp"),
    ]


def test_missing_crd_schemas_say_how_to_get_them(
    kubeconform_bin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CRD_SCHEMAS_VAR, str(tmp_path / "not-built"))
    manifest = _write(tmp_path / "app.yaml", VALID["Application"], VALID["SealedSecret"])
    found = validate([manifest])
    found.sort(key=lambda f: f.kind)  # kubeconform checks resources in parallel
    assert [f.kind for f in found] == ["Application", "SealedSecret"]
    for finding in found:
        assert "could not find schema" not in finding.message
        assert "run `make tools`" in finding.message
        assert str(tmp_path / "not-built") in finding.message
    assert found[0].message.startswith("no schema for Application (argoproj.io/v1alpha1)")


def test_without_the_variable_the_newest_complete_set_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CRD_SCHEMAS_VAR)
    monkeypatch.setenv("OVERSEER_CACHE", str(tmp_path))
    assert crd_schema_dir() is None
    root = tmp_path / "kubeconform-schemas"
    for name, age in (("crds-old", 100), ("crds-new", 10), ("crds-unfinished", 0)):
        (root / name).mkdir(parents=True)
        if name != "crds-unfinished":
            marker = root / name / ".complete"
            marker.touch()
            stamp = marker.stat().st_mtime - age
            os.utime(marker, (stamp, stamp))
    assert crd_schema_dir() == root / "crds-new"


# --- the converter ----------------------------------------------------------------------------


def _converter() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "crd_jsonschema", ROOT / "tools" / "crd_jsonschema.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_converter_closes_objects_the_way_strict_kubeconform_expects() -> None:
    convert = _converter().convert
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "values": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {"type": "string"}}},
                    "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"x": {"type": "string"}}}},
                    "note": {"type": "string", "nullable": True, "enum": ["a", "b"]},
                },
                "oneOf": [{"properties": {"port": {}}, "required": ["port"]}],
            }
        },
    }  # fmt: skip
    out = convert(schema)
    spec = out["properties"]["spec"]
    assert out["additionalProperties"] is False and spec["additionalProperties"] is False
    assert spec["properties"]["port"]["type"] == ["integer", "string"]
    assert "additionalProperties" not in spec["properties"]["values"]  # keeps unknown fields
    assert spec["properties"]["labels"]["additionalProperties"]["additionalProperties"] is False
    assert spec["properties"]["note"]["type"] == ["string", "null"]
    assert spec["properties"]["note"]["enum"] == ["a", "b", None]
    assert "additionalProperties" not in spec["oneOf"][0]  # a junctor names only some fields


# --- the secret tools -------------------------------------------------------------------------


def _run(*args: str | Path, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args], input=stdin, capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "db", "namespace": "team-a"},
    "type": "Opaque",
    "stringData": {"password": "s3cr3t-Pa55", "user": "shop"},
}


def test_sops_round_trip_with_an_age_key(tmp_path: Path) -> None:
    sops = need("sops", HOW.format("sops"))
    keygen = need("age-keygen", HOW.format("age"))
    key = tmp_path / "age.key"
    _run(keygen, "-o", key)
    recipient = _run(keygen, "-y", key).strip()
    assert recipient.startswith("age1")
    plain = _write(tmp_path / "secret.yaml", SECRET)
    # No key of the user's: HOME and XDG_CONFIG_HOME point at an empty directory.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    encrypted = _run(
        sops, "--encrypt", "--age", recipient, "--input-type", "yaml", "--output-type", "yaml",
        plain, env=env,
    )  # fmt: skip
    assert "s3cr3t-Pa55" not in encrypted and "ENC[AES256_GCM," in encrypted
    assert yaml.safe_load(encrypted)["sops"]["age"][0]["recipient"] == recipient
    sealed = tmp_path / "secret.enc.yaml"
    sealed.write_text(encrypted)

    no_key = subprocess.run(
        [sops, "-d", str(sealed)], capture_output=True, text=True, env=env, check=False
    )
    assert no_key.returncode != 0 and "s3cr3t-Pa55" not in no_key.stdout
    decrypted = _run(sops, "-d", sealed, env=env | {"SOPS_AGE_KEY_FILE": str(key)})
    assert yaml.safe_load(decrypted) == SECRET


def _sealing_key(tmp_path: Path) -> tuple[Path, Path]:
    """An RSA key and a self-signed certificate like the sealed-secrets controller's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem, cert_pem = tmp_path / "key.pem", tmp_path / "cert.pem"
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_pem, cert_pem


def test_kubeseal_seals_offline_and_recovers(crd_schemas: Path, tmp_path: Path) -> None:
    kubeseal = need("kubeseal", HOW.format("kubeseal"))
    key, cert = _sealing_key(tmp_path)
    # No cluster: kubeseal must not need a kubeconfig for either direction.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
    plain = yaml.safe_dump(SECRET)
    sealed_text = _run(
        kubeseal, "--cert", cert, "--scope", "strict", "-o", "yaml", stdin=plain, env=env
    )
    assert "s3cr3t-Pa55" not in sealed_text
    sealed = yaml.safe_load(sealed_text)
    assert (sealed["kind"], sealed["metadata"]["name"]) == ("SealedSecret", "db")
    assert set(sealed["spec"]["encryptedData"]) == {"password", "user"}
    sealed_file = _write(tmp_path / "sealed.yaml", sealed)
    assert validate([sealed_file]) == []  # kubeseal's own output fits the pinned CRD

    recover = (kubeseal, "--recovery-unseal", "--recovery-private-key", key, "-o", "yaml")
    opened = yaml.safe_load(_run(*recover, stdin=sealed_text, env=env))
    assert opened["metadata"]["namespace"] == "team-a"
    data = {k: base64.b64decode(v).decode() for k, v in opened["data"].items()}
    assert data == SECRET["stringData"]

    # Strict scope: the ciphertext is bound to its name and namespace.
    moved = _copy(sealed)
    moved["metadata"]["namespace"] = "team-b"
    elsewhere = subprocess.run(
        [str(a) for a in recover], input=yaml.safe_dump(moved), capture_output=True, text=True,
        env=env, check=False,
    )  # fmt: skip
    assert elsewhere.returncode != 0 and "s3cr3t-Pa55" not in elsewhere.stdout
