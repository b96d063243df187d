"""What Argo CD or Flux needs to sync the GitOps repository, written beside the charts.

Everything lives under `.overseer/` (a name no namespace can take, so no chart is ever there):

- `.overseer/argocd/`: one ApplicationSet whose Git directory generator makes an Application
  per `<namespace>/<release>`, and an AppProject that limits them to Overseer's namespaces and
  to namespaced resources;
- `.overseer/flux/`: one GitRepository, and per chart `<namespace>/<release>/helmrelease.yaml`
  with `reconcileStrategy: Revision` (a chart's version never changes between renders, so only
  the commit can tell Flux to upgrade; it versions every chart by each new commit, which is why
  the pod template carries no chart version). Where the chart's secrets are SOPS-encrypted, the same
  directory holds them as a Secret Flux decrypts, which the HelmRelease takes its values from.

The files depend on the delivery settings and the chart paths only, so they are deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from ..chart_path import ChartPath
from .config import SOPS, Delivery

ROOT = ".overseer"
ARGOCD_DIR = f"{ROOT}/argocd"
FLUX_DIR = f"{ROOT}/flux"
MANAGED_BY = {"app.kubernetes.io/managed-by": "overseer"}
SECRET_VALUES_KEY = "values.yaml"  # noqa: S105 - a key name, not a secret
SOPS_VALUES_FILE = "secret-values.enc.yaml"


try:  # the C dumper: a full render of 10,000 charts with Flux writes 10,000 HelmReleases
    from yaml import CSafeDumper as _Dumper
except ImportError:  # pragma: no cover
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]


def dump(doc: dict[str, Any]) -> bytes:
    """Deterministic YAML: sorted keys, block style, no line folding."""
    return yaml.dump(
        doc, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=100000
    ).encode()


_SHARED: dict[tuple[str, tuple[str, ...]], dict[str, bytes]] = {}


def shared_files(delivery: Delivery, namespaces: Sequence[str]) -> dict[str, bytes]:
    """The engine files that do not depend on any one chart, by path in the repository.

    Made once per setting: a server asks on every round that changes a chart.
    """
    key = (delivery.digest, tuple(sorted(namespaces)))
    cached = _SHARED.get(key)
    if cached is None:
        _SHARED.clear()
        cached = _SHARED[key] = _shared_files(delivery, key[1])
    return cached


def _shared_files(delivery: Delivery, namespaces: Sequence[str]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    if delivery.engine == "argocd":
        files[f"{ARGOCD_DIR}/appproject.yaml"] = dump(_app_project(delivery, namespaces))
        files[f"{ARGOCD_DIR}/applicationset.yaml"] = dump(_application_set(delivery, namespaces))
    if delivery.engine == "flux":
        files[f"{FLUX_DIR}/gitrepository.yaml"] = dump(_git_repository(delivery))
    return files


def release_dir(path: str) -> str:
    """Where a chart's Flux files live."""
    return f"{FLUX_DIR}/{path}"


def release_files(
    delivery: Delivery, path: ChartPath, sops_values: bytes | None
) -> dict[str, bytes]:
    """A chart's Flux files (empty without Flux), relative to `release_dir(path)`.

    `sops_values`: the chart's SOPS-encrypted Secret of values, when its namespace uses SOPS.
    """
    if delivery.engine != "flux":
        return {}
    files = {"helmrelease.yaml": _helm_release_bytes(delivery, path, sops_values is not None)}
    if sops_values is not None:
        files[SOPS_VALUES_FILE] = sops_values
    return files


# A release name YAML reads as a string wherever it stands unquoted: a letter first, and a hyphen
# (no YAML 1.1 boolean, null, number or date has both). Overseer's names are all of this form.
_PLAIN_RELEASE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)+")
_PLACEHOLDER = "overseer-release-placeholder"
_TEMPLATES: dict[tuple[str, str, bool], str] = {}
# Where a HelmRelease names its release: metadata.name, releaseName and the chart's path, and
# the values Secret's name when the chart's secrets travel with SOPS.
_SLOTS = {False: 3, True: 4}


def _helm_release_bytes(delivery: Delivery, path: ChartPath, sops: bool) -> bytes:
    # Dumped once per namespace and then filled in: a full render of 10,000 charts with Flux
    # dumps 10,000 HelmReleases, at 0.27 ms each through the dumper.
    if not _PLAIN_RELEASE.fullmatch(path.release):
        return dump(_helm_release(delivery, path, sops))
    key = (delivery.digest, path.namespace, sops)
    template = _TEMPLATES.get(key)
    if template is None:
        if len(_TEMPLATES) > 1024:
            _TEMPLATES.clear()
        placeholder = ChartPath.of(path.namespace, _PLACEHOLDER)
        text = dump(_helm_release(delivery, placeholder, sops)).decode()
        # The release stands in exactly these places; a setting that spells the placeholder
        # too (a source of that name) would be replaced with it: such a file is dumped whole.
        template = _TEMPLATES[key] = text if text.count(_PLACEHOLDER) == _SLOTS[sops] else ""
    if not template:
        return dump(_helm_release(delivery, path, sops))
    return template.replace(_PLACEHOLDER, path.release).encode()


