"""Read manifest bytes into plain data, enforcing the input limits before any parsing work.

Limits: a size cap, strict UTF-8, no anchors or aliases (which is what makes "billion laughs"
documents expensive), no duplicate keys, exactly one document whose top level is a mapping.
Alongside the data we return the line of every key path, so later validation errors can point
at the line a person has to edit.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import ManifestInputError, ManifestTooLarge

try:  # the C loader is ~10x faster; the pure-Python one is a fallback for exotic platforms
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_MANIFEST_BYTES = 1024 * 1024

KeyPath = tuple[str | int, ...]
LineMap = dict[KeyPath, int]


def decode(data: bytes, source: str) -> str:
    """Check the size cap and decode strict UTF-8 (a leading BOM is dropped)."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestTooLarge(source, len(data), MAX_MANIFEST_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestInputError(
            f"{source}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the manifest as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def _reject_anchors(text: str, source: str) -> None:
    # Scanning events is streaming and linear, so an alias bomb is refused before anything
    # is built from it.
    for event in yaml.parse(text, Loader=_Loader):
        anchor = getattr(event, "anchor", None)
        if isinstance(event, yaml.AliasEvent) or anchor is not None:
            line = event.start_mark.line + 1 if event.start_mark else "?"
            raise ManifestInputError(
                f"{source}: line {line}: YAML anchors and aliases (&{anchor} / *{anchor}) are "
                "not allowed in manifests; write the value out in full"
            )


def load_mapping(data: bytes, source: str) -> tuple[dict[str, Any], LineMap]:
    """Parse manifest bytes into a dict plus the 1-based line of each key path."""
    text = decode(data, source)
    try:
        _reject_anchors(text, source)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ManifestInputError(f"{source}: invalid YAML: {where}{exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ManifestInputError(f"{source}: invalid YAML: {exc}") from None
    if not isinstance(node, yaml.MappingNode):
        kind = "empty" if node is None else f"a {_kind(node)}"
        raise ManifestInputError(
            f"{source}: the manifest is {kind}; it must be a mapping with name, version, image, ..."
        )
    lines: LineMap = {}
    builder = _Builder(source, lines)
    value = builder.build(node, ())
    return value, lines


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return "scalar value"


class _Builder:
    """Turns a composed node tree into Python data, recording lines and refusing duplicate keys."""

    def __init__(self, source: str, lines: LineMap) -> None:
        self.source = source
        self.lines = lines
        self.scalars = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.scalars.construct_object(key_node)
                if not isinstance(key, str):
                    key = str(key)
                if key in out:
                    line = key_node.start_mark.line + 1
                    raise ManifestInputError(
                        f"{self.source}: line {line}: duplicate key {dotted((*path, key))!r}; "
                        "keep only one"
                    )
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.scalars.construct_object(node)


def dotted(path: KeyPath) -> str:
    """Render a key path the way people write it: `ports[1].name`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
