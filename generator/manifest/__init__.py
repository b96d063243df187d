"""Parse and validate plugin manifests: bytes in, a `Manifest` out, or every problem at once."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ..errors import Problem, ValidationFailed
from .checks import cross_field_problems
from .loader import MAX_MANIFEST_BYTES, KeyPath, LineMap, dotted, load_mapping
from .model import Manifest

__all__ = [
    "MAX_MANIFEST_BYTES",
    "Manifest",
    "advice",
    "parse_manifest",
    "parse_stored",
    "validate_data",
]


def parse_manifest(data: bytes, source: str = "manifest") -> Manifest:
    """Validate manifest bytes; raise `ManifestInputError` or `ValidationFailed` listing all problems."""
    raw, lines = load_mapping(data, source)
    return validate_data(raw, source, lines)


def validate_data(raw: dict[str, Any], source: str, lines: LineMap | None = None) -> Manifest:
    """Validate already-parsed manifest data (lines, when known, make the errors point at them)."""
    lines = lines or {}
    found: dict[tuple[KeyPath, str], None] = {}
    manifest: Manifest | None = None
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # A field that is a mapping or a shorthand word (`readiness: none`, `egress: all`) fails
        # in both branches of its union; the word's branch becomes a hint on the other's errors.
        words = {
            _untagged(err["loc"]): err.get("ctx", {}).get("expected", "")
            for err in errors
            if any(_is_word_branch(p) for p in err["loc"])
        }
        for err in errors:
            if any(_is_word_branch(p) for p in err["loc"]):
                continue
            loc = _untagged(err["loc"])
            message = _message(err, loc)
            if loc in words:
                message += f"; or give the word {words[loc]}"
            found[(loc, message)] = None
    for loc, message in cross_field_problems(raw):
        found[(loc, message)] = None
    if found or manifest is None:
        problems = [Problem(dotted(loc), msg, _line(lines, loc)) for loc, msg in found]
        problems.sort(key=lambda p: (p.line or 0, p.path))
        subject = f"{source}" + (
            f' (plugin "{raw["name"]}")' if isinstance(raw.get("name"), str) else ""
        )
        raise ValidationFailed(subject, problems)
    return manifest


def _is_tag(part: Any) -> bool:
    # pydantic names a union's branch in the error's location: `Probe`, `literal['none']`,
    # `list[EgressRule]`. Field names are lower-case words.
    return isinstance(part, str) and (part[:1].isupper() or part.startswith(("literal[", "list[")))


def _is_word_branch(part: Any) -> bool:
    return isinstance(part, str) and part.startswith("literal[")


def _untagged(loc: Any) -> KeyPath:
    return tuple(p for p in loc if not _is_tag(p))


def _line(lines: LineMap, loc: KeyPath) -> int | None:
    # An error on a missing key points at its parent mapping, the place to add it.
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def _message(err: Any, loc: KeyPath) -> str:
    kind = err["type"]
    value = err.get("input")
    if kind == "missing":
        return "required key is missing; add it"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f"; allowed keys here are: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {loc[-1]!r}{hint}"
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        return f'expected a string, got the number {value!r}; quote it: "{value}"'
    if kind.endswith("_type") or kind in ("model_type", "dict_type", "list_type"):
        return f"{err['msg']}, got {_type_name(value)}"
    return str(err["msg"])


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _allowed_keys(loc: KeyPath) -> list[str]:
    model: Any = Manifest
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return []
        model = _unwrap(field.annotation)
    if not _is_model(model):
        return []
    return sorted(field.alias or name for name, field in model.model_fields.items())


def _unwrap(annotation: Any) -> Any:
    # list[X] -> X, X | None -> X
    while get_origin(annotation) is not None:
        args = [
            a for a in get_args(annotation) if a is not type(None) and get_origin(a) is not Literal
        ]
        if not args:
            return annotation
        annotation = args[0]
    return annotation


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


@lru_cache(maxsize=256)
def parse_stored(text: str, name: str) -> Manifest:
    """Parse a manifest already accepted into the registry (cached: it is read on every render)."""
    return parse_manifest(text.encode("utf-8"), f'stored plugin "{name}"')


def advice(manifest: Manifest) -> list[str]:
    """Choices a manifest may make but a production chart should not: warned of, never refused.

    `overseer validate` reports the same as kube-score warnings, and fails on them with --strict.
    """
    out: list[str] = []
    if manifest.image.tag == "latest":
        out.append(
            "image.tag is 'latest': a re-pushed image changes what runs with nothing changed in "
            "Git; pin a version"
        )
    if manifest.image.pull_policy == "Never":
        out.append(
            "image.pull_policy is Never: the image must already be on every node; publish it to "
            "a registry and use IfNotPresent or Always"
        )
    res = manifest.dependencies.resources
    if (
        res is None
        or not (res.cpu and res.cpu.min and res.cpu.max)
        or not (res.memory and res.memory.min and res.memory.max)
    ):
        out.append(
            "dependencies.resources does not bound both cpu and memory (min and max): the pod can "
            "starve its neighbours or be evicted first; give both"
        )
    return out