def values_secret(path: ChartPath) -> dict[str, Any]:
    """The Secret (before SOPS encrypts its stringData) a Flux HelmRelease takes values from."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"{path.release}-secret-values",
            "namespace": path.namespace,
            "labels": MANAGED_BY,
        },
        "type": "Opaque",
        "stringData": {SECRET_VALUES_KEY: ""},  # the caller fills in the values file
    }


def _app_project(delivery: Delivery, namespaces: Sequence[str]) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {
            "name": delivery.argocd.project,
            "namespace": delivery.argocd.namespace,
            "labels": MANAGED_BY,
        },
        "spec": {
            "description": "Charts rendered by Overseer",
            "sourceRepos": [delivery.repo_url],
            "destinations": [
                {"server": delivery.argocd.server, "namespace": ns} for ns in sorted(namespaces)
            ],
            # Namespaced resources only: a chart never needs a cluster-wide one.
            "clusterResourceWhitelist": [],
        },
    }


def _application_set(delivery: Delivery, namespaces: Sequence[str]) -> dict[str, Any]:
    argo = delivery.argocd
    spec: dict[str, Any] = {
        "goTemplate": True,
        "goTemplateOptions": ["missingkey=error"],
        "generators": [
            {
                "git": {
                    "repoURL": delivery.repo_url,
                    "revision": delivery.branch,
                    # One pattern per namespace Overseer deploys to: `.overseer/` and any
                    # other directory are never taken for a chart.
                    "directories": [{"path": f"{ns}/*"} for ns in sorted(namespaces)],
                }
            }
        ],
        "template": {
            "metadata": {
                # A dot cannot be in a namespace or a release: no two charts share a name.
                "name": "{{ index .path.segments 0 }}.{{ .path.basename }}",
                "labels": MANAGED_BY,
            },
            "spec": {
                "project": argo.project,
                "source": {
                    "repoURL": delivery.repo_url,
                    "targetRevision": delivery.branch,
                    "path": "{{ .path.path }}",
                    "helm": {"releaseName": "{{ .path.basename }}"},
                },
                "destination": {
                    "server": argo.server,
                    "namespace": "{{ index .path.segments 0 }}",
                },
                "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
            },
        },
    }
    sops_namespaces = sorted(ns for ns in namespaces if delivery.secrets.of(ns).method == SOPS)
    if sops_namespaces:
        # helm-secrets on the repo server decrypts secrets.enc.yaml (docs/delivery.md).
        listed = " ".join(f'"{ns}"' for ns in sops_namespaces)
        spec["templatePatch"] = (
            f"{{{{- if has (index .path.segments 0) (list {listed}) }}}}\n"
            "spec:\n  source:\n    helm:\n      valueFiles:\n"
            "        - secrets://secrets.enc.yaml\n"
            "{{- end }}\n"
        )
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": argo.project, "namespace": argo.namespace, "labels": MANAGED_BY},
        "spec": spec,
    }


def _git_repository(delivery: Delivery) -> dict[str, Any]:
    flux = delivery.flux
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": flux.source, "namespace": flux.namespace, "labels": MANAGED_BY},
        "spec": {
            "interval": flux.interval,
            "url": delivery.repo_url,
            "ref": {"branch": delivery.branch},
        },
    }


def _helm_release(delivery: Delivery, path: ChartPath, sops: bool) -> dict[str, Any]:
    flux = delivery.flux
    spec: dict[str, Any] = {
        "interval": flux.interval,
        "releaseName": path.release,
        "chart": {
            "spec": {
                "chart": f"./{path}",
                "reconcileStrategy": "Revision",
                "sourceRef": {
                    "kind": "GitRepository",
                    "name": flux.source,
                    "namespace": flux.namespace,
                },
                "interval": flux.interval,
            }
        },
        "install": {"remediation": {"retries": 3}},
        "upgrade": {"remediation": {"retries": 3}},
    }
    if sops:
        spec["valuesFrom"] = [
            {
                "kind": "Secret",
                "name": f"{path.release}-secret-values",
                "valuesKey": SECRET_VALUES_KEY,
            }
        ]
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": path.release, "namespace": path.namespace, "labels": MANAGED_BY},
        "spec": spec,
    }
