"""Parsing a job's JSON parameters into JobCreate, once, with 422s naming the field."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from artgen.api.errors import ApiError, validation_error
from artgen.jobs.schemas import JobCreate

# json.loads accepts "\ud800" escapes; such text cannot be stored as UTF-8 (it was a 500).
_SURROGATES = re.compile(r"[\ud800-\udfff]")
# JobCreate nests three levels (schedule -> entry -> text); deeper JSON is an attack on the parser.
MAX_JSON_DEPTH = 16


def parse_job_create(raw: bytes | str, field_prefix: tuple[str, ...] = ()) -> JobCreate:
    """JobCreate from JSON text; 422 naming the field on any problem."""
    field = field_prefix[0] if field_prefix else "body"
    too_deep = ApiError(
        422,
        "validation_error",
        f"{field}: JSON nested deeper than {MAX_JSON_DEPTH} levels; job parameters are flat",
        field=field,
    )
    try:
        data = json.loads(raw)
    except RecursionError as exc:
        raise too_deep from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(
            422, "validation_error", f"{field}: not valid JSON ({exc})", field=field
        ) from exc
    if _nested_deeper_than(data, MAX_JSON_DEPTH):
        raise too_deep
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", f"{field}: must be a JSON object", field=field)
    bad_text = _lone_surrogate_path(data)
    if bad_text is not None:
        field = ".".join((*field_prefix, *bad_text)) or "body"
        raise ApiError(
            422,
            "validation_error",
            f"{field}: contains a lone UTF-16 surrogate escape (e.g. \\ud800); "
            "send valid Unicode text",
            field=field,
        )
    try:
        return JobCreate.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc.errors(), prefix=field_prefix) from exc


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether lists/objects nest more than `limit` levels (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _lone_surrogate_path(value: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """Where JSON text holds a lone surrogate (valid JSON, but no UTF-8 can store it)."""
    if isinstance(value, str):
        return path if _SURROGATES.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if _SURROGATES.search(str(key)):
                return path
            found = _lone_surrogate_path(item, (*path, key))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate_path(item, (*path, str(index)))
            if found is not None:
                return found
    return None
