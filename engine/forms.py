"""Check submitted task data against the task's JSON-schema form, field by field."""

from __future__ import annotations

from jsonschema.exceptions import best_match

from .errors import FormValidationError


def field_errors(validator, data: dict) -> list[dict]:
    """Every violation as ``{"field": "a.b", "message": ...}``, sorted by field."""
    errors = []
    for error in validator.iter_errors(data):
        errors.append({"field": _field(error), "message": error.message})
    return sorted(errors, key=lambda e: (e["field"], e["message"]))


def _field(error) -> str:
    path = [str(p) for p in error.absolute_path]
    if error.validator == "required":  # one error per missing property; its message names it
        missing = [name for name in error.validator_value if error.message.startswith(repr(name))]
        if missing:
            path.append(missing[0])
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            path.append(extra[0])
    return ".".join(path) or "(form)"


def check(validator, data: dict, form_name: str) -> None:
    """Raise FormValidationError naming each invalid field; the task stays open."""
    errors = field_errors(validator, data)
    if errors:
        first = best_match(validator.iter_errors(data))
        raise FormValidationError(f"submitted data does not match form {form_name}: {first.message}", errors)
