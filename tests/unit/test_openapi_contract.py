"""The response check every API test goes through: it must tell a documented answer from an undocumented one."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.openapi_contract import OpenApiContract

JSON_REF = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}
ERROR_REF = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "paths": {
        "/things/{id}": {"get": {"responses": {"200": JSON_REF, "404": ERROR_REF}}},
        "/things/{id}/count": {"get": {"responses": {"200": {"description": "no body"}}}},
        "/things/special": {"get": {"responses": {"200": {"description": "no body"}}}},
        "/static/{name}": {"get": {"responses": {"default": {"description": "as served"}}}},
    },
    "components": {
        "schemas": {
            "Thing": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "tags": {"type": "array", "items": {"$ref": "#/components/schemas/Tag"}},
                },
                "required": ["id"],
            },
            "Tag": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            "ErrorBody": {
                "type": "object",
                "properties": {"error": {"type": "object", "properties": {"code": {"type": "string"}}}},
                "required": ["error"],
            },
        }
    },
}
ERROR = {"error": {"code": "not_found"}}


@pytest.fixture
def contract() -> OpenApiContract:
    return OpenApiContract(DOCUMENT)


def test_documented_answers_pass(contract: OpenApiContract) -> None:
    contract.check("GET", "/things/1?x=y", 200, {"id": "1", "tags": [{"name": "a"}]}, is_json=True)
    contract.check("GET", "/things/1", 404, ERROR, is_json=True)
    contract.check("GET", "/things/1/count", 200, None, is_json=False)
    contract.check("GET", "/static/app.js", 200, "js", is_json=False)
    contract.check("GET", "/nowhere", 404, ERROR, is_json=True)


@pytest.mark.parametrize(
    ("method", "path", "status", "body", "complaint"),
    [
        ("GET", "/things/1", 200, {"items": [{"id": "1"}]}, "does not match"),  # an envelope documented as one item
        ("GET", "/things/1", 200, {"id": 1}, "does not match"),  # wrong type
        ("GET", "/things/1", 200, {"id": "1", "extra": True}, "does not match"),  # an undocumented field
        ("GET", "/things/1", 200, {"id": "1", "tags": [{}]}, "does not match"),  # through a nested $ref
        ("GET", "/things/1", 409, ERROR, "not documented"),
        ("GET", "/things/1/count", 200, {"count": 1}, "the document has none"),
        ("POST", "/things/1", 405, {"oops": 1}, "does not match"),  # an unlisted method answers an error body
    ],
)
def test_undocumented_answers_fail(
    contract: OpenApiContract, method: str, path: str, status: int, body: Any, complaint: str
) -> None:
    with pytest.raises(AssertionError, match=complaint):
        contract.check(method, path, status, body, is_json=True)


def test_a_literal_segment_wins_over_a_parameter(contract: OpenApiContract) -> None:
    contract.check("GET", "/things/special", 200, None, is_json=False)
    with pytest.raises(AssertionError, match="the document has none"):  # /things/special, not /things/{id}
        contract.check("GET", "/things/special", 200, {"id": "1"}, is_json=True)
