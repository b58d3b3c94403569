"""Restricted execution of BPMN scripts and expressions.

SpiffWorkflow evaluates every gateway condition, script task, pre-/post-script, timer expression,
multi-instance expression and DMN cell as Python through ``PythonScriptEngine``. Its default
environment is plain ``eval``/``exec``: any process designer could read files, import modules or
hang a worker. This module replaces that environment with a sandbox:

* **Compile policy** (:class:`SandboxPolicy`, a RestrictedPython ``RestrictingNodeTransformer``):
  no ``import``, no class definitions, no generator functions (a suspended generator's
  ``finally`` would run at garbage collection, outside the time limit), no names or attributes
  starting with ``_``, none of the frame/generator/traceback attributes RestrictedPython blocks
  (``gi_frame``, ``f_globals``...).
  Operators that one C call can turn into a huge object (``**``, ``*``, ``+``, ``<<``, ``%`` and
  f-string format specs) are rewritten into guard calls that refuse results over
  :data:`MAX_INT_DIGITS` digits or :data:`MAX_SEQUENCE_LENGTH` items.
* **Builtins**: a short list of harmless functions and types, ``datetime``/``date``/``timedelta``/
  ``timezone``/``Decimal`` and ``now()``. No ``open``, ``__import__``, ``type``, ``vars``,
  ``globals``, ``iter``, ``setattr``; ``getattr``/``hasattr`` and ``.attr`` refuse private names
  and ``str.format``; ``range``/``pow``/``sum`` and the padding/joining ``str`` methods are sized.
* **Time limit**: code that can loop is run under a ``sys.settrace`` hook of the executing thread
  that raises :class:`~engine.errors.ScriptTimeout` once the limit has passed. CPython stops
  tracing after a trace function raises, so every ``except``/``finally`` body gets a check that
  re-raises the timeout: a script cannot catch it and keep running.
* **Errors** keep SpiffWorkflow's shape: :class:`SandboxedScriptEngine` raises
  ``WorkflowTaskException`` with ``line_number`` (code runs under the file name
  :data:`SCRIPT_FILENAME`), ``error_type`` and the original exception as ``__cause__``.

Compiled code is cached by source text, because the same conditions run thousands of times.

What this cannot stop: work done inside one C call on data that is already large (sorting a huge
list from task data, ``int()`` of a ``Decimal`` with a huge exponent) and memory grown by a
loop faster than the clock is checked (``lst.extend(lst)``). Run workers with a memory limit.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import sys
import threading
import types
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache, partial
from time import monotonic
from typing import NamedTuple

from RestrictedPython import compile_restricted_eval, compile_restricted_exec
from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safe_builtins,
)
from RestrictedPython.Limits import limited_builtins
from RestrictedPython.PrintCollector import PrintCollector
from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer, copy_locations
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment
from SpiffWorkflow.exceptions import SpiffWorkflowException

from . import timeclock
from .errors import ScriptError, ScriptTimeout

__all__ = [
    "DEFAULT_TIME_LIMIT",
    "MAX_INT_DIGITS",
    "MAX_SEQUENCE_LENGTH",
    "SCRIPT_FILENAME",
    "SandboxPolicy",
    "SandboxedEnvironment",
    "SandboxedScriptEngine",
    "compile_expression",
    "compile_script",
    "create_script_engine",
]

SCRIPT_FILENAME = "<string>"  # SpiffWorkflow reads line numbers from frames with this name
DEFAULT_TIME_LIMIT = 2.0  # seconds
MAX_INT_DIGITS = 10_000  # largest integer ** and << may produce
MAX_SEQUENCE_LENGTH = 10_000_000  # longest str/bytes/list/tuple/range a single operation may produce
_MAX_INT_BITS = math.ceil(MAX_INT_DIGITS * math.log2(10))
_CHECK_EVERY = 16  # trace events between two looks at the clock

_SEQUENCES = (str, bytes, bytearray, list, tuple)
_TEXT = (str, bytes)


# --------------------------------------------------------------------------------------------
# Guards called by the rewritten code
# --------------------------------------------------------------------------------------------


def _refuse_length(length: int, what: str) -> None:
    if length > MAX_SEQUENCE_LENGTH:
        raise ScriptError(f"{what} would have {length:,} items; the limit is {MAX_SEQUENCE_LENGTH:,}")


def _guarded_pow(base, exp, op=operator.pow):
    """``base ** exp``, refused when two integers would give more than MAX_INT_DIGITS digits."""
    if isinstance(base, int) and isinstance(exp, int) and exp > 0 and abs(base) > 1:
        digits = exp * math.log10(abs(base))
        if digits > MAX_INT_DIGITS:
            raise ScriptError(
                f"the result of ** would have about {digits:,.0f} digits; the limit is {MAX_INT_DIGITS:,}"
            )
    return op(base, exp)


def _guarded_mul(a, b, op=operator.mul):
    """``a * b``, refused when repeating a sequence would make it too long."""
    if isinstance(b, int) and isinstance(a, _SEQUENCES):
        _refuse_length(len(a) * b, f"{type(a).__name__} * {b}")
    elif isinstance(a, int) and isinstance(b, _SEQUENCES):
        _refuse_length(len(b) * a, f"{a} * {type(b).__name__}")
    return op(a, b)


def _guarded_add(a, b, op=operator.add):
    """``a + b``, refused when joining two sequences would make one too long."""
    if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
        _refuse_length(len(a) + len(b), f"{type(a).__name__} + {type(b).__name__}")
    return op(a, b)


def _guarded_lshift(a, b, op=operator.lshift):
    """``a << b``, refused when the integer would have more than MAX_INT_DIGITS digits."""
    if isinstance(a, int) and isinstance(b, int) and a and b > 0 and a.bit_length() + b > _MAX_INT_BITS:
        raise ScriptError(f"the result of << would have more than {MAX_INT_DIGITS:,} digits")
    return op(a, b)


_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[#0+ -]*(\*|\d+)?(?:\.(\*|\d+))?")


def _refuse_width(number: str, what: str) -> None:
    if len(number) > 9 or int(number) > MAX_SEQUENCE_LENGTH:
        raise ScriptError(f"{what} width {number} is too large; the limit is {MAX_SEQUENCE_LENGTH:,}")


def _guarded_mod(a, b, op=operator.mod):
    """``a % b``; for %-formatting, refuse ``*`` widths and widths/precisions over the limit."""
    if isinstance(a, _TEXT):
        text = a.decode("latin-1") if isinstance(a, bytes) else a
        for match in _PRINTF_SPEC.finditer(text):
            for number in match.groups():
                if number == "*":
                    raise ScriptError("'*' widths in %-formatting are not allowed; write the width in the format")
                if number:
                    _refuse_width(number, "%-format")
    return op(a, b)


_CONVERSIONS = {115: str, 114: repr, 97: ascii}


def _guarded_format(value, conversion: int, spec: str) -> str:
    """The value of ``f"{value!conversion:spec}"``, refusing huge widths and precisions."""
    for number in re.findall(r"\d+", spec):
        _refuse_width(number, "format")
    if conversion in _CONVERSIONS:
        value = _CONVERSIONS[conversion](value)
    return format(value, spec)


def _guarded_range(*args) -> range:
    result = range(*args)
    try:
        length = len(result)
    except OverflowError:  # longer than sys.maxsize
        length = MAX_SEQUENCE_LENGTH + 1
    _refuse_length(length, "range()")
    return result


def _guarded_builtin_pow(base, exp, mod=None):
    return _guarded_pow(base, exp) if mod is None else pow(base, exp, mod)


def _guarded_sum(iterable, /, start=0):
    if isinstance(start, _SEQUENCES):
        raise ScriptError("sum() of sequences is not allowed; build the list with a comprehension")
    return sum(iterable, start)


# Methods whose result size is set by an argument, not by the object: checked before the call.
def _check_padding(obj, args, kwargs):
    width = args[0] if args else kwargs.get("width", 0)
    if isinstance(width, int):
        _refuse_length(width, "the padded string")


def _check_expandtabs(obj, args, kwargs):
    size = args[0] if args else kwargs.get("tabsize", 8)
    if isinstance(size, int) and size > 0:
        tabs = obj.count(b"\t" if isinstance(obj, bytes) else "\t")
        _refuse_length(len(obj) + tabs * size, "the expanded string")


def _check_replace(obj, args, kwargs):
    if len(args) < 2 or not isinstance(args[0], _TEXT) or not isinstance(args[1], _TEXT):
        return
    old, new = args[0], args[1]
    if len(new) > len(old):
        count = obj.count(old) if old else len(obj) + 1
        limit = args[2] if len(args) > 2 else kwargs.get("count", -1)
        if isinstance(limit, int) and limit >= 0:
            count = min(count, limit)
        _refuse_length(len(obj) + count * (len(new) - len(old)), "the replaced string")


def _check_to_bytes(obj, args, kwargs):
    length = args[0] if args else kwargs.get("length", 1)
    if isinstance(length, int):
        _refuse_length(length, "int.to_bytes()")


_SIZE_CHECKS = {
    str: {
        "ljust": _check_padding,
        "rjust": _check_padding,
        "center": _check_padding,
        "zfill": _check_padding,
        "expandtabs": _check_expandtabs,
        "replace": _check_replace,
    },
    int: {"to_bytes": _check_to_bytes},
}
_SIZE_CHECKS[bytes] = {**_SIZE_CHECKS[str]}


def _sized_method(obj, method, check):
    def call(*args, **kwargs):
        check(obj, args, kwargs)
        return method(*args, **kwargs)

    return call


def _sized_join(separator, method):
    def join(iterable):
        items = list(iterable)
        total = len(separator) * max(len(items) - 1, 0)
        total += sum(len(item) for item in items if isinstance(item, _TEXT))
        _refuse_length(total, "the joined string")
        return method(items)

    return join


_MISSING = object()
_FORMAT_METHODS = frozenset({"format", "format_map"})


def _refuse_attribute(obj, name) -> None:
    if not isinstance(name, str):
        raise TypeError("attribute name must be a string")
    if name.startswith("_") or name in INSPECT_ATTRIBUTES:
        raise ScriptError(f"access to the attribute '{name}' is not allowed in scripts")
    if name in _FORMAT_METHODS and (isinstance(obj, str) or (isinstance(obj, type) and issubclass(obj, str))):
        raise ScriptError("str.format() is not allowed in scripts; use an f-string")


def _guarded_getattr(obj, name, default=_MISSING):
    """``obj.name`` for scripts: RestrictedPython's safer_getattr rules, clear errors, sized methods."""
    if not isinstance(name, str) or name[:1] == "_" or name in INSPECT_ATTRIBUTES or name in _FORMAT_METHODS:
        _refuse_attribute(obj, name)
    value = getattr(obj, name) if default is _MISSING else getattr(obj, name, default)
    checks = _SIZE_CHECKS.get(type(obj))
    if checks is not None:
        if name in checks:
            return _sized_method(obj, value, checks[name])
        if name == "join" and type(obj) in _TEXT:
            return _sized_join(obj, value)
    return value


