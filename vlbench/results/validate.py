"""Check run records against the versioned JSON schema shipped with the package (plus a few semantic rules)."""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from typing import Any, Optional

__all__ = ["SCHEMA_FILE", "record_schema", "record_problem"]

SCHEMA_FILE = "run-record.v4.json"


@lru_cache(maxsize=1)
def record_schema() -> dict[str, Any]:
    """The JSON schema of run records (schema 4; schema 1-3 records are valid too, schema 1 read as status ok)."""
    text = resources.files("vlbench.results").joinpath("schema", SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = record_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _where(path: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "(top level)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def record_problem(record: Any) -> Optional[str]:
    """None for a valid record, else one line saying which field is wrong and how."""
    if not isinstance(record, dict):
        return f"a run record must be a JSON object, got {type(record).__name__}"
    if record.get("schema") == 1 and "status" not in record:
        record = {**record, "status": "ok"}  # schema 1 predates failed records: every one finished
    schema = record.get("schema")
    if schema not in (1, 2, 3, 4):
        return f"field 'schema': {_short(schema)} is not a known record schema (1, 2, 3 or 4)"
    errors = sorted(_validator().iter_errors(record), key=lambda e: (len(list(e.absolute_path)), str(e.message)))
    if errors:
        first = errors[0]
        where = _where(first.absolute_path)
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"field {where!r}: {first.message[:200]}{more}"
    if record["status"] == "ok":
        metrics = record["test"]["metrics"]
        if record["primary_metric"] not in metrics:
            return f"field 'test.metrics': the primary metric {record['primary_metric']!r} is missing"
        for name, value in metrics.items():
            if isinstance(value, float) and not math.isfinite(value):
                return f"field 'test.metrics.{name}': {value} is not a finite number"
    return None
