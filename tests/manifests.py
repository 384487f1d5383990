"""The manifest's JSON Schema, as shipped in the package, checked against manifests."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import jsonschema


@cache
def schema() -> dict:
    return json.loads(
        resources.files("vidgo_stems.sound").joinpath("manifest.schema.json").read_text()
    )


def assert_valid_manifest(manifest: dict) -> None:
    """Raise with the first problem when ``manifest`` does not match the shipped schema."""
    validator = jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
