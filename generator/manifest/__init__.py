"""Parse and validate plugin manifests: bytes in, a `Manifest` out, or every problem at once."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ..errors import Problem, ValidationFailed
from .checks import cross_field_problems
from .loader import MAX_MANIFEST_BYTES, KeyPath, LineMap, dotted, load_mapping
from .model import Manifest

__all__ = ["MAX_MANIFEST_BYTES", "Manifest", "parse_manifest", "parse_stored", "validate_data"]


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
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            found[(loc, _message(err, loc))] = None
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
    return sorted(model.model_fields) if _is_model(model) else []


def _unwrap(annotation: Any) -> Any:
    # list[X] -> X, X | None -> X
    while get_origin(annotation) is not None:
        args = [a for a in get_args(annotation) if a is not type(None)]
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
