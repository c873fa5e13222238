"""The OpenAPI document made to say what is served.

FastAPI generates the document from the routes; a few things it says are not what the
API does, and a few things the API does it cannot know. `document` rewrites it:

- the `Problem` component, and every 422 as `application/problem+json` with it
  (FastAPI declares its own `HTTPValidationError` as `application/json`);
- a 422 on every `/v1/` operation, since the input rules (`tether.api.inputs`) refuse
  a NUL, a non-finite number or an out-of-range integer anywhere in any request, and a
  503 (the database is unavailable, with `Retry-After`: ADR 71) on each of them;
- no `null` branch in the schema of an optional parameter: a query parameter or a
  header is absent or has a value (`Last-Event-ID: null` is not an event id), where
  FastAPI writes `T | None` as `anyOf: [T, null]`;
- the input rules themselves, where JSON Schema can state them, in what requests
  carry: a string has no NUL (`pattern`), and a value that may be any JSON (a task's
  input, a signal's payload, a decision's changes) is a `JsonValue`, whose integers
  fit in 64 bits. (Lone surrogates and the nesting limit it cannot state.)
"""

from __future__ import annotations

from typing import Any

from tether import storable
from tether.api.problems import Problem, problem_response

ALWAYS = (422, 503)
"""What every `/v1/` operation may answer, whatever its route declares."""

NO_NUL = "^[^\\u0000]*$"
"""The pattern of a string Tether accepts (JSON Schema's regular expressions know the
`\\uXXXX` escape)."""

JSON_VALUE = "#/components/schemas/JsonValue"
_JSON_VALUE_SCHEMA: dict[str, Any] = {
    "title": "JsonValue",
    "description": "Any JSON value Tether stores: strings without NUL (nor lone "
    "surrogates), integers from -2**63 to 2**64-1, finite numbers, arrays and objects "
    f"nested at most {storable.MAX_DEPTH} deep",
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "integer", "minimum": storable.INT_MIN, "maximum": storable.INT_MAX},
        {"type": "number", "not": {"type": "integer"}},
        {"type": "string", "pattern": NO_NUL},
        {"type": "array", "items": {"$ref": JSON_VALUE}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": JSON_VALUE},
        },
    ],
}
_ANNOTATIONS = {"title", "description", "default", "examples", "deprecated"}


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (FastAPI's OpenAPI document), rewritten as the module docstring says."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(components["Problem"].pop("$defs", {}))
    _state_rules(schema, components)
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            answers = operation.setdefault("responses", {})
            if "422" in answers:
                answers["422"] = problem_response(422)
            if path.startswith("/v1/"):
                for status in ALWAYS:
                    answers.setdefault(str(status), problem_response(status))
            for parameter in operation.get("parameters", ()):
                parameter["schema"] = _without_null(parameter.get("schema", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema


def _state_rules(schema: dict[str, Any], components: dict[str, Any]) -> None:
    """Write the input rules into every schema a request carries: its parameters and
    its body, and the components those refer to (request models only: the response
    models are other components, and what Tether answers is not refused input)."""
    seen: set[str] = set()

    def component(ref: str) -> None:
        name = ref.rsplit("/", 1)[-1]
        if name in seen or name not in components:
            return
        seen.add(name)
        components[name] = rules(components[name])

    def rules(node: Any) -> Any:
        if isinstance(node, list):
            return [rules(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            component(node["$ref"])
            return node
        if not set(node) - _ANNOTATIONS:  # no constraint at all: any JSON value
            return {**node, "$ref": JSON_VALUE}
        out = {
            key: {name: rules(sub) for name, sub in value.items()}
            if key == "properties"
            else rules(value)
            if key in _SUBSCHEMAS
            else value
            for key, value in node.items()
        }
        if out.get("type") == "string" and not set(out) & {"pattern", "enum", "const", "format"}:
            out["pattern"] = NO_NUL
        extra = out.get("additionalProperties", "properties" not in out)
        if out.get("type") == "object" and extra in (True, {}):  # any keys, any values
            out["additionalProperties"] = {"$ref": JSON_VALUE}
            out["propertyNames"] = {"pattern": NO_NUL}
        return out

    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", ()):
                parameter["schema"] = rules(parameter.get("schema", {}))
            for media in operation.get("requestBody", {}).get("content", {}).values():
                media["schema"] = rules(media.get("schema", {}))
    components["JsonValue"] = _JSON_VALUE_SCHEMA


_SUBSCHEMAS = {"anyOf", "oneOf", "allOf", "items", "additionalProperties", "not"}
"""Keywords whose value is a schema (or a list of them); `properties` maps names to
schemas."""


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without its `null` branch (the rest of it kept)."""
    branches = schema.get("anyOf")
    if not isinstance(branches, list):
        return schema
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) == len(branches):
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(kept) == 1:
        return {**kept[0], **rest}
    return {**rest, "anyOf": kept}


__all__ = ["ALWAYS", "document"]
