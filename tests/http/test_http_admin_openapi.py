"""The admin API's OpenAPI 3.1 document: public, complete, structurally sound."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
from http_support import admin_runtime
from starlette.routing import Route

from bastion.http.app import create_app
from bastion.http.endpoints.admin import OPENAPI_PATH, admin_routes, openapi_document
from bastion.settings import Settings

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def runtime() -> Any:
    return admin_runtime(
        settings=Settings(), db=None, shared=None, gateway=None, node_id="t", access_tokens=None
    )


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


async def test_served_publicly_without_a_token() -> None:
    app = create_app(runtime(), routes=admin_routes(runtime()))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://testserver"
    ) as http:
        response = await http.get(OPENAPI_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == openapi_document()


def test_every_route_is_documented_and_nothing_else() -> None:
    served: set[tuple[str, str]] = set()
    for route in admin_routes(runtime()):
        assert isinstance(route, Route)
        if route.path == OPENAPI_PATH:
            continue
        for method in route.methods or ():
            if method != "HEAD":
                served.add((method.lower(), route.path))
    doc = openapi_document()
    documented = {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    assert served == documented
    assert len(served) == 31  # + GET/PUT/DELETE keys/{key_id}/limits, + 10 of /users


def test_structure() -> None:
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert set(doc) >= {"openapi", "info", "paths", "components"}
    schemas = doc["components"]["schemas"]
    assert {
        "ClientCreate",
        "ClientUpdate",
        "RotateSecret",
        "ClientOut",
        "ClientWithSecret",
        "ClientList",
        "Problem",
        "ClientSecretOut",
    } <= set(schemas)
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A bastion access token (RFC 9068) for the admin API",
    }
    # Every reference resolves inside the document.
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    operation_ids = []
    for path, item in doc["paths"].items():
        assert path.startswith("/admin/api/v1/")
        for method, op in item.items():
            operation_ids.append(op["operationId"])
            assert op["security"] in (
                [{"bearer": ["bastion:admin"]}],
                [{"bearer": ["bastion:admin:read"]}],
            )
            assert op["responses"], (method, path)
            for status in op["responses"]:
                assert status.isdigit() and 200 <= int(status) < 600
            assert "401" in op["responses"] and "403" in op["responses"]
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == (
                {"user_id", "client_id"}
                if "{user_id}/consents/{client_id}" in path
                else {"client_id"}
                if "{client_id}" in path
                else {"key_id"}
                if "{key_id}" in path
                else {"user_id"}
                if "{user_id}" in path
                else set()
            )
    assert len(operation_ids) == len(set(operation_ids))
    # Request models refuse unknown members; the secret appears only where it is returned.
    assert schemas["ClientCreate"]["additionalProperties"] is False
    assert "client_secret" in schemas["ClientWithSecret"]["properties"]
    assert "client_secret" not in schemas["ClientOut"]["properties"]
    assert "digest" not in schemas["ClientSecretOut"]["properties"]
    # A password goes in and never comes out.
    assert schemas["UserCreate"]["additionalProperties"] is False
    assert "password" in schemas["PasswordReset"]["properties"]
    assert not {"password", "password_hash"} & set(schemas["UserOut"]["properties"])
