"""A chart's secret values, carried by the chart itself for an engine with no database.

Three methods besides `apply` (which passes the values at install time and writes nothing):

- sops: `secrets.enc.yaml` beside the chart, a values file whose `secretEnv` SOPS encrypted to
  the namespace's age recipients (helm-secrets and `sops -d` read it);
- sealed-secrets: `templates/sealedsecret.yaml`, a SealedSecret sealed with the controller's
  certificate, which the controller opens into the Secret the pods read;
- external-secrets: `templates/externalsecret.yaml`, an ExternalSecret naming a key in a store;
  no value, encrypted or not, is written at all.

The chart's record says which method and a revision (a digest of the sealed values' digest and
of the method's settings, never of a value). Ciphertext is made again only when that revision
changes: encryption is randomised, and a render that changes nothing must write nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..chart_path import ChartPath
from ..errors import Misconfigured
from ..tools import sops
from . import engines
from .config import EXTERNAL, SEALED, SOPS, Delivery, SecretMethod

SOPS_FILE = "secrets.enc.yaml"
SEALED_FILE = "templates/sealedsecret.yaml"
EXTERNAL_FILE = "templates/externalsecret.yaml"
# Files no render can make again byte for byte: a check carries them from the chart it checks.
CIPHERTEXT = {SOPS: SOPS_FILE, SEALED: SEALED_FILE}
EXTERNAL_SECRETS_API = "external-secrets.io/v1"


def _recorded(record: bytes | None) -> dict[str, Any] | None:
    try:
        deployment = json.loads(record or b"")["deployment"]
    except (ValueError, KeyError, TypeError):
        return None
    return deployment if isinstance(deployment, dict) else None


def recorded_part(record: bytes | None) -> dict[str, str] | None:
    """The secrets part of a chart's record bytes; None when there is no readable record."""
    deployment = _recorded(record)
    part = deployment.get("secret_delivery", {}) if deployment is not None else None
    return part if isinstance(part, dict) else None


def carry_ciphertext(expected: dict[str, bytes], actual: dict[str, bytes], record: str) -> None:
    """Give a fresh render (`expected`) the encrypted file a committed chart holds.

    No render makes ciphertext again byte for byte, so a check compares everything else and
    asks only that the file be there and be what its method writes: encrypted, for exactly the
    chart's variables. A missing one, or one in the clear, is not carried: the check reports it.
    """
    deployment = _recorded(expected.get(record)) or {}
    part = deployment.get("secret_delivery") or {}
    name = CIPHERTEXT.get(part.get("method", "") if isinstance(part, dict) else "")
    if name is None:
        return
    data = actual.get(name)
    keys = sorted(deployment.get("secret_keys") or [])
    if data is not None and _encrypted(name, data, keys):
        expected[name] = data
    else:
        expected[name] = b"(encrypted by Overseer: render it again)\n"


def _encrypted(name: str, data: bytes, keys: list[str]) -> bool:
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError:
        return False
    if not isinstance(doc, dict):
        return False
    if name == SOPS_FILE:
        env, meta = doc.get("secretEnv"), doc.get("sops")
        return (
            isinstance(meta, dict)
            and bool(meta.get("age"))
            and isinstance(env, dict)
            and sorted(env) == keys
            and all(isinstance(v, str) and v.startswith("ENC[AES256_GCM,") for v in env.values())
        )
    spec = doc.get("spec")
    sealed = spec.get("encryptedData") if isinstance(spec, dict) else None
    return (
        doc.get("kind") == "SealedSecret"
        and isinstance(sealed, dict)
        and sorted(sealed) == keys
        and all(isinstance(v, str) and _sealed_value(v) for v in sealed.values())
    )


# The shortest sealed value: the 2-byte length, an RSA-2048 block (the controller's keys are
# 4096 bits by default) and the AES-GCM tag. Base64 of a plain value is shorter than this.
_SEALED_MIN = 2 + 256 + 16


def _sealed_value(text: str) -> bool:
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return False
    return len(raw) >= _SEALED_MIN and int.from_bytes(raw[:2], "big") >= 256


def secret_name(release: str) -> str:
    """The Secret a pulled method creates for the pods (the chart's `existingSecret`)."""
    return f"{release}-env"


@lru_cache(maxsize=64)  # asked for every chart a render reads; settings are few and frozen
def _method_digest(method: SecretMethod) -> str:
    data: dict[str, Any] = {"method": method.method}
    if method.method == SOPS:
        data["age"] = list(method.age)
    elif method.method == SEALED:
        data["certificate"] = hashlib.sha256(_certificate_pem(method)).hexdigest()
    else:
        data.update(store=method.store.model_dump() if method.store else None, key=method.key)
        data["refresh"] = method.refresh_interval
    return json.dumps(data, sort_keys=True)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record_part(
    method: SecretMethod,
    namespace: str,
    release: str,
    sealed_revision: str | None,
    keys: Sequence[str],
) -> dict[str, str]:
    """What a chart's record says about its secrets; empty for `apply`.

    `revision` changes with the values and the variables the chart declares (it rolls the
    pods); `sealed_for` with the method's settings (the recipients, the certificate). Either
    change makes the ciphertext again; neither holds anything a value could be guessed from.
    """
    if not method.pulls:
        return {}
    part = {"method": method.method, "sealed_for": _digest(_method_digest(method))}
    if method.method != EXTERNAL:  # the store holds the values: Overseer never knows them
        part["revision"] = _digest(f"{sealed_revision or ''}\n{','.join(sorted(keys))}")
    if method.method == EXTERNAL:
        assert method.store is not None  # noqa: S101 - the config refuses it without one
        part.update(
            store=method.store.name,
            store_kind=method.store.kind,
            key=method.key.format(namespace=namespace, release=release),
            refresh=method.refresh_interval,
        )
    return part


