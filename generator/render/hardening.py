"""What makes a chart one a platform team would ship: probes, a locked-down pod, a NetworkPolicy.

Each is computed from the manifest once per plugin, as plain Kubernetes fields, and lands in
values.yaml, so `helm install` users see and can override exactly what the templates apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..manifest import Manifest
from ..manifest.model import Probe

SAME_NAMESPACE = "same-namespace"
INGRESS_CONTROLLER = "ingress-controller"


def _probe(probe: Probe) -> dict[str, Any]:
    out: dict[str, Any]
    if probe.tcp is not None:
        out = {"tcpSocket": {"port": probe.tcp}}
    elif probe.http is not None:
        out = {"httpGet": {"port": probe.http.port, "path": probe.http.path}}
    else:
        out = {"exec": {"command": list(probe.exec or [])}}
    return {
        **out,
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "failureThreshold": probe.failure_threshold,
    }


def probes(m: Manifest) -> dict[str, dict[str, Any]]:
    """readinessProbe, livenessProbe and startupProbe; readiness defaults to TCP on the first port."""
    readiness = m.probes.readiness
    if readiness is None and m.ports:
        readiness = Probe(tcp=m.ports[0].name)
    return {
        "readinessProbe": _probe(readiness) if isinstance(readiness, Probe) else {},
        "livenessProbe": _probe(m.probes.liveness) if m.probes.liveness else {},
        "startupProbe": _probe(m.probes.startup) if m.probes.startup else {},
    }


def security(m: Manifest) -> dict[str, Any]:
    """The pod's and the container's security contexts, and the service-account token choice."""
    sec = m.security
    pod: dict[str, Any] = {"seccompProfile": {"type": sec.seccomp_profile}}
    for key, value in (
        ("runAsUser", sec.run_as_user),
        ("runAsGroup", sec.run_as_group),
        ("fsGroup", sec.fs_group),
    ):
        if value is not None:
            pod[key] = value
    non_root = sec.run_as_non_root
    if non_root is None and sec.run_as_user is not None:
        non_root = sec.run_as_user != 0
    if non_root is not None:
        pod["runAsNonRoot"] = non_root
    capabilities: dict[str, list[str]] = {"drop": ["ALL"]}
    if sec.add_capabilities:
        capabilities["add"] = sorted(sec.add_capabilities)
    container: dict[str, Any] = {
        "allowPrivilegeEscalation": sec.allow_privilege_escalation,
        "capabilities": capabilities,
        "privileged": False,
        "readOnlyRootFilesystem": sec.read_only_root_filesystem,
    }
    # Repeated on the container, where per-container checks (kube-score among them) look.
    for key in ("runAsUser", "runAsGroup", "runAsNonRoot"):
        if key in pod:
            container[key] = pod[key]
    return {
        "podSecurityContext": pod,
        "securityContext": container,
        "automountServiceAccountToken": sec.automount_service_account_token,
    }


def _ports(names: list[str], protocols: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"port": name, "protocol": protocols[name]} for name in names]


def network_policy(m: Manifest) -> dict[str, Any]:
    """The NetworkPolicy's ingress and egress rules, as Kubernetes writes them."""
    protocols = {p.name: p.protocol for p in m.ports}
    every = [p.name for p in m.ports]
    ingress_on = bool(m.ingress and m.ingress.enabled)
    routed = sorted({p.service_port for p in m.ingress.paths}) if m.ingress else []
    allow = m.network.allow
    if allow is None:
        rules: list[tuple[str, list[str]]] = [(SAME_NAMESPACE, every)]
        if ingress_on:
            rules.append((INGRESS_CONTROLLER, routed))
    else:
        defaults = {INGRESS_CONTROLLER: routed}
        rules = [
            (a.source, defaults.get(a.source, every) if a.ports is None else a.ports) for a in allow
        ]
    ingress: list[dict[str, Any]] = []
    for source, names in rules:
        if not names:
            continue
        if source == SAME_NAMESPACE:
            peer: dict[str, Any] = {"podSelector": {}}
        else:
            namespace = m.network.ingress_namespace if source == INGRESS_CONTROLLER else source
            peer = {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            }
        ingress.append({"from": [peer], "ports": _ports(names, protocols)})
    egress: list[dict[str, Any]]
    if m.network.egress == "all":
        egress = [{}]  # one empty rule: any destination, any port
    else:
        # Names must still resolve: DNS to any namespace stays open.
        egress = [
            {
                "to": [{"namespaceSelector": {}}],
                "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
            }
        ]
        for rule in m.network.egress:
            entry: dict[str, Any] = {"to": [{"ipBlock": {"cidr": rule.cidr}}]}
            if rule.ports:
                entry["ports"] = [{"port": p, "protocol": rule.protocol} for p in rule.ports]
            egress.append(entry)
    return {"enabled": True, "ingress": ingress, "egress": egress}


def hardening(m: Manifest) -> dict[str, Any]:
    """Every hardening section of values.yaml, keyed as there."""
    return {**probes(m), **security(m), "networkPolicy": network_policy(m)}
