"""The OpenAPI document: every record type's schema, with an example, on POST /records.

The handlers read the raw body (so that rejections are intake's own readable `422`s), so the
request bodies are documented here: a `oneOf` of the sixteen record models with `type` as the
discriminator and one example per type, and the NDJSON body of the bulk endpoint.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import Field, TypeAdapter

from services.intake.domain.records import Record
from services.intake.examples import example_per_type, examples_ndjson

REF = "#/components/schemas/{model}"


def record_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """(the union schema, the component schemas it refers to)."""
    adapter: TypeAdapter[Any] = TypeAdapter(Annotated[Record, Field(discriminator="type")])
    schema = adapter.json_schema(ref_template=REF)
    defs = schema.pop("$defs", {})
    return schema, defs


def build_openapi(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    union, defs = record_schema()
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(defs)
    schemas["Record"] = {"title": "Record", "description": "One record of any of the 16 types", **union}
    examples = {
        record_type: {"summary": record_type, "value": example}
        for record_type, example in example_per_type().items()
    }
    single = doc["paths"]["/records"]["post"]
    single["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Record"}, "examples": examples}
        },
    }
    bulk = doc["paths"]["/records/bulk"]["post"]
    bulk["requestBody"] = {
        "required": True,
        "description": "NDJSON: one record (any type, see the schema `Record`) per line",
        "content": {
            "application/x-ndjson": {
                "schema": {"type": "string", "format": "binary"},
                "example": examples_ndjson(),
            }
        },
    }
    return doc


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