def _guarded_hasattr(obj, name) -> bool:
    _refuse_attribute(obj, name)
    return hasattr(obj, name)


def _apply(func, *args, **kwargs):
    return func(*args, **kwargs)


_INPLACE_OPERATORS: dict[str, Callable] = {
    "+=": partial(_guarded_add, op=operator.iadd),
    "-=": operator.isub,
    "*=": partial(_guarded_mul, op=operator.imul),
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": partial(_guarded_mod, op=operator.imod),
    "**=": partial(_guarded_pow, op=operator.ipow),
    "<<=": partial(_guarded_lshift, op=operator.ilshift),
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}


def _inplacevar(op: str, target, value):
    """``target op= value`` (RestrictedPython rewrites ``x += 1`` into ``x = _inplacevar_('+=', x, 1)``)."""
    return _INPLACE_OPERATORS[op](target, value)


def now() -> datetime:
    """The current time as an aware UTC datetime, by the clock of the engine running the script."""
    return timeclock.now()


# --------------------------------------------------------------------------------------------
# Time limit
# --------------------------------------------------------------------------------------------

_state = threading.local()  # .timeout: message of the timeout the running code hit (per thread)


def _recheck_timeout() -> None:
    """First statement of every except/finally body: a caught timeout is raised again."""
    message = getattr(_state, "timeout", None)
    if message:
        raise ScriptTimeout(message)


