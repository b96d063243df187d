"""The plugin manifest model: every field of the spec's example, and nothing unknown.

Field-level rules live here, so the generated JSON Schema carries them to editors. Rules that
relate several fields (duplicates, references, min <= max) live in `checks.py`, which runs even
when some fields are invalid, so one pass reports everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from .quantity import parse_quantity

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
PORT_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
IMAGE_NAME = r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
IMAGE_TAG = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
REGISTRY = r"^(local|[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[a-z0-9._-]+)*)$"
MOUNT_PATH = r"^/[^\x00\n\r]*$"
INGRESS_PATH = r"^/[A-Za-z0-9/._~%!$&'()*+,;=:@-]*$"
# The emptyDir volumes that keep `security.writable_paths` writable are named this, then a number.
WRITABLE_PREFIX = "writable-"
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


@dataclass(frozen=True)
class Text:
    """Annotation for a constrained string: a friendly error, and the pattern in the JSON Schema.

    pydantic's own `pattern=` would reject with "String should match pattern '...'", which tells a
    person nothing; this keeps the regex for editors and says in words what is expected.
    """

    regex: str
    code: str
    message: str
    max_length: int | None = None

    def __get_pydantic_core_schema__(
        self, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        compiled = re.compile(self.regex)

        def check(value: str) -> str:
            too_long = self.max_length is not None and len(value) > self.max_length
            if too_long or not compiled.match(value):
                raise PydanticCustomError(
                    self.code, self.message + " (got '{value}')", {"value": value[:80]}
                )
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out["pattern"] = self.regex
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        return out


def _quantity(value: str) -> str:
    try:
        parse_quantity(value)
    except ValueError:
        raise PydanticCustomError(
            "quantity",
            'not a Kubernetes quantity such as "500m", "2", "512Mi" or "4Gi" (got \'{value}\')',
            {"value": value[:80]},
        ) from None
    return value


DnsLabel = Annotated[
    str,
    Text(
        DNS1123_LABEL,
        "dns_label",
        "must be a DNS-1123 label: at most 63 lower-case letters, digits and '-', "
        "starting and ending with a letter or digit",
        63,
    ),
]
SemVer = Annotated[
    str,
    Text(SEMVER, "semver", 'must be a semantic version such as "1.0.0"; quote it', 50),
]
EnvName = Annotated[
    str,
    Text(ENV_NAME, "env_name", "must be an environment variable name: letters, digits, '_'", 253),
]
PortName = Annotated[
    str,
    Text(
        PORT_NAME,
        "port_name",
        "must be a port name: at most 15 lower-case letters, digits and '-'",
        15,
    ),
]
Quantity = Annotated[str, Field(examples=["500m", "2", "4Gi"]), AfterValidator(_quantity)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Image(_Strict):
    """Container image. `registry: local` means an image already present on the nodes."""

    name: Annotated[
        str,
        Text(IMAGE_NAME, "image_name", 'must be an image repository name such as "a8s-claude"'),
    ]
    registry: Annotated[
        str,
        Text(REGISTRY, "registry", 'must be "local" or a registry host such as ghcr.io/org'),
    ] = "local"
    tag: Annotated[
        str,
        Text(IMAGE_TAG, "image_tag", 'must be an image tag such as "latest" or "1.2.3"'),
    ] = "latest"
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"

    @property
    def reference(self) -> str:
        """The full image reference a pod pulls."""
        repo = self.name if self.registry == "local" else f"{self.registry}/{self.name}"
        return f"{repo}:{self.tag}"


class RequiredVar(_Strict):
    """A variable every deployment must supply."""

    name: EnvName
    description: str | None = None
    secret: bool | None = Field(
        default=None,
        description="Keep the value out of Git. Defaults to true for names like *_KEY, *_TOKEN.",
    )


class OptionalVar(RequiredVar):
    """A variable a deployment may supply; `default` is used otherwise."""

    default: str | None = None


class EnvVars(_Strict):
    """Environment variables of the container."""

    required: list[RequiredVar] = Field(default_factory=list)
    optional: list[OptionalVar] = Field(default_factory=list)


class Volume(_Strict):
    """A volume mounted into the container (a Secret by default)."""

    name: DnsLabel
    mount_path: Annotated[
        str,
        Text(MOUNT_PATH, "mount_path", "must be an absolute path such as /data"),
    ]
    type: Literal["secret", "configMap", "emptyDir"] = "secret"


class Range(_Strict):
    """A resource bound: min becomes the request, max the limit."""

    min: Quantity | None = None
    max: Quantity | None = None


class Resources(_Strict):
    """CPU, memory and ephemeral-storage bounds of the container."""

    cpu: Range | None = None
    memory: Range | None = None
    ephemeral_storage: Range | None = Field(
        default=None, description="Scratch disk: the writable layer, logs and emptyDir volumes."
    )


class Dependencies(_Strict):
    """What the environment needs from its deployment."""

    env_vars: EnvVars = Field(default_factory=EnvVars)
    volumes: list[Volume] = Field(default_factory=list)
    resources: Resources | None = None


class Port(_Strict):
    """A named container port, exposed by the Service under the same name."""

    name: PortName
    container_port: int = Field(ge=1, le=65535)
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


class IngressPath(_Strict):
    """An HTTP path routed to one of the named ports."""

    path: Annotated[
        str,
        Text(INGRESS_PATH, "ingress_path", "must be an absolute URL path such as /api"),
    ]
    service_port: PortName
    path_type: Literal["Prefix", "Exact", "ImplementationSpecific"] = "Prefix"


class Ingress(_Strict):
    """Optional HTTP ingress in front of the Service."""

    enabled: bool = False
    host: (
        Annotated[
            str,
            Text(HOSTNAME, "hostname", "must be a DNS host name such as envs.example.com", 253),
        ]
        | None
    ) = None
    class_name: DnsLabel | None = None
    paths: list[IngressPath] = Field(default_factory=list)


class HttpGet(_Strict):
    """An HTTP GET against a named port; any 2xx or 3xx answer passes."""

    port: PortName
    path: Annotated[
        str,
        Text(INGRESS_PATH, "http_path", "must be an absolute URL path such as /healthz"),
    ] = "/"


class Probe(_Strict):
    """A health check: exactly one of `tcp` (a port name), `http` or `exec`."""

    tcp: PortName | None = None
    http: HttpGet | None = None
    exec: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None, min_length=1, description="A command run in the container; exit 0 passes."
    )
    initial_delay_seconds: int = Field(default=0, ge=0, le=3600)
    period_seconds: int = Field(default=10, ge=1, le=3600)
    timeout_seconds: int = Field(default=1, ge=1, le=600)
    failure_threshold: int = Field(default=3, ge=1, le=1000)


class Probes(_Strict):
    """When the container is ready for traffic, alive, and done starting.

    With no readiness probe given, the chart checks TCP on the first declared port; `none`
    turns that off.
    """

    readiness: Probe | Literal["none"] | None = None
    liveness: Probe | None = None
    startup: Probe | None = None


Capability = Annotated[
    str,
    Text(r"^[A-Z][A-Z0-9_]*$", "capability", "must be a capability name such as NET_BIND_SERVICE"),
]
Id = Annotated[int, Field(ge=0, le=2147483647)]


class Security(_Strict):
    """The pod's security context. The defaults are the safe ones; each loosening is explicit."""

    run_as_user: Id | None = None
    run_as_group: Id | None = None
    fs_group: Id | None = None
    run_as_non_root: bool | None = Field(
        default=None, description="Defaults to true when run_as_user is given and not 0."
    )
    read_only_root_filesystem: bool = False
    writable_paths: list[
        Annotated[str, Text(MOUNT_PATH, "mount_path", "must be an absolute path such as /tmp")]
    ] = Field(
        default_factory=list,
        description="Paths that stay writable (as emptyDir volumes) under a read-only root.",
    )
    add_capabilities: list[Capability] = Field(
        default_factory=list, description="Added back after every capability is dropped."
    )
    allow_privilege_escalation: bool = False
    seccomp_profile: Literal["RuntimeDefault", "Unconfined"] = "RuntimeDefault"
    automount_service_account_token: bool = False


