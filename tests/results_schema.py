"""Every JSON the tests make shmrss write is checked against the shipped schema (shmrss/schema)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    schema = json.loads(resources.files("shmrss").joinpath("schema/results.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_document(doc) -> None:
    """A ``run --json`` file's content: raises jsonschema.ValidationError when it disagrees with the schema."""
    _validator().validate(doc)


def validate_result(result: dict) -> None:
    """One result (a sweep line's result) against the schema's result definition."""
    validate_document({"schema_version": 1, "results": [result]})


def load_run_json(path) -> dict | list:
    """A ``run --json`` file, validated; its one result, or the list when several designs ran."""
    doc = json.loads(Path(path).read_text())
    validate_document(doc)
    results = doc["results"]
    return results[0] if len(results) == 1 else results
