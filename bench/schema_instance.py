"""A valid instance of a JSON schema, built from the schema alone (for the latency-injected LLM stand-in).

The instance is the smallest one the schema allows in structure (`minItems` items, every property that strict
structured output requires) with strings of a chosen length clipped to `minLength`/`maxLength`, so the reply's
size, and with it the injected generation time, follows the schema's own budgets the way a real model's does.
"""

from __future__ import annotations

import math
from typing import Any

FILLER_WORDS = (
    "once", "upon", "a", "time", "little", "fox", "found", "lantern", "by", "the", "river", "and", "her",
    "friend", "followed", "its", "glow", "into", "quiet", "forest", "where", "stars", "sang", "softly",
)


COMBINATORS = frozenset({"anyOf", "oneOf", "allOf"})


class UnsupportedSchema(ValueError):
    """The schema uses a construct the stand-in cannot satisfy (it answers 400 naming it)."""


def filler_text(length: int, offset: int = 0) -> str:
    """Readable words of exactly `length` characters, neither starting nor ending with a space; from three
    characters on it ends with a full stop, so a text made of it is a sentence (a translation of it must be too)."""
    if length >= 3:
        return _words(length - 1, offset) + "."
    return _words(length, offset)


def _words(length: int, offset: int) -> str:
    if length <= 0:
        return ""
    words: list[str] = []
    size = 0
    index = offset
    while size <= length:
        word = FILLER_WORDS[index % len(FILLER_WORDS)]
        words.append(word)
        size += len(word) + 1
        index += 1
    text = " ".join(words)[:length]
    return text[:-1] + "a" if text.endswith(" ") else text


def _type_of(schema: dict[str, Any]) -> str:
    """The type an instance is built as: the first one that is not null of a list, or one the keywords imply."""
    kind = schema.get("type")
    if isinstance(kind, list):
        return next((name for name in kind if name != "null"), "null")
    if kind is None:
        return "object" if "properties" in schema else "array" if "items" in schema else "string"
    return kind


def schema_instance(schema: dict[str, Any], *, string_chars: int = 240) -> Any:
    """An instance of `schema` (Draft 2020-12 subset: $ref/$defs, type, enum, const, anyOf/oneOf/allOf,
    object properties, arrays with min/maxItems and prefixItems, string/number bounds)."""
    return _Builder(schema, string_chars).build(schema, depth=0)


class _Builder:
    def __init__(self, root: dict[str, Any], string_chars: int) -> None:
        self.root = root
        self.string_chars = string_chars
        self.strings_made = 0

    def build(self, schema: dict[str, Any] | bool, depth: int) -> Any:
        if depth > 32:
            raise UnsupportedSchema("the schema nests deeper than 32 levels (a recursive $ref?)")
        if schema is True or schema == {}:
            return None
        if schema is False:
            raise UnsupportedSchema("the schema `false` has no valid instance")
        if "$ref" in schema:
            return self.build(self.resolve(schema["$ref"]), depth + 1)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            if not schema["enum"]:
                raise UnsupportedSchema("an empty `enum` has no valid instance")
            return schema["enum"][0]
        if COMBINATORS & schema.keys():
            return self.build(self._chosen(schema), depth + 1)
        kind = _type_of(schema)
        builder = getattr(self, f"_{kind}", None)
        if builder is None:
            raise UnsupportedSchema(f"the schema type {kind!r} is not supported")
        return builder(schema, depth)

    def _chosen(self, schema: dict[str, Any]) -> dict[str, Any] | bool:
        """The one schema a combinator stands for: anyOf's or oneOf's first option that is not null, or allOf's parts
        merged."""
        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                options = [option for option in schema[keyword] if option.get("type") != "null"] or schema[keyword]
                return options[0]
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(self.resolve(part["$ref"]) if "$ref" in part else part)
        return merged

    def resolve(self, reference: str) -> dict[str, Any]:
        if not reference.startswith("#/"):
            raise UnsupportedSchema(f"only local references (#/...) are supported, not {reference!r}")
        node: Any = self.root
        for part in reference[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise UnsupportedSchema(f"the reference {reference!r} points nowhere")
            node = node[part]
        return node

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties", {})
        return {name: self.build(child, depth + 1) for name, child in properties.items()}

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems", [])
        count = max(int(schema.get("minItems", 0)), len(prefix))
        if "maxItems" in schema and count > schema["maxItems"]:
            raise UnsupportedSchema(f"minItems {count} exceeds maxItems {schema['maxItems']}")
        items = schema.get("items", {})
        return [self.build(prefix[index] if index < len(prefix) else items, depth + 1) for index in range(count)]

    def _string(self, schema: dict[str, Any], depth: int) -> str:
        low = int(schema.get("minLength", 0))
        high = int(schema.get("maxLength", max(low, self.string_chars)))
        if low > high:
            raise UnsupportedSchema(f"minLength {low} exceeds maxLength {high}")
        self.strings_made += 1
        return filler_text(min(max(self.string_chars, low), high), offset=self.strings_made * 7)

    def _integer(self, schema: dict[str, Any], depth: int) -> int:
        if "minimum" in schema:
            value = math.ceil(schema["minimum"])
        elif "exclusiveMinimum" in schema:
            value = math.floor(schema["exclusiveMinimum"]) + 1
        else:
            value = 0
        high = schema.get("maximum")
        return min(value, math.floor(high)) if high is not None else value

    def _number(self, schema: dict[str, Any], depth: int) -> float:
        value = float(schema.get("minimum", 0.0))
        if "exclusiveMinimum" in schema:
            value = float(schema["exclusiveMinimum"]) + 1e-6
        high = schema.get("maximum")
        return min(value, float(high)) if high is not None else value

    def _boolean(self, schema: dict[str, Any], depth: int) -> bool:
        return False

    def _null(self, schema: dict[str, Any], depth: int) -> None:
        return None