def plain_files(part: dict[str, str], namespace: str, release: str) -> dict[str, bytes]:
    """The files a record alone renders again (the ExternalSecret), by path in the chart."""
    if part.get("method") != EXTERNAL:
        return {}
    name = secret_name(release)
    doc = {
        "apiVersion": EXTERNAL_SECRETS_API,
        "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "refreshInterval": part["refresh"],
            "secretStoreRef": {"name": part["store"], "kind": part["store_kind"]},
            "target": {"name": name, "creationPolicy": "Owner"},
            # Every property under the release's key becomes one variable of the Secret.
            "dataFrom": [{"extract": {"key": part["key"]}}],
        },
    }
    return {EXTERNAL_FILE: engines.dump(doc)}


def ciphertext_files(
    method: SecretMethod, namespace: str, release: str, values: dict[str, str]
) -> dict[str, bytes]:
    """The encrypted files of one chart, made now (randomised: call only when they change)."""
    if method.method == SOPS:
        plain = _values_file(values)
        return {SOPS_FILE: sops.encrypt(plain, method.age, encrypted_regex="^secretEnv$")}
    if method.method == SEALED:
        return {SEALED_FILE: sealed_secret(_public_key(method), namespace, release, values)}
    return {}


def _values_file(values: dict[str, str]) -> bytes:
    # The values file helm reads them from: helm-secrets decrypts it, Flux reads it from a Secret.
    return engines.dump({"secretEnv": dict(sorted(values.items()))})


def sops_values_secret(method: SecretMethod, path: ChartPath, values: dict[str, str]) -> bytes:
    """The Secret of values a Flux HelmRelease reads, its stringData encrypted with SOPS."""
    doc = engines.values_secret(path)
    doc["stringData"][engines.SECRET_VALUES_KEY] = _values_file(values).decode()
    return sops.encrypt(engines.dump(doc), method.age, encrypted_regex="^(data|stringData)$")


def sealed_secret(
    key: rsa.RSAPublicKey, namespace: str, release: str, values: dict[str, str]
) -> bytes:
    """A SealedSecret of strict scope: only this name in this namespace opens it."""
    name = secret_name(release)
    label = f"{namespace}/{name}".encode()
    doc = {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "encryptedData": {
                k: base64.b64encode(_hybrid_encrypt(key, v.encode(), label)).decode()
                for k, v in sorted(values.items())
            },
            "template": {
                "metadata": {"name": name, "namespace": namespace},
                "type": "Opaque",
            },
        },
    }
    return engines.dump(doc)


def _hybrid_encrypt(key: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> bytes:
    # The controller's format: a fresh AES-256 key, RSA-OAEP(SHA-256) encrypted with the scope
    # as its label and prefixed by its length (2 bytes, big-endian), then the value under
    # AES-GCM. A key serves one value only, which is why the nonce may be all zeros.
    session = os.urandom(32)
    sealed_key = key.encrypt(
        session,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label),
    )
    body = AESGCM(session).encrypt(b"\0" * 12, plaintext, None)
    return len(sealed_key).to_bytes(2, "big") + sealed_key + body


def _certificate_pem(method: SecretMethod) -> bytes:
    # `load` reads a certificateFile once, into `certificate`.
    assert method.certificate is not None  # noqa: S101 - the config asks for one
    return method.certificate.encode()


def check_settings(delivery: Delivery, namespaces: Sequence[str], where: str) -> None:
    """Refuse, when the settings are read, what only a render would otherwise find.

    A namespace no deployment may use (a misspelt one would silently take `default`), and a
    certificate that is no RSA certificate.
    """
    unknown = sorted(set(delivery.secrets.namespaces) - set(namespaces))
    if unknown:
        raise Misconfigured(
            f"{where}: secrets.namespaces names {', '.join(unknown)}, which no deployment may "
            f"use (OVERSEER_ALLOWED_NAMESPACES: {', '.join(sorted(namespaces))}); correct the "
            "name, or allow the namespace"
        )
    for method in [delivery.secrets.default, *delivery.secrets.namespaces.values()]:
        if method.method == SEALED:
            _public_key(method)


def _public_key(method: SecretMethod) -> rsa.RSAPublicKey:
    return _load_key(_certificate_pem(method))


@lru_cache(maxsize=8)
def _load_key(pem: bytes) -> rsa.RSAPublicKey:
    try:
        key = x509.load_pem_x509_certificate(pem).public_key()
    except ValueError as exc:
        raise Misconfigured(
            f"sealed-secrets certificate: not a PEM certificate ({exc}); "
            "fetch it with `kubeseal --fetch-cert`"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise Misconfigured(
            "sealed-secrets certificate: its key is not RSA, as the controller's is"
        )
    return key