def _make_tracer(deadline: float, limit: float, kind: str):
    """A sys.settrace function: line-traces script frames only, looks at the clock every N events."""
    countdown = _CHECK_EVERY

    def trace_lines(frame, event, arg):
        nonlocal countdown
        countdown -= 1
        if countdown:
            return trace_lines
        countdown = _CHECK_EVERY
        if monotonic() >= deadline:
            _state.timeout = message = f"{kind} exceeded the {limit} s time limit"
            raise ScriptTimeout(message, line=frame.f_lineno)
        return trace_lines

    def trace_calls(frame, event, arg):
        return trace_lines if frame.f_code.co_filename == SCRIPT_FILENAME else None

    return trace_calls


def _run_with_time_limit(code, namespace: dict, limit: float, kind: str):
    previous, outer_timeout = sys.gettrace(), getattr(_state, "timeout", None)
    _state.timeout = None
    sys.settrace(_make_tracer(monotonic() + limit, limit, kind))
    try:
        return eval(code, namespace)
    finally:
        sys.settrace(previous)
        _state.timeout = outer_timeout


# --------------------------------------------------------------------------------------------
# Compile policy
# --------------------------------------------------------------------------------------------

_BINOP_GUARDS = {
    ast.Pow: "_pow_",
    ast.Mult: "_mul_",
    ast.Add: "_add_",
    ast.LShift: "_lshift_",
    ast.Mod: "_mod_",
}
_LOOPING_NODES = (ast.While, ast.For, ast.comprehension, ast.Lambda, ast.FunctionDef)


