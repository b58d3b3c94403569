"""JSON encoding of process data for storage, audit events and ``--json`` output.

Every change of every instance writes several JSON documents (its state, its data, the audit
events), so compact encoding and decoding go through orjson (about ten times faster than the
standard library here). Values orjson declines (integers beyond 64 bits, for one) and old text
it cannot read (``NaN``, which the standard library used to write) fall back to :mod:`json`,
so nothing that was storable before is refused now. Dates and times are handed to the
caller's ``default`` as before (``OPT_PASSTHROUGH_DATETIME``), so they keep their encoding.
Differences that remain, both to plain JSON's benefit: non-ASCII text is written as UTF-8
rather than ``\\u`` escapes, and a float NaN or infinity is written as ``null``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import orjson

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def encode(value, default: Callable, fallback: json.JSONEncoder) -> str:
    """Compact JSON of ``value``; ``default`` turns other objects into JSON values (orjson's
    contract: return one or raise TypeError); ``fallback`` encodes what orjson declines."""
    try:
        return orjson.dumps(value, default=default, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return fallback.encode(value)  # raises as before for what is not storable at all


def decode(text: str | bytes):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)  # raises json.JSONDecodeError for text that is not JSON at all


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


_COMPACT = json.JSONEncoder(default=_default, separators=(",", ":"))  # the fallback of dumps()


def dumps(value, *, pretty: bool = False) -> str:
    if pretty:
        return json.dumps(value, default=_default, indent=2, sort_keys=True)
    return encode(value, _default, _COMPACT)


def loads(text: str | None, default=None):
    return default if text in (None, "") else decode(text)


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
