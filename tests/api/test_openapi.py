"""/-/claude-mem/openapi.json: a valid OpenAPI 3.1 description of every route."""

from __future__ import annotations

import re
from typing import Any

import pytest
import pytest_asyncio
from datasette.app import Datasette
from helpers import API, api_call, assert_error
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from datasette_claude_mem.api.routes import ENDPOINTS


@pytest_asyncio.fixture
async def document(ds: Datasette) -> dict[str, Any]:
    response = await ds.client.get(f"{API}/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def refs(node: Any) -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.append(value)
            else:
                found += refs(value)
    elif isinstance(node, list):
        for value in node:
            found += refs(value)
    return found


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def body_validator(document: dict[str, Any], ref: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": ref, "components": document["components"]})


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]):
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


def test_every_ref_resolves(document: dict[str, Any]):
    found = refs(document)
    assert len(found) > 20
    for ref in found:
        resolve(document, ref)


def test_every_route_is_described(document: dict[str, Any]):
    described = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert described == {(e.method, API + e.path) for e in ENDPOINTS}
    for expected in (
        ("POST", "/sessions"),
        ("POST", "/sessions/{session_id}/close"),
        ("POST", "/observations"),
        ("POST", "/queue"),
        ("POST", "/queue/claim"),
        ("POST", "/queue/{item_id}/complete"),
        ("POST", "/queue/{item_id}/fail"),
        ("POST", "/queue/retry"),
        ("POST", "/functions"),
        ("POST", "/edges"),
        ("POST", "/learnings"),
        ("PATCH", "/learnings/{learning_id}"),
        ("DELETE", "/learnings/{learning_id}"),
        ("POST", "/events"),
        ("GET", "/openapi.json"),
    ):
        assert (expected[0], API + expected[1]) in described, expected


def test_every_body_taking_route_has_a_request_schema(document: dict[str, Any]):
    for endpoint in ENDPOINTS:
        operation = document["paths"][API + endpoint.path][endpoint.method.lower()]
        assert operation["summary"] == endpoint.summary
        assert operation["operationId"]
        for name in re.findall(r"\{(\w+)\}", endpoint.path):
            assert {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} in (
                operation["parameters"]
            )
        if endpoint.body is None:
            assert "requestBody" not in operation, endpoint.path
            continue
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        model = resolve(document, schema["$ref"])
        assert model["type"] == "object"
        required = {n for n, f in endpoint.body.model_fields.items() if f.is_required()}
        assert set(model.get("required", [])) == required, endpoint.path
        assert set(model["properties"]) == set(endpoint.body.model_fields), endpoint.path
        if endpoint.body.model_config.get("extra") == "forbid":
            assert model.get("additionalProperties") is False, endpoint.path


def test_guarded_routes_declare_bearer_auth_and_errors(document: dict[str, Any]):
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for endpoint in ENDPOINTS:
        operation = document["paths"][API + endpoint.path][endpoint.method.lower()]
        for status in endpoint.statuses:
            assert str(status) in operation["responses"], (endpoint.path, status)
        if endpoint.permission is None:
            assert "security" not in operation
            continue
        assert operation["security"] == [{"bearerAuth": []}], endpoint.path
        for status in ("400", "401", "403", "405", "413"):
            response = operation["responses"][status]
            ref = response["content"]["application/json"]["schema"]["$ref"]
            assert resolve(document, ref)["required"] == ["ok", "error", "errors", "status"]


def test_request_schemas_agree_with_the_api(document: dict[str, Any]):
    """Bodies the API takes validate against the schema; bodies it refuses do not."""
    observation = body_validator(document, "#/components/schemas/ObservationCreate")
    good = {"session_id": "s", "tool_name": "Edit", "title": "t", "summary": ""}
    assert not list(observation.iter_errors(good))
    assert list(observation.iter_errors({**good, "unknown": 1}))
    assert list(observation.iter_errors({**good, "tokens_raw": -1}))
    assert list(observation.iter_errors({"title": "t"}))

    learning = body_validator(document, "#/components/schemas/LearningCreate")
    assert not list(learning.iter_errors({"category": "gotcha", "content": "c"}))
    assert list(learning.iter_errors({"category": "trivia", "content": "c"}))
    assert list(learning.iter_errors({"category": "gotcha", "content": "c", "confidence": 2}))

    claim = body_validator(document, "#/components/schemas/QueueClaim")
    assert not list(claim.iter_errors({}))
    assert list(claim.iter_errors({"n": 0}))

    functions = body_validator(document, "#/components/schemas/FunctionMapUpsert")
    assert list(
        functions.iter_errors(
            {"session_id": "s", "file_path": "a.py", "functions": [{"qualified_name": "f"}]}
        )
    )


@pytest.mark.asyncio
async def test_the_description_needs_no_token_and_takes_only_get(ds: Datasette, token: str):
    head = await ds.client.head(f"{API}/openapi.json")
    assert head.status_code == 200
    response = await api_call(ds, "POST", "/openapi.json", {}, token=token)
    assert_error(response, 405)
    assert response.headers["allow"] == "GET"


@pytest.mark.asyncio
async def test_a_learning_deleted_soft_or_hard_answers_as_described(
    ds: Datasette, token: str, document: dict[str, Any]
):
    """A client generated from the description reads both answers of the one route."""
    answer = document["paths"]["/-/claude-mem/learnings/{learning_id}"]["delete"]["responses"]
    schema = answer["200"]["content"]["application/json"]["schema"]
    check = Draft202012Validator({**schema, "components": document["components"]})
    made = await api_call(ds, "POST", "/learnings", {"category": "gotcha", "content": "c"},
                          token=token)  # fmt: skip
    learning_id = made.json()["row"]["id"]
    soft = await api_call(ds, "DELETE", f"/learnings/{learning_id}", token=token)
    hard = await api_call(ds, "DELETE", f"/learnings/{learning_id}", {"hard": True}, token=token)
    assert soft.status_code == hard.status_code == 200, (soft.text, hard.text)
    assert list(check.iter_errors(soft.json())) == []
    assert list(check.iter_errors(hard.json())) == []