def _is_number(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float, complex, bool)


def _guard_call(name: str, args: list, location: ast.AST) -> ast.Call:
    call = ast.Call(func=ast.Name(name, ast.Load()), args=args, keywords=[])
    copy_locations(call, location)
    return call


def _statement(name: str, location: ast.AST) -> ast.Expr:
    stmt = ast.Expr(_guard_call(name, [], location))
    copy_locations(stmt, location)
    return stmt


class SandboxPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy plus: no import, no classes, guarded operators and handlers."""

    def visit_Import(self, node):
        self.error(node, "import is not allowed in scripts; use the functions the engine provides")
        return node

    visit_ImportFrom = visit_Import

    def visit_ClassDef(self, node):
        self.error(node, "class definitions are not allowed in scripts")
        return node

    def visit_Yield(self, node):
        # A suspended generator runs its `finally` when garbage-collected: outside the time limit.
        self.error(node, "generator functions (yield) are not allowed in scripts")
        return node

    visit_YieldFrom = visit_Yield

    def visit_BinOp(self, node):
        node = self.node_contents_visit(node)
        guard = _BINOP_GUARDS.get(type(node.op))
        if guard is None or self._cannot_explode(node):
            return node
        return _guard_call(guard, [node.left, node.right], node)

    @staticmethod
    def _cannot_explode(node: ast.BinOp) -> bool:
        """Operands whose result stays small whatever the values (skip the guard call)."""
        left, right = node.left, node.right
        if isinstance(node.op, ast.Add):
            return _is_number(left) or _is_number(right)
        if isinstance(node.op, ast.Mult):
            return any(isinstance(side, ast.Constant) and type(side.value) is float for side in (left, right))
        if isinstance(node.op, ast.Mod):
            return _is_number(left)
        return False

    def visit_FormattedValue(self, node):
        node = self.node_contents_visit(node)
        if node.format_spec is None:
            return node
        args = [node.value, ast.Constant(node.conversion), node.format_spec]
        node.value = _guard_call("_format_", args, node.value)
        node.conversion, node.format_spec = -1, None
        return node

    def visit_While(self, node):
        node = self.node_contents_visit(node)
        # `while True: pass` compiles to one instruction jumping to itself, which emits no line
        # events; a name load in the body makes the backward jump traceable.
        tick = ast.Expr(ast.Name("_tick_", ast.Load()))
        copy_locations(tick, node)
        node.body.insert(0, tick)
        return node

    def visit_ExceptHandler(self, node):
        node = super().visit_ExceptHandler(node)
        node.body.insert(0, _statement("_recheck_timeout_", node))
        return node

    def visit_Try(self, node):
        node = super().visit_Try(node)
        if node.finalbody:
            node.finalbody.insert(0, _statement("_recheck_timeout_", node.finalbody[0]))
        return node


# --------------------------------------------------------------------------------------------
# Compilation (cached by source text)
# --------------------------------------------------------------------------------------------


class _Compiled(NamedTuple):
    code: types.CodeType
    can_loop: bool  # only code with loops, comprehensions or functions needs the time limit


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


def _parse(source: str, mode: str) -> ast.AST:
    if mode == "eval":  # conditions often come with surrounding whitespace from the XML
        stripped = source.lstrip()
        offset = source[: len(source) - len(stripped)].count("\n")
        source = stripped.rstrip()
    else:
        offset = 0
    try:
        tree = ast.parse(source, SCRIPT_FILENAME, mode)
    except (SyntaxError, ValueError) as err:
        line = (getattr(err, "lineno", None) or 1) + offset
        text = f"{type(err).__name__}: {getattr(err, 'msg', err)}"
        raise ScriptError(f"Line {line}: {text}", line=line) from None
    if offset:
        ast.increment_lineno(tree, offset)
    return tree


@lru_cache(maxsize=4096)
def _compile(source: str, mode: str) -> _Compiled:
    tree = _parse(source, mode)
    can_loop = any(isinstance(node, _LOOPING_NODES) for node in ast.walk(tree))
    compile_restricted = compile_restricted_eval if mode == "eval" else compile_restricted_exec
    result = compile_restricted(tree, filename=SCRIPT_FILENAME, policy=SandboxPolicy)
    if result.errors:
        raise _first_error(result.errors)
    return _Compiled(result.code, can_loop)


def compile_expression(source: str):
    """Compile a gateway condition / expression under the sandbox policy; raise ScriptError."""
    return _compile(source, "eval").code


def compile_script(source: str):
    """Compile a script task / pre- / post-script under the sandbox policy; raise ScriptError."""
    return _compile(source, "exec").code


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------

_REMOVED_BUILTINS = {
    "__build_class__",
    "_getattr_",
    "setattr",
    "delattr",
    "BaseException",
    "SystemExit",
    "KeyboardInterrupt",
    "GeneratorExit",
}
_EXTRA_BUILTINS = {
    "min": min,
    "max": max,
    "sum": _guarded_sum,
    "len": len,
    "sorted": sorted,
    "abs": abs,
    "round": round,
    "any": any,
    "all": all,
    "enumerate": enumerate,
    "zip": zip,
    "range": _guarded_range,
    "dict": dict,
    "list": list,
    "set": set,
    "frozenset": frozenset,
    "tuple": tuple,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "isinstance": isinstance,
    "map": map,
    "filter": filter,
    "reversed": reversed,
    "next": next,
    "pow": _guarded_builtin_pow,
    "getattr": _guarded_getattr,
    "hasattr": _guarded_hasattr,
    "datetime": datetime,
    "date": date,
    "timedelta": timedelta,
    "timezone": timezone,
    "Decimal": Decimal,
    "now": now,
}
_GUARDS = {
    "_getattr_": _guarded_getattr,
    "_getitem_": default_guarded_getitem,
    "_getiter_": default_guarded_getiter,
    "_write_": full_write_guard,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_unpack_sequence,
    "_inplacevar_": _inplacevar,
    "_apply_": _apply,
    "_print_": PrintCollector,
    "_pow_": _guarded_pow,
    "_mul_": _guarded_mul,
    "_add_": _guarded_add,
    "_lshift_": _guarded_lshift,
    "_mod_": _guarded_mod,
    "_format_": _guarded_format,
    "_tick_": None,
    "_recheck_timeout_": _recheck_timeout,
}


def _script_line(err: BaseException) -> int | None:
    """The script line an error came from: its own line, or the deepest script frame."""
    if isinstance(err, ScriptError) and err.line:
        return err.line
    if isinstance(err, SyntaxError):
        return err.lineno
    line, tb = None, err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == SCRIPT_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    if line is None and err.__cause__ is not None:
        return _script_line(err.__cause__)
    return line


def _is_data(name: str, value) -> bool:
    return not (name[:1] == "_" or callable(value) or isinstance(value, types.ModuleType))


class SandboxedEnvironment(BasePythonScriptEngineEnvironment):
    """Runs BPMN expressions and scripts compiled under :class:`SandboxPolicy` with a time limit.

    ``functions`` are extra callables scripts may call by name; ``time_limit`` is in seconds.
    """

    def __init__(self, functions: Mapping[str, Callable] | None = None, time_limit: float = DEFAULT_TIME_LIMIT):
        if time_limit <= 0:
            raise ValueError("time_limit must be positive")
        self.time_limit = float(time_limit)
        builtins = {k: v for k, v in safe_builtins.items() if k not in _REMOVED_BUILTINS}
        builtins.update(limited_builtins)
        builtins.update(_EXTRA_BUILTINS)
        self._builtins = builtins
        # Task data may shadow builtins; it can never replace the guards (merged last).
        super().__init__({**_GUARDS, "__builtins__": builtins})
        self.add_functions(functions or {})

    def add_functions(self, functions: Mapping[str, Callable]) -> None:
        """Make more callables available to scripts (plugins)."""
        for name, func in functions.items():
            if not (isinstance(name, str) and name.isidentifier()) or name.startswith("_"):
                raise ValueError(f"invalid script function name {name!r}")
            if not callable(func):
                raise ValueError(f"script function {name!r} is not callable")
            self._builtins[name] = func

    def evaluate(self, expression, context, external_context=None):
        compiled = _compile(expression, "eval")
        if external_context:
            namespace = {**external_context, **context, **self.globals}
        else:
            namespace = {**context, **self.globals}
        return self._run(compiled, namespace, "expression")

    def execute(self, script, context, external_context=None):
        """Run ``script`` on the task data ``context``; on error the data keeps its names and values."""
        compiled = _compile(script, "exec")
        external_context = external_context or {}
        namespace = {**external_context, **context, **self.globals}
        self._run(compiled, namespace, "script")
        self._write_back(context, namespace, external_context)
        return True

    def _run(self, compiled: _Compiled, namespace: dict, kind: str):
        try:
            if not compiled.can_loop:
                return eval(compiled.code, namespace)
            return _run_with_time_limit(compiled.code, namespace, self.time_limit, kind)
        except ScriptError as err:
            if err.line is None:
                err.line = err.context["line"] = _script_line(err)
            raise
        except BaseException as err:
            # A script can reach BaseException itself (ValueError.mro()[-2]); raised, it would pass
            # through SpiffWorkflow's `except Exception` and stop the worker. Other BaseExceptions
            # (KeyboardInterrupt, SystemExit from a signal handler) are not the script's: re-raise.
            if type(err) is not BaseException:
                raise
            line = _script_line(err)
            raise ScriptError(f"the {kind} raised BaseException, which is not allowed", line=line) from err

    @staticmethod
    def _write_back(context: dict, namespace: dict, external_context: Mapping) -> None:
        """Copy new/changed data names into the task data; drop deleted and non-data names."""
        for name in [name for name in context if name not in namespace]:
            del context[name]  # deleted by the script
        for name, value in namespace.items():
            if context.get(name, _MISSING) is value:
                continue  # unchanged (most names)
            if not _is_data(name, value):
                if name[:1] != "_":
                    context.pop(name, None)  # rebound to a function
            elif not (name in external_context and external_context[name] is value):
                context[name] = value


# --------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------


def _describe(err: BaseException) -> str:
    if isinstance(err, ScriptError):
        return err.message
    return f"{type(err).__name__}: {err}"


class SandboxedScriptEngine(PythonScriptEngine):
    """SpiffWorkflow script engine running everything in a :class:`SandboxedEnvironment`."""

    def __init__(
        self,
        environment: SandboxedEnvironment | None = None,
        *,
        functions: Mapping[str, Callable] | None = None,
        time_limit: float = DEFAULT_TIME_LIMIT,
    ):
        super().__init__(environment or SandboxedEnvironment(functions, time_limit))

    def evaluate(self, task, expression, external_context=None):
        try:
            return self.environment.evaluate(expression, task.data, external_context)
        except SpiffWorkflowException as err:
            err.add_note(f"Error evaluating expression '{expression}'")
            raise
        except Exception as err:
            raise WorkflowTaskException(
                f"Error evaluating expression '{expression}': {_describe(err)}",
                task=task,
                exception=err,
                line_number=_script_line(err),
            ) from err

    def create_task_exec_exception(self, task, script, err):
        if isinstance(err, SpiffWorkflowException):
            return super().create_task_exec_exception(task, script, err)
        line_number, error_line = self.get_error_line_number_and_content(script, err)
        wte = WorkflowTaskException(
            _describe(err), task=task, exception=err, line_number=line_number, error_line=error_line
        )
        wte.__cause__ = err
        return wte

    def call_service(self, task, **kwargs):
        # SpiffWorkflow 3.2's version names an undefined variable in its except branch.
        try:
            return self.environment.call_service(task.data, **kwargs)
        except Exception as err:
            raise self.create_task_exec_exception(task, "", err) from err

    def get_error_line_number_and_content(self, script, err):
        line_number = _script_line(err) or 0
        lines = script.splitlines()
        error_line = lines[line_number - 1] if 0 < line_number <= len(lines) else ""
        return line_number, error_line


def create_script_engine(
    functions: dict | None = None, time_limit: float = DEFAULT_TIME_LIMIT
) -> SandboxedScriptEngine:
    """The script engine every workflow of this engine uses (set it again after deserializing)."""
    return SandboxedScriptEngine(functions=functions, time_limit=time_limit)
