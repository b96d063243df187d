"""Rules that relate several fields of a manifest.

They run on the raw data, defensively, so they still report when other fields are malformed:
one pass over a manifest lists every problem.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from .loader import KeyPath
from .model import WRITABLE_PREFIX
from .quantity import parse_quantity


def _items(value: Any) -> list[tuple[int, dict[str, Any]]]:
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _duplicates(entries: list[tuple[KeyPath, Any]], what: str) -> Iterator[tuple[KeyPath, str]]:
    seen: dict[Any, KeyPath] = {}
    for path, value in entries:
        if value is None or not isinstance(value, str | int) or isinstance(value, bool):
            continue
        if value in seen:
            first = seen[value]
            yield (
                path,
                f"duplicate {what} {value!r} (first used at {_show(first)}); use unique {what}s",
            )
        else:
            seen[value] = path


def _show(path: KeyPath) -> str:
    from .loader import dotted

    return dotted(path)


def cross_field_problems(data: dict[str, Any]) -> list[tuple[KeyPath, str]]:
    """Return (key path, message) for every relational rule the manifest breaks."""
    problems: list[tuple[KeyPath, str]] = []
    env = _get(data, "dependencies", "env_vars") or {}
    env_entries: list[tuple[KeyPath, Any]] = []
    for kind in ("required", "optional"):
        for i, item in _items(_get(env, kind)):
            env_entries.append((("dependencies", "env_vars", kind, i, "name"), item.get("name")))
    problems += _duplicates(env_entries, "variable name")

    volumes = _items(_get(data, "dependencies", "volumes"))
    problems += _duplicates(
        [(("dependencies", "volumes", i, "name"), v.get("name")) for i, v in volumes], "volume name"
    )
    for i, v in volumes:
        name = v.get("name")
        if isinstance(name, str) and re.fullmatch(re.escape(WRITABLE_PREFIX) + r"[0-9]+", name):
            problems.append(
                (
                    ("dependencies", "volumes", i, "name"),
                    f"{name!r} is reserved for security.writable_paths; rename the volume",
                )
            )
    mounts: list[tuple[KeyPath, Any]] = [
        (("dependencies", "volumes", i, "mount_path"), v.get("mount_path")) for i, v in volumes
    ]
    writable = _get(data, "security", "writable_paths")
    if isinstance(writable, list):  # each becomes an emptyDir volume mounted there
        mounts += [(("security", "writable_paths", i), w) for i, w in enumerate(writable)]
    problems += _duplicates(mounts, "mount path")

    for resource in ("cpu", "memory", "ephemeral_storage"):
        bounds = _get(data, "dependencies", "resources", resource)
        low, high = _quantity(_get(bounds, "min")), _quantity(_get(bounds, "max"))
        if low is not None and high is not None and low > high:
            problems.append(
                (
                    ("dependencies", "resources", resource, "min"),
                    f"min {bounds['min']!r} is greater than max {bounds['max']!r}; "
                    "min becomes the request and must not exceed the limit",
                )
            )

    ports = _items(data.get("ports"))
    problems += _duplicates([(("ports", i, "name"), p.get("name")) for i, p in ports], "port name")
    problems += _duplicates(
        [(("ports", i, "container_port"), p.get("container_port")) for i, p in ports],
        "container port",
    )

    port_names = sorted({p["name"] for _, p in ports if isinstance(p.get("name"), str)})
    for i, path in _items(_get(data, "ingress", "paths")):
        target = path.get("service_port")
        if isinstance(target, str) and target not in port_names:
            problems.append(
                (
                    ("ingress", "paths", i, "service_port"),
                    f"names port {target!r}, which is not declared under ports; "
                    f"declared ports are: {', '.join(port_names) or '(none)'}",
                )
            )
    problems += _duplicates(
        [
            (("ingress", "paths", i, "path"), p.get("path"))
            for i, p in _items(_get(data, "ingress", "paths"))
        ],
        "ingress path",
    )
    if _get(data, "ingress", "enabled") is True and not _items(_get(data, "ingress", "paths")):
        problems.append((("ingress", "paths"), "ingress is enabled but lists no paths; add one"))
    problems += _probe_problems(data, port_names)
    problems += _network_problems(data, port_names)
    return problems


def _undeclared(port: Any, port_names: list[str]) -> str | None:
    if not isinstance(port, str) or port in port_names:
        return None
    return (
        f"names port {port!r}, which is not declared under ports; "
        f"declared ports are: {', '.join(port_names) or '(none)'}"
    )


def _probe_problems(data: dict[str, Any], port_names: list[str]) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    for kind in ("readiness", "liveness", "startup"):
        probe = _get(data, "probes", kind)
        if not isinstance(probe, dict):
            continue
        given = [k for k in ("tcp", "http", "exec") if probe.get(k) is not None]
        if len(given) != 1:
            said = ", ".join(given) if given else "none of them"
            problems.append(
                (("probes", kind), f"give exactly one of tcp, http or exec (got {said})")
            )
        for key, port in (("tcp", probe.get("tcp")), ("http", _get(probe, "http", "port"))):
            message = _undeclared(port, port_names)
            if message:
                where: KeyPath = (
                    ("probes", kind, "tcp") if key == "tcp" else ("probes", kind, "http", "port")
                )
                problems.append((where, message))
    return problems


def _network_problems(data: dict[str, Any], port_names: list[str]) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    ingress_on = _get(data, "ingress", "enabled") is True
    for i, rule in _items(_get(data, "network", "allow")):
        if rule.get("from") == "ingress-controller" and not ingress_on:
            problems.append(
                (
                    ("network", "allow", i, "from"),
                    "allows the ingress controller, but ingress is not enabled; enable it or drop "
                    "this rule",
                )
            )
        ports = rule.get("ports")
        for j, port in enumerate(ports if isinstance(ports, list) else []):
            message = _undeclared(port, port_names)
            if message:
                problems.append((("network", "allow", i, "ports", j), message))
    for i, rule in _items(_get(data, "network", "egress")):
        cidr = rule.get("cidr")
        if isinstance(cidr, str):
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                problems.append(
                    (("network", "egress", i, "cidr"), f"{exc}; give a network address")
                )
    return problems


def _quantity(value: Any) -> Decimal | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_quantity(value)
    except ValueError:
        return None
