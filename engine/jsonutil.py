"""JSON encoding of process data for storage, audit events and ``--json`` output."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from uuid import UUID


def _default(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, UUID):
        return str(value)
    return repr(value)


_COMPACT = json.JSONEncoder(default=_default, separators=(",", ":"))  # built once: runs for every event


def dumps(value, *, pretty: bool = False) -> str:
    if pretty:
        return json.dumps(value, default=_default, indent=2, sort_keys=True)
    return _COMPACT.encode(value)


def loads(text: str | None, default=None):
    return default if text in (None, "") else json.loads(text)


def parse_object(text: str | None, what: str = "data") -> dict:
    """Parse user-supplied JSON that must be an object; raise InvalidInput with the reason."""
    from .errors import InvalidInput

    if text in (None, ""):
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object, got {type(value).__name__}")
    return value
