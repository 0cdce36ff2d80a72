"""The JSON contract of `vn`'s listings: each listing's output against its JSON Schema
(doc/schema/LISTING.json, draft 2020-12), for the unit tests of the views and the
scenario tests of both datapaths alike."""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parent.parent / "doc" / "schema"
#: Every listing with a schema of its own; common.json holds only shared definitions.
LISTINGS = ("vnets", "vnet-list", "vifs", "varp", "peers", "bridges", "stats", "keys", "ports", "endpoints")
#: What streams print, one object per line, each with a schema of its own too.
STREAMS = ("monitor",)
#: What other commands print with --json: `vn topo show`.
OUTPUTS = ("topo-show",)


@cache
def _registry() -> Registry:
    """Every schema file under its file name, which is how they refer to each other
    (`common.json#/$defs/count`), as any validator that loads them from files does."""
    return Registry().with_resources(
        (path.name, Resource.from_contents(json.loads(path.read_text()))) for path in SCHEMAS.glob("*.json"))


def validator(listing: str) -> Draft202012Validator:
    schema = _registry().contents(f"{listing}.json")
    return Draft202012Validator(schema, registry=_registry())


def check(listing: str, value: Any) -> Any:
    """`value` if it matches the listing's schema; else an AssertionError naming every
    mismatch and where it is."""
    errors = sorted(validator(listing).iter_errors(value), key=lambda e: list(e.absolute_path))
    assert not errors, f"vn {listing.replace('-', ' ')} --json does not match doc/schema/{listing}.json:\n" + "\n".join(
        f"  at {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors)
    return value
