"""Applying to a real control plane (kwok): the full cycle, failure, secrets, TTL, stuck releases."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from cryptography.fernet import Fernet

from generator.config import Settings
from tests.conftest import ROOT, Cli, Kube

pytestmark = pytest.mark.cluster


def with_version(manifest: Path, version: str, cpu_min: str = '"1"', cpu_max: str = '"2"') -> str:
    text = manifest.read_text().replace("version: 1.0.0", f"version: {version}")
    return text.replace(
        '      min: "1"\n      max: "2"', f"      min: {cpu_min}\n      max: {cpu_max}"
    )


def register_text(cli: Cli, text: str) -> None:
    path = cli.settings.repo.parent / f"plugin-{abs(hash(text))}.yaml"
    path.write_text(text)
    result = cli("plugin", "register", str(path))
    assert result.exit_code == 0, result.stderr


def ready_then_unschedulable(kcli: Cli, manifest: Path) -> tuple[str, str]:
    """A deployment applied and READY, whose plugin then moves to a version that cannot run."""
    register_text(kcli, manifest.read_text())
    dep = kcli.deploy()
    assert kcli("apply").exit_code == 0
    # Version 1.1.0 asks for more CPU than any node has: its pod can never be scheduled or ready.
    register_text(kcli, with_version(manifest, "1.1.0", '"1000"', '"1000"'))
    return dep["deployment_id"], dep["namespace"]


def show(cli: Cli, ident: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(cli("deploy", "show", ident, "-o", "json").stdout)
    return data


def release_status(kube: Kube, release: str, namespace: str) -> str | None:
    proc = kube.helm("status", release, "-n", namespace, "-o", "json")
    return json.loads(proc.stdout)["info"]["status"] if proc.returncode == 0 else None


def test_an_update_upgrades_the_release_and_rolls_its_pods(
    kcli: Cli, kube: Kube, claude_manifest: Path
) -> None:
    register_text(kcli, claude_manifest.read_text())
    dep = kcli.deploy()
    release, ns = dep["deployment_id"], dep["namespace"]
    assert kcli("apply").exit_code == 0

    def pod_template() -> dict[str, Any]:
        spec = kube.json("get", "deployment", release, "-n", ns)["spec"]
        return spec["template"]  # type: ignore[index, no-any-return]

    revision = pod_template()["metadata"]["annotations"]["overseer.dev/secret-revision"]
    # Only a secret changes: the chart stays, yet the release is upgraded and the pods roll.
    assert kcli("deploy", "update", release, "--set", "ANTHROPIC_API_KEY=k2").exit_code == 0
    assert show(kcli, release)["status"] == "UPDATING"
    refreshed = json.loads(kcli("status", release, "-o", "json").stdout)  # reads the cluster
    assert refreshed[0]["status"] == "UPDATING" and show(kcli, release)["status"] == "UPDATING"
    applied = kcli("apply")
    assert applied.stdout.splitlines()[1].split() == [release, ns, "applied", "READY", "2"]
    assert pod_template()["metadata"]["annotations"]["overseer.dev/secret-revision"] != revision
    secret = kube.json("get", "secret", f"{release}-env", "-n", ns)
    assert base64.b64decode(secret["data"]["ANTHROPIC_API_KEY"]) == b"k2"  # type: ignore[index]
    # A plain variable: a new commit, and the container runs with the new value.
    assert kcli("deploy", "update", release, "--set", "HEIGHT=900").exit_code == 0
    applied = kcli("apply")
    assert applied.stdout.splitlines()[1].split() == [release, ns, "applied", "READY", "3"]
    env = {e["name"]: e.get("value") for e in pod_template()["spec"]["containers"][0]["env"]}
    assert env["HEIGHT"] == "900"
    assert kcli("apply").stdout == "nothing to apply: every release matches its chart\n"


def test_full_cycle(kcli: Cli, kube: Kube, claude_manifest: Path) -> None:
    register_text(kcli, claude_manifest.read_text())
    dep = kcli.deploy()
    release, ns = dep["deployment_id"], dep["namespace"]
    result = kcli("apply")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].split() == [
        "DEPLOYMENT_ID",
        "NAMESPACE",
        "ACTION",
        "STATUS",
        "REVISION",
        "REASON",
    ]
    assert result.stdout.splitlines()[1].split() == [release, ns, "applied", "READY", "1"]
    shown = show(kcli, release)
    assert shown["status"] == "READY"
    assert release_status(kube, release, ns) == "deployed"
    deployment = kube.json("get", "deployment", release, "-n", ns)
    assert deployment["status"]["readyReplicas"] == 1  # type: ignore[index]
    # READY with the probe, the locked-down pod and the NetworkPolicy in place.
    pod = deployment["spec"]["template"]["spec"]  # type: ignore[index]
    assert pod["containers"][0]["readinessProbe"]["tcpSocket"] == {"port": "vnc"}
    assert pod["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    policy = kube.json("get", "networkpolicy", release, "-n", ns)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]  # type: ignore[index]
    again = kcli("apply")
    assert again.stdout == "nothing to apply: every release matches its chart\n"
    refreshed = kcli("status", release, "-o", "json")
    assert json.loads(refreshed.stdout)[0]["status"] == "READY"
    connect = json.loads(kcli("connect", release, "-o", "json").stdout)["connection_details"]
    assert connect["novnc_port"] == 6080 and connect["vnc_port"] == 5900
    assert connect["service"] == f"{release}.{ns}.svc.cluster.local" and connect["namespace"] == ns
    assert connect["ingress_paths"] == {"/streamlit": "streamlit", "/novnc": "novnc", "/api": "api"}
    deleted = kcli("deploy", "delete", release)
    assert deleted.exit_code == 0, deleted.stderr
    assert release_status(kube, release, ns) is None
    assert (
        kube.kubectl(
            "get",
            "deployment,service,secret,networkpolicy",
            "-n",
            ns,
            "-l",
            f"app.kubernetes.io/instance={release}",
            "-o",
            "name",
        ).stdout
        == ""
    )
    assert show(kcli, release)["status"] == "DELETED"


def test_failure_keeps_previous_revision_then_fixed_retry_succeeds(
    kcli: Cli, kube: Kube, claude_manifest: Path
) -> None:
    release, ns = ready_then_unschedulable(kcli, claude_manifest)
    failed = kcli("apply", env={"OVERSEER_HELM_TIMEOUT": "8s"})
    assert failed.exit_code == 1
    shown = show(kcli, release)
    assert shown["status"] == "FAILED"
    assert shown["status_reason"], "FAILED must carry helm's reason"
    assert release_status(kube, release, ns) == "deployed"  # rolled back
    container = kube.json("get", "deployment", release, "-n", ns)["spec"]["template"]["spec"][
        "containers"
    ][0]  # type: ignore[index]
    assert container["resources"]["requests"]["cpu"] == "1"  # the previous revision, intact
    register_text(kcli, with_version(claude_manifest, "1.2.0"))
    fixed = kcli("apply")
    assert fixed.exit_code == 0, fixed.stdout
    assert show(kcli, release)["status"] == "READY"
    history = json.loads(kube.helm("history", release, "-n", ns, "-o", "json").stdout)
    assert [h["status"] for h in history][-1] == "deployed"


def test_secret_reaches_the_cluster_only(
    kcli: Cli, kube: Kube, claude_manifest: Path, tmp_path: Path
) -> None:
    secret = "sk-cluster-only-7d1e"
    shim = tmp_path / "helm-shim"
    log = tmp_path / "helm-argv.log"
    real = subprocess.run(
        ["which", "helm"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # Records every helm command line and the mode of each values file helm is given.
    shim.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "ARGV $*" >> {log}\n'
        'prev=""; for a in "$@"; do if [ "$prev" = "--values" ]; then '
        f'echo "MODE $(stat -c %a "$a") DIR $(stat -c %a "$(dirname "$a")")" >> {log}; echo "VALUESFILE $a" >> {log}; fi; prev="$a"; done\n'
        f'exec {real} "$@"\n'
    )
    shim.chmod(0o755)
    register_text(kcli, claude_manifest.read_text())
    result = kcli(
        "deploy",
        "create",
        "claude-environment",
        "--set-env",
        "ANTHROPIC_API_KEY",
        "-o",
        "json",
        env={"ANTHROPIC_API_KEY": secret},
    )
    dep = json.loads(result.stdout)
    applied = kcli("apply", env={"OVERSEER_HELM": str(shim)})
    assert applied.exit_code == 0, applied.stdout
    data = kube.json("get", "secret", f"{dep['deployment_id']}-env", "-n", dep["namespace"])["data"]
    import base64

    assert base64.b64decode(data["ANTHROPIC_API_KEY"]).decode() == secret  # type: ignore[index]
    recorded = log.read_text()
    assert "ARGV upgrade --install" in recorded and secret not in recorded
    assert "MODE 600 DIR 700" in recorded
    for line in recorded.splitlines():
        if line.startswith("VALUESFILE "):
            assert not Path(line.split(" ", 1)[1]).exists(), "the values file must be removed"
    history = subprocess.run(
        ["git", "-C", str(kcli.settings.repo), "log", "--all", "-p"], capture_output=True, text=True
    ).stdout
    assert secret not in history and secret not in applied.stdout + applied.stderr


def test_ttl_expiry_by_gc(kcli: Cli, kube: Kube, claude_manifest: Path) -> None:
    register_text(kcli, claude_manifest.read_text())
    dep = kcli.deploy("--ttl", "3600")
    keep = kcli.deploy()
    assert kcli("apply").exit_code == 0
    with psycopg.connect(kcli.env["DATABASE_URL"]) as conn:  # time passes for the first one only
        conn.execute(
            "UPDATE deployments SET expires_at = now() - interval '1 second' WHERE id = %s",
            (dep["id"],),
        )
    result = kcli("gc")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1].split()[:4] == [
        dep["deployment_id"],
        dep["namespace"],
        "uninstalled",
        "EXPIRED",
    ]
    assert show(kcli, dep["id"])["status"] == "EXPIRED"
    assert release_status(kube, dep["deployment_id"], dep["namespace"]) is None
    assert release_status(kube, keep["deployment_id"], keep["namespace"]) == "deployed"
    assert not (kcli.settings.repo / dep["chart"]).exists()
    assert kcli("gc").stdout == "nothing expired\n"


def test_stuck_release_is_reported_and_recovered(
    kcli: Cli, kube: Kube, claude_manifest: Path
) -> None:
    release, ns = ready_then_unschedulable(kcli, claude_manifest)
    env = {**os.environ, **kcli.env, "OVERSEER_HELM_TIMEOUT": "120s"}
    runner = subprocess.Popen(
        ["overseer", "apply"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while release_status(kube, release, ns) != "pending-upgrade":
            assert time.monotonic() < deadline, "helm never reached pending-upgrade"
            time.sleep(0.3)
    finally:
        os.killpg(runner.pid, signal.SIGKILL)  # helm dies mid-upgrade, as on a crash
        runner.wait()
    assert release_status(kube, release, ns) == "pending-upgrade"
    stuck = kcli("apply")
    assert stuck.exit_code == 1
    reason = str(show(kcli, release)["status_reason"])
    assert f"overseer apply --recover {release}" in reason
    register_text(kcli, with_version(claude_manifest, "1.2.0"))
    recovered = kcli("apply", "--recover", release)
    assert recovered.exit_code == 0, recovered.stdout + recovered.stderr
    actions = [line.split()[2] for line in recovered.stdout.splitlines()[1:]]
    assert actions == ["recovered", "applied"]
    assert release_status(kube, release, ns) == "deployed"
    assert show(kcli, release)["status"] == "READY"


def test_overseer_chart_installs(
    kube: Kube, helm_bin: str, settings: Settings, claude_manifest: Path, tmp_path: Path
) -> None:
    ns = "overseer-chart-test"
    kube.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=true", check=False)
    # kwok has no storage provisioner: a static volume of the chart's storage class stands in.
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{ns}-pv"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "a8s-storage",
            "persistentVolumeReclaimPolicy": "Delete",
            "hostPath": {"path": "/tmp/overseer-chart-test"},
        },
    }
    subprocess.run(
        ["kubectl", "--kubeconfig", str(kube.kubeconfig), "apply", "-f", "-"],
        input=json.dumps(volume),
        capture_output=True,
        text=True,
        check=True,
    )
    try:
        proc = kube.helm(
            "upgrade",
            "--install",
            "overseer",
            str(ROOT / "charts" / "overseer"),
            "-n",
            ns,
            "--create-namespace",
            "--set",
            "gitops.remote=https://git.example.com/team/gitops.git",
            "--set",
            f"rbac.namespaces={{{ns}}}",
            "--wait=watcher",
            "--timeout",
            "120s",
        )
        assert proc.returncode == 0, proc.stderr
        job = kube.json("get", "job", "overseer-migrations", "-n", ns)
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"  # type: ignore[index]
        names = kube.kubectl(
            "get", "deployment,service,configmap,pvc", "-n", ns, "-o", "name"
        ).stdout.split()
        for expected in (
            "deployment.apps/overseer",
            "deployment.apps/overseer-postgresql",
            "service/overseer",
            "service/overseer-postgresql",
            "configmap/overseer-config",
            "persistentvolumeclaim/overseer-postgresql-data",
        ):
            assert expected in names, names
        config = kube.json("get", "configmap", "overseer-config", "-n", ns)
        assert (
            config["data"]["DATABASE_URL"]
            == "postgresql://overseer:overseer@overseer-postgresql:5432/overseer"
        )  # type: ignore[index]
        assert config["data"]["OVERSEER_GIT_REMOTE"] == "https://git.example.com/team/gitops.git"  # type: ignore[index]
        # The pod runs as a ServiceAccount of its own, which may deploy in the listed namespaces.
        pod = kube.json("get", "deployment", "overseer", "-n", ns)["spec"]["template"]["spec"]  # type: ignore[index]
        assert pod["serviceAccountName"] == "overseer"
        role = kube.json("get", "role", "overseer-deployer", "-n", ns)
        kinds = {r for rule in role["rules"] for r in rule["resources"]}  # type: ignore[index]
        assert {"deployments", "secrets", "networkpolicies", "poddisruptionbudgets"} <= kinds
        can = kube.kubectl(
            "auth", "can-i", "create", "deployments", "-n", ns,
            f"--as=system:serviceaccount:{ns}:overseer", check=False,
        )  # fmt: skip
        assert can.stdout.strip() == "yes"
        elsewhere = kube.kubectl(
            "auth", "can-i", "create", "deployments", "-n", "kube-system",
            f"--as=system:serviceaccount:{ns}:overseer", check=False,
        )  # fmt: skip
        assert elsewhere.stdout.strip() == "no"  # the cluster enforces RBAC: nothing beyond
        _apply_as_the_service_account(kube, ns, settings, claude_manifest, tmp_path)
        token = kube.json("get", "secret", "overseer-api-token", "-n", ns)["data"][
            "OVERSEER_API_TOKEN"
        ]  # type: ignore[index]
        assert len(token) > 40  # generated, since the API listens beyond loopback in the pod
        key = kube.json("get", "secret", "overseer-secret-key", "-n", ns)["data"][
            "OVERSEER_SECRET_KEY"
        ]  # type: ignore[index]
        Fernet(base64.b64decode(key))  # a Fernet key, generated once
        upgrade = kube.helm(
            "upgrade",
            "overseer",
            str(ROOT / "charts" / "overseer"),
            "-n",
            ns,
            "--reuse-values",
            "--wait=watcher",
            "--timeout",
            "120s",
        )
        assert upgrade.returncode == 0, upgrade.stderr  # the pre-upgrade hook runs again
        kept = kube.json("get", "secret", "overseer-api-token", "-n", ns)["data"][
            "OVERSEER_API_TOKEN"
        ]  # type: ignore[index]
        assert kept == token
        assert (
            kube.json("get", "secret", "overseer-secret-key", "-n", ns)["data"][  # type: ignore[index]
                "OVERSEER_SECRET_KEY"
            ]
            == key
        )  # kept across upgrades: the sealed secrets still open
    finally:
        kube.helm("uninstall", "overseer", "-n", ns)
        kube.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
        kube.kubectl(
            "delete",
            "persistentvolume",
            f"{ns}-pv",
            "--wait=false",
            "--ignore-not-found",
            check=False,
        )


def _apply_as_the_service_account(
    kube: Kube, ns: str, settings: Settings, claude_manifest: Path, tmp_path: Path
) -> None:
    """Overseer with the chart's ServiceAccount token as its kubeconfig, as its pod runs.

    It installs into a namespace of `rbac.namespaces`, and is refused in one that exists but is
    not listed, with the cluster's reason on the deployment.
    """
    denied = f"{ns}-denied"
    kube.kubectl("create", "namespace", denied, check=False)
    try:
        token = kube.kubectl("create", "token", "overseer", "-n", ns, "--duration", "10m")
        config = yaml.safe_load(kube.kubeconfig.read_text())
        config["users"] = [{"name": config["users"][0]["name"], "user": {"token": token.stdout}}]
        as_pod = tmp_path / "service-account.kubeconfig"
        as_pod.write_text(yaml.safe_dump(config))
        cli = Cli(dataclasses.replace(settings, kubeconfig=as_pod, helm_timeout="60s"))
        env = {
            "OVERSEER_CREATE_NAMESPACES": "false",  # as the chart's ConfigMap says
            "OVERSEER_ALLOWED_NAMESPACES": f"{ns},{denied}",
        }
        assert cli("plugin", "register", str(claude_manifest)).exit_code == 0
        allowed = cli.deploy("--namespace", ns, env=env)
        refused = cli.deploy("--namespace", denied, env=env)
        assert cli("apply", env=env).exit_code != 0  # one release failed
        status = {
            d["deployment_id"]: d
            for d in json.loads(cli("deploy", "list", "-o", "json", env=env).stdout)
        }
        assert status[allowed["deployment_id"]]["status"] == "READY"
        failed = status[refused["deployment_id"]]
        assert failed["status"] == "FAILED"
        reason = failed["status_reason"]
        assert "forbidden" in reason and f"system:serviceaccount:{ns}:overseer" in reason, reason
        assert kube.kubectl("get", "deployment", allowed["deployment_id"], "-n", ns).returncode == 0
    finally:
        kube.kubectl("delete", "namespace", denied, "--wait=false", check=False)


def test_overseer_chart_lints_and_validates(
    tmp_path: Path, helm_bin: str, kubeconform_bin: str
) -> None:
    from generator.validate import validate

    for args in (
        [],
        ["--set", "postgresql.enabled=false", "--set", "databaseUrl=postgresql://u:p@db:5432/o"],
    ):
        proc = subprocess.run(
            [helm_bin, "lint", "--strict", str(ROOT / "charts" / "overseer"), *args],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout
    reports = validate([ROOT / "charts" / "overseer"])  # with its ci/values.yaml
    assert reports[0].problems == []
    no_db = subprocess.run(
        [
            helm_bin,
            "template",
            "x",
            str(ROOT / "charts" / "overseer"),
            "--set",
            "postgresql.enabled=false",
            "--set",
            "gitops.remote=https://git.example.com/g.git",
        ],
        capture_output=True,
        text=True,
    )
    assert no_db.returncode != 0 and "databaseUrl" in no_db.stderr
    # Without a remote the repository would go with the pod: refused, unless accepted.
    no_remote = subprocess.run(
        [helm_bin, "template", "x", str(ROOT / "charts" / "overseer")],
        capture_output=True,
        text=True,
    )
    assert no_remote.returncode != 0
    assert "gitops.remote (or gitops.existingSecret) is required" in no_remote.stderr
    # Replicas agree on the remote's main: without one, a single replica only.
    alone = [helm_bin, "template", "x", str(ROOT / "charts" / "overseer"), "--set"]
    two = subprocess.run([*alone, "gitops.ephemeral=true"], capture_output=True, text=True)
    assert two.returncode != 0 and "replicaCount above 1 needs gitops.remote" in two.stderr
    one = subprocess.run(
        [*alone, "gitops.ephemeral=true", "--set", "replicaCount=1"], capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr
    assert "PodDisruptionBudget" not in one.stdout  # nothing to keep up with one replica
    default = yaml.safe_load_all(
        subprocess.run(
            [*alone, "gitops.remote=https://git.example.com/g.git"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    kinds = {
        d["kind"]: d
        for d in default
        if d and d["metadata"]["name"] in ("x-overseer", "x-overseer-config")
    }
    assert kinds["Deployment"]["spec"]["replicas"] == 2
    assert kinds["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {m["mountPath"] for m in container["volumeMounts"]} == {
        "/home/overseer", "/home/overseer/gitops", "/tmp",
    }  # fmt: skip
    assert kinds["ConfigMap"]["data"]["OVERSEER_CREATE_NAMESPACES"] == "false"
    # A ClusterRole only to create namespaces, and only when asked.
    cluster_wide = subprocess.run(
        [
            helm_bin, "template", "x", str(ROOT / "charts" / "overseer"),
            "--set", "gitops.remote=https://git.example.com/g.git",
            "--set", "rbac.createNamespaces=true",
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    roles = [d for d in yaml.safe_load_all(cluster_wide) if d and d["kind"] == "ClusterRole"]
    assert [r["rules"] for r in roles] == [
        [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "create"]}]
    ]
