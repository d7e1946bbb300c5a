"""The published JSON Schema: equal to what the code generates, and it sorts valid from invalid files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT

import graphengine
from graphengine.registry import default_registry

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")

SCHEMA_FILE = ROOT / "schemas" / "graph-v1.schema.json"
INVALID = sorted((ROOT / "tests" / "data" / "schema_invalid").glob("*.json"))
VALID = sorted(p for p in EXAMPLES.rglob("*.json") if json.loads(p.read_text()).get("format") == "graphengine/v1")


@pytest.fixture(scope="module")
def validator() -> "jsonschema.Draft202012Validator":
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_equals_generated() -> None:
    generated = graphengine.document_json_schema(default_registry())
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == generated, "schema is stale: run `graphengine schema > schemas/graph-v1.schema.json`"


def test_every_builtin_op_has_its_attributes_in_the_schema(validator) -> None:
    text = SCHEMA_FILE.read_text()
    for name in default_registry():
        assert f'"const": "{name}"' in text, name


@pytest.mark.parametrize("path", VALID, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_examples_are_valid(validator, path: Path) -> None:
    errors = [e.message for e in validator.iter_errors(json.loads(path.read_text()))]
    assert errors == []


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_files_fail_the_schema_and_the_loader(validator, path: Path) -> None:
    assert list(validator.iter_errors(json.loads(path.read_text()))), "schema accepted an invalid file"
    with pytest.raises(graphengine.GraphFileError):
        graphengine.load(path)


def test_there_are_enough_cases() -> None:
    assert len(VALID) >= 2 and len(INVALID) >= 8
