"""How the GitOps repository reaches clusters without Overseer: engines and secret methods.

Read from the YAML file OVERSEER_DELIVERY names (docs/delivery.md). Without one nothing changes:
no engine files are written, and secret values reach a cluster only through `overseer apply`.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..errors import Misconfigured

APPLY, SOPS, SEALED, EXTERNAL = "apply", "sops", "sealed-secrets", "external-secrets"
Method = Literal["apply", "sops", "sealed-secrets", "external-secrets"]
_AGE_RECIPIENT = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")


class _Strict(BaseModel):
    # A misspelt key is an error that names it, not a setting silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Store(_Strict):
    """The External Secrets Operator store an ExternalSecret reads from."""

    name: str = Field(min_length=1)
    kind: Literal["SecretStore", "ClusterSecretStore"] = "ClusterSecretStore"


class SecretMethod(_Strict):
    """How the secret values of one namespace's charts reach its cluster."""

    method: Method = "apply"
    # sops: the age recipients every secrets.enc.yaml of the namespace is encrypted to.
    age: tuple[str, ...] = ()
    # sealed-secrets: the controller's public certificate (PEM), or a file holding it.
    certificate: str | None = None
    certificate_file: Path | None = Field(default=None, alias="certificateFile")
    # external-secrets: the store, and the key each release's values sit under in it.
    store: Store | None = None
    key: str = "overseer/{namespace}/{release}"
    refresh_interval: str = Field(default="1h", alias="refreshInterval")

    @field_validator("age")
    @classmethod
    def _recipients(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for recipient in value:
            if not _AGE_RECIPIENT.match(recipient):
                raise ValueError(
                    f"{recipient!r} is not an age recipient (age1 followed by 58 characters); "
                    "give the public key age-keygen printed"
                )
        return tuple(sorted(set(value)))

    @field_validator("certificate_file")
    @classmethod
    def _beside_the_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # A relative path is read from the delivery file's directory, wherever Overseer runs.
        base = (info.context or {}).get("base")
        if value is None or value.is_absolute() or base is None:
            return value
        return Path(base) / value

    @model_validator(mode="after")
    def _complete(self) -> SecretMethod:
        if self.method == SOPS and not self.age:
            raise ValueError("method sops needs `age`: the recipients' public keys")
        if self.method == SEALED and not (self.certificate or self.certificate_file):
            raise ValueError(
                "method sealed-secrets needs `certificate` or `certificateFile`: the "
                "controller's public certificate (`kubeseal --fetch-cert`)"
            )
        if self.method == EXTERNAL and self.store is None:
            raise ValueError("method external-secrets needs `store`: the name of a SecretStore")
        if "{release}" not in self.key:
            raise ValueError("`key` must contain {release}: each release needs its own")
        try:
            self.key.format(namespace="n", release="r")
        except (KeyError, IndexError, ValueError):
            raise ValueError(
                f"`key` {self.key!r}: only {{namespace}} and {{release}} may stand in braces"
            ) from None
        return self

    @property
    def pulls(self) -> bool:
        """Whether a chart carries its secrets itself, for an engine to install."""
        return self.method != APPLY


class Secrets(_Strict):
    """The method of every namespace: `default`, unless `namespaces` names it."""

    default: SecretMethod = SecretMethod()
    namespaces: dict[str, SecretMethod] = Field(default_factory=dict)

    def of(self, namespace: str) -> SecretMethod:
        """The method of one namespace."""
        return self.namespaces.get(namespace, self.default)


class ArgoCD(_Strict):
    """Where the ApplicationSet and the AppProject go, and what they sync to."""

    namespace: str = "argocd"
    project: str = "overseer"
    server: str = "https://kubernetes.default.svc"


class Flux(_Strict):
    """Where the GitRepository goes, and how often Flux looks."""

    namespace: str = "flux-system"
    source: str = "overseer"  # the GitRepository's name
    interval: str = "1m"


class Delivery(_Strict):
    """The whole file."""

    repo_url: str | None = Field(default=None, alias="repoURL")
    branch: str = "main"
    # The engine that syncs the repository. One: two would each install every release.
    engine: Literal["argocd", "flux"] | None = None
    argocd: ArgoCD = ArgoCD()
    flux: Flux = Flux()
    secrets: Secrets = Secrets()
    # Whether `overseer apply` (and the server's applier) also installs releases. Unset: only
    # when no engine syncs the repository, so that one installer owns each release.
    apply: bool | None = None

    @property
    def installs(self) -> bool:
        """Whether Overseer's own apply installs releases (see `apply`)."""
        return self.apply if self.apply is not None else self.engine is None

    @model_validator(mode="after")
    def _engine_source(self) -> Delivery:
        if self.engine and not self.repo_url:
            raise ValueError("`repoURL` is required with `engine`: the URL the engine clones")
        return self

    @cached_property
    def digest(self) -> str:
        """Changes whenever what a render writes from this file may change."""
        data = self.model_dump(mode="json", by_alias=True)
        for method in [data["secrets"]["default"], *data["secrets"]["namespaces"].values()]:
            method.pop("certificateFile")  # the certificate's bytes count, not where they sat
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


NONE = Delivery()


def load(path: Path | None) -> Delivery:
    """The file at `path`, validated; the defaults when there is none."""
    if path is None:
        return NONE
    where = f"OVERSEER_DELIVERY={path}"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise Misconfigured(f"{where}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise Misconfigured(f"{where}: not YAML ({exc})") from None
    try:
        delivery = Delivery.model_validate(data or {}, context={"base": path.parent})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise Misconfigured(f"{where}: {problems}") from None
    return delivery.model_copy(update={"secrets": _read_certificates(delivery.secrets, where)})


def _read_certificates(secrets: Secrets, where: str) -> Secrets:
    # Read once, here: every chart of the namespace is sealed with the same bytes, and a file
    # replaced while a server runs changes nothing until the settings are read again.
    def read(method: SecretMethod) -> SecretMethod:
        if method.certificate_file is None or method.certificate:
            return method
        try:
            pem = method.certificate_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise Misconfigured(
                f"{where}: certificateFile {method.certificate_file}: cannot read it "
                f"({exc.strerror}); fetch it with `kubeseal --fetch-cert`"
            ) from None
        return method.model_copy(update={"certificate": pem})

    return secrets.model_copy(
        update={
            "default": read(secrets.default),
            "namespaces": {ns: read(m) for ns, m in secrets.namespaces.items()},
        }
    )
