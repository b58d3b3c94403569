"""The one exception hierarchy of the engine.

Every error a caller can act on derives from :class:`SdfError` and carries an HTTP-like
``status`` on the class, so the CLI and the web layer translate errors at the edge without
knowing each kind (the idea of datasette's ``Base400``). Domain code raises these; it never
formats them for a terminal or a response.
"""

from __future__ import annotations


class SdfError(Exception):
    """Base of every error the engine reports to a user."""

    status = 500
    code = "error"

    def __init__(self, message: str, **context):
        super().__init__(message)
        self.message = message
        self.context = context

    def to_dict(self) -> dict:
        return {"error": self.code, "message": self.message, **self.context}


class InvalidInput(SdfError):
    """The caller sent something malformed (bad JSON, unknown option value...)."""

    status = 400
    code = "invalid_input"


class FormValidationError(InvalidInput):
    """Submitted task data does not satisfy the task's JSON-schema form.

    ``errors`` is a list of ``{"field": "a.b", "message": "..."}`` so a form can show each
    message next to its field.
    """

    code = "form_invalid"

    def __init__(self, message: str, errors: list[dict]):
        super().__init__(message, errors=errors)
        self.errors = errors


class DefinitionInvalid(SdfError):
    """A BPMN/DMN/form file was refused; ``problems`` holds ``file:line: element-id: message`` items."""

    status = 422
    code = "definition_invalid"

    def __init__(self, problems: list):
        self.problems = list(problems)
        text = "\n".join(str(p) for p in self.problems)
        super().__init__(text, problems=[str(p) for p in self.problems])


class NotFound(SdfError):
    """An id (process, instance, task, user, incident) does not exist."""

    status = 404
    code = "not_found"


class Forbidden(SdfError):
    """The acting user may not do this (not in the candidate group, not the assignee...)."""

    status = 403
    code = "forbidden"


class Conflict(SdfError):
    """The state changed under the caller: task already completed or claimed, instance busy..."""

    status = 409
    code = "conflict"


class InvalidState(Conflict):
    """The operation does not apply in the current status (e.g. resume a running instance)."""

    code = "invalid_state"


class ScriptError(SdfError):
    """A BPMN script or expression failed to compile, was refused by the sandbox, or raised."""

    status = 422
    code = "script_error"

    def __init__(self, message: str, line: int | None = None, **context):
        super().__init__(message, line=line, **context)
        self.line = line


class ScriptTimeout(ScriptError):
    """A script ran longer than the configured limit and was stopped."""

    code = "script_timeout"


class ConfigurationError(SdfError):
    """A setting is missing or malformed."""

    status = 500
    code = "configuration_error"
