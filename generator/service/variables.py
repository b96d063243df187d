"""What a request's variables become: plain values, secret values, or a refusal naming them."""

from __future__ import annotations

from ..delivery import EXTERNAL
from ..delivery.config import Store
from ..errors import MissingVariables, UnknownVariables, UserError
from ..manifest import Manifest
from .context import Context

MAX_VALUE_BYTES = 64 * 1024


def resolve(
    manifest: Manifest, data: dict[str, str], store: Store | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Split supplied values into (plain, secret) with defaults applied; raise on bad names.

    With `store` (the namespace's secrets come from External Secrets), secret values are
    neither required nor accepted: the store holds them, and Overseer never sees one.
    """
    variables = {v.name: v for v in manifest.variables()}
    unknown = sorted(set(data) - set(variables))
    if unknown:
        raise UnknownVariables(manifest.name, unknown, list(variables))
    if store is not None:
        given = sorted(n for n in data if variables[n].secret)
        if given:
            raise UserError(
                f"variable {', '.join(given)}: secret values of this namespace come from the "
                f"{store.kind} {store.name!r}, not from a request; put them there and leave "
                "them out"
            )
    missing = [
        v.name
        for v in variables.values()
        if v.required and v.name not in data and not (v.secret and store is not None)
    ]
    if missing:
        raise MissingVariables(manifest.name, missing)
    for name, value in data.items():
        if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            raise UserError(
                f"variable {name}: value is over {MAX_VALUE_BYTES} bytes; mount large data as a volume"
            )
        if "\x00" in value:
            raise UserError(
                f"variable {name}: value contains a NUL byte, which no environment can hold"
            )
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    for var in variables.values():
        chosen = data.get(var.name, var.default)
        if chosen is not None:
            (secret if var.secret else plain)[var.name] = chosen
    return plain, secret


def reaches_cluster(ctx: Context, namespace: str, secret: dict[str, str]) -> None:
    """Refuse secret values that nothing would install: `apply` while an engine installs."""
    delivery = ctx.delivery
    if secret and not delivery.installs and delivery.secrets.of(namespace).method == "apply":
        raise UserError(
            f"variable {', '.join(sorted(secret))}: {delivery.engine} installs namespace "
            f"{namespace!r}, and its secret method is `apply`, so the value would reach no "
            "cluster; give the namespace a method that travels with the chart (sops, "
            "sealed-secrets, external-secrets) in the delivery file, or set `apply: true` there"
        )


def secret_store(ctx: Context, namespace: str) -> Store | None:
    """The External Secrets store a namespace's secret values live in, when they live in one."""
    method = ctx.delivery.secrets.of(namespace)
    return method.store if method.method == EXTERNAL else None
