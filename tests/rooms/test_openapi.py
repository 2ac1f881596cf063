"""GET /api/openapi.json: a valid OpenAPI 3.1 document naming every /api route."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from handlers.rooms.commands import HANDLERS as ROOM_COMMANDS
from handlers.rooms.routes import OPERATIONS

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_the_served_document_is_valid_and_complete(sw):
    async with sw.http.get(f"{sw.url}/api/openapi.json") as r:
        assert r.status == 200 and r.content_type == "application/json"
        doc = await r.json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in sw.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/")
        and route.method != "HEAD"
    }
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert served - documented == set(), "routes missing from the OpenAPI document"
    assert documented - served == set(), "documented routes that are not served"


async def test_request_schemas_come_from_the_validating_models(sw):
    async with sw.http.get(f"{sw.url}/api/openapi.json") as r:
        doc = await r.json()
    send = doc["paths"]["/api/rooms/{room}/messages"]["post"]
    schema_ref = send["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert schema["required"] == ["body"] and "room" not in schema["properties"]
    listing = doc["paths"]["/api/rooms/{room}/messages"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"room", "before", "after", "limit"}
    # Every HTTP operation has its WebSocket twin.
    assert {op.command for op in OPERATIONS} <= set(ROOM_COMMANDS)