class Allow(_Strict):
    """Who may reach which of the declared ports."""

    source: DnsLabel = Field(
        alias="from",
        description="same-namespace, ingress-controller, or the name of another namespace.",
    )
    ports: list[PortName] | None = Field(
        default=None,
        description="Declared port names; by default every port (for ingress-controller, "
        "those the ingress paths name).",
    )


class EgressRule(_Strict):
    """Traffic the pod may start: to these addresses, on these ports (all ports if none)."""

    cidr: Annotated[
        str,
        Text(
            r"^[0-9A-Fa-f.:]+/[0-9]{1,3}$",
            "cidr",
            "must be an IP network such as 10.0.0.0/8 or 2001:db8::/32",
            64,
        ),
    ]
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(default_factory=list)
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


class Network(_Strict):
    """The pod's NetworkPolicy: who may reach it, and what it may reach."""

    allow: list[Allow] | None = Field(
        default=None,
        description="By default: the same namespace on every port, and the ingress controller "
        "on the ingress paths' ports when ingress is enabled.",
    )
    ingress_namespace: DnsLabel = Field(
        default="ingress-nginx", description="Where the ingress controller runs."
    )
    egress: Literal["all"] | list[EgressRule] = Field(
        default="all",
        description="all (the default: environments call external APIs), or a list of rules; "
        "DNS stays allowed.",
    )


class Manifest(_Strict):
    """A plugin manifest (`plugin.yaml`)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        title="Overseer plugin manifest",
        json_schema_extra={"$id": "https://overseer.dev/schemas/plugin-manifest.json"},
    )

    name: DnsLabel
    version: SemVer
    image: Image
    dependencies: Dependencies = Field(default_factory=Dependencies)
    ports: list[Port] = Field(default_factory=list)
    ingress: Ingress | None = None
    probes: Probes = Field(default_factory=Probes)
    security: Security = Field(default_factory=Security)
    network: Network = Field(default_factory=Network)

    def variables(self) -> list[Variable]:
        """Every declared variable, required ones first, in manifest order."""
        env = self.dependencies.env_vars
        out = [Variable(v.name, v.description, True, is_secret(v), None) for v in env.required]
        out += [
            Variable(v.name, v.description, False, is_secret(v), v.default) for v in env.optional
        ]
        return out


@dataclass(frozen=True)
class Variable:
    """A declared variable with its secrecy resolved."""

    name: str
    description: str | None
    required: bool
    secret: bool
    default: str | None


_SENSITIVE = re.compile(
    r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIALS?)$|CREDENTIAL|SECRET|PASSWORD"
)


def is_secret(var: RequiredVar) -> bool:
    """A variable is secret when the manifest says so, else when its name looks sensitive."""
    if var.secret is not None:
        return var.secret
    return bool(_SENSITIVE.search(var.name.upper()))
