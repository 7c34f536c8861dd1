"""An OpenAPI 3.1 description of the write API, made from the endpoint table and the models."""

from __future__ import annotations

import re
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

if TYPE_CHECKING:
    from datasette_claude_mem.api.endpoint import Endpoint

REF = "#/components/schemas/{model}"

ERROR_SCHEMA = {
    "type": "object",
    "description": "Datasette's JSON error shape",
    "required": ["ok", "error", "errors", "status"],
    "properties": {
        "ok": {"const": False},
        "error": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "integer"},
    },
}

ERRORS = {
    "400": "Invalid body: each invalid field is named",
    "401": "No token, or a bad or expired one",
    "403": "The actor lacks the claude-mem-write permission, or a cross-site request",
    "404": "Unknown id",
    "405": "Method not allowed (see the Allow header)",
    "409": "Conflict: the item's lease was lost",
    "413": "Body over the size limit",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _success_schema(endpoint: Endpoint) -> dict[str, Any]:
    if endpoint.returns is None:
        return {"type": "object", "properties": {"ok": {"const": True}}}
    if endpoint.raw_response:
        return _ref(endpoint.returns)
    key = "rows" if endpoint.many else "row"
    shapes = [_ref(model) for model in (endpoint.returns, *endpoint.also_returns)]
    row = shapes[0] if len(shapes) == 1 else {"oneOf": shapes}
    value = {"type": "array", "items": row} if endpoint.many else row
    return {
        "type": "object",
        "required": ["ok", key],
        "properties": {"ok": {"const": True}, key: value, "created": {"type": "boolean"}},
    }


def openapi_document(endpoints: list[Endpoint], prefix: str) -> dict[str, Any]:
    # Request bodies are described as they are validated, answers as they are serialised
    # (a stored row's JSON columns go out as lists and objects, not as JSON text).
    modes: dict[type[BaseModel], str] = {}
    for endpoint in endpoints:
        for model in (endpoint.returns, *endpoint.also_returns):
            if model is not None:
                modes[model] = "serialization"
        if endpoint.body is not None:
            modes[endpoint.body] = "validation"
    ordered = sorted(modes.items(), key=lambda item: item[0].__name__)
    _, schema = models_json_schema(ordered, ref_template=REF)
    components = dict(schema.get("$defs", {}))
    components["Error"] = ERROR_SCHEMA

    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "operationId": endpoint.handler.__name__,
            "responses": {},
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", endpoint.path)
        ]
        if parameters:
            operation["parameters"] = parameters
        if endpoint.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(endpoint.body)}},
            }
        for status in endpoint.statuses:
            operation["responses"][str(status)] = {
                "description": "Created" if status == 201 else "OK",
                "content": {"application/json": {"schema": _success_schema(endpoint)}},
            }
        queries = [(n, t, True) for n, t in endpoint.query.items()]
        queries += [(n, t, False) for n, t in endpoint.optional_query.items()]
        for name, text, required in queries:
            operation.setdefault("parameters", []).append(
                {
                    "name": name,
                    "in": "query",
                    "required": required,
                    "description": text,
                    "schema": {"type": "string"},
                }
            )
        if endpoint.permission is not None:
            operation["security"] = [{"bearerAuth": []}]
            for status, text in ERRORS.items():
                operation["responses"].setdefault(
                    status,
                    {
                        "description": text,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                )
        paths.setdefault(prefix + endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "claude-mem memory API",
            "version": version("datasette-claude-mem"),
            "description": "Writes to and searches the memory database of datasette-claude-mem.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `datasette claude-mem token`",
                }
            },
        },
    }
