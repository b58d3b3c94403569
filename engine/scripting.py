"""Restricted execution of BPMN scripts and expressions (work in progress: see helper brief)."""

from __future__ import annotations

from functools import lru_cache

from RestrictedPython import compile_restricted_eval, compile_restricted_exec

from .errors import ScriptError

SCRIPT_FILENAME = "<string>"  # SpiffWorkflow reads line numbers from frames with this name


def _first_error(errors) -> ScriptError:
    message = "; ".join(errors)
    line = None
    for text in errors:
        if text.startswith("Line "):
            try:
                line = int(text[5:].split(":", 1)[0])
            except ValueError:
                pass
            break
    return ScriptError(message, line=line)


@lru_cache(maxsize=4096)
def compile_expression(source: str):
    """Compile a gateway condition / expression under the sandbox policy; raise ScriptError."""
    result = compile_restricted_eval(source, filename=SCRIPT_FILENAME)
    if result.errors:
        raise _first_error(result.errors)
    return result.code


@lru_cache(maxsize=4096)
def compile_script(source: str):
    """Compile a script task / pre- / post-script under the sandbox policy; raise ScriptError."""
    result = compile_restricted_exec(source, filename=SCRIPT_FILENAME)
    if result.errors:
        raise _first_error(result.errors)
    return result.code
