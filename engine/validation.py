"""Static checks of process files: refuse a bad deploy with ``file:line: element-id: message``.

Process designers fix problems in their editor, so every problem names the file, the real line
(lxml ``sourceline``), the id of the BPMN/DMN element and says what is wrong. The SpiffWorkflow
parser stops at the first error, reports no line for element errors (``line_number`` is always
'') and never looks at scripts, expressions, timers, forms or call targets. So these checks run
first over every file and report all problems at once; :func:`problem_from_spiff` maps the
parser's own exceptions back to a file and line.

Scripts and expressions are compiled with the sandbox's compiler (:mod:`engine.scripting`), so
code refused here is exactly the code that would be refused at run time (every expression in
the spiff dialect is Python: conditions, timers, loop cardinalities, DMN cells).

The module is pure: bytes and lxml trees in, :class:`Problem` items out (no database, no web).
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache

from jsonschema import Draft202012Validator, SchemaError, validators
from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.dmn.parser.BpmnDmnParser import SCHEMAS as DMN_SCHEMAS
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.spiff.parser import VALIDATOR

from .errors import ScriptError
from .scripting import compile_expression, compile_script

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
DMN_NAMESPACES = frozenset(
    {
        *DMN_SCHEMAS,
        "https://www.omg.org/spec/DMN/20211108/MODEL/",
        "https://www.omg.org/spec/DMN/20230324/MODEL/",
    }
)
PREFIXES = {
    BPMN_NS: "bpmn",
    SPIFF_NS: "spiffworkflow",
    "http://www.omg.org/spec/BPMN/20100524/DI": "bpmndi",
    "http://www.omg.org/spec/DD/20100524/DC": "dc",
    "http://www.omg.org/spec/DD/20100524/DI": "di",
    **{namespace: "dmn" for namespace in DMN_NAMESPACES},
}

FLOW_NODES = frozenset(
    {
        "task",
        "userTask",
        "manualTask",
        "scriptTask",
        "serviceTask",
        "sendTask",
        "receiveTask",
        "businessRuleTask",
        "callActivity",
        "subProcess",
        "transaction",
        "adHocSubProcess",
        "startEvent",
        "endEvent",
        "intermediateCatchEvent",
        "intermediateThrowEvent",
        "boundaryEvent",
        "exclusiveGateway",
        "inclusiveGateway",
        "parallelGateway",
        "eventBasedGateway",
        "complexGateway",
    }
)
CONTAINERS = ("process", "subProcess", "transaction", "adHocSubProcess")
# Python expressions in BPMN elements, and what a designer calls them.
EXPRESSIONS = {
    "conditionExpression": "condition",
    "condition": "condition",
    "loopCardinality": "loop cardinality",
    "completionCondition": "completion condition",
    "loopCondition": "loop condition",
}
TIMERS = ("timeDuration", "timeDate", "timeCycle")
FORM_PROPERTIES = ("formJsonSchemaFilename", "formUiSchemaFilename")
# Ids on these helper elements mean nothing to a designer: report the enclosing element instead.
_HELPER_SUFFIXES = ("EventDefinition", "LoopCharacteristics", "Expression")

_ISO_TIME = re.compile(r"(R\d*/)?(P[\dYMWDTHS.,]+|\d{4}-\d\d-\d\d[\dT:.+\-Z]*)(/P[\dYMWDTHS.,]+)?")
_SCRIPT_LINE = re.compile(r"^Line \d+: ")
_SYNTAX_POSITION = re.compile(r", line \d+, column (\d+)$")
_NAMESPACED = re.compile(r"\{([^}]*)\}")
_SCHEMA_ELEMENT = re.compile(r"Element '([^']+)'")
_MISSING_PROCESS = re.compile(r"The process '([^']+)' was not found")
_SCHEMA_LOCK = threading.Lock()  # an XMLSchema's error_log belongs to its last validate() call


@dataclass(frozen=True, order=True)
class Problem:
    """One problem in one file; ``str()`` gives ``file:line: element-id: message``.

    Problems compare (and sort) by file, line, element id and message; a missing line sorts
    first, so ``sorted(set(problems))`` works when some lines are unknown.
    """

    file: str = field(compare=False)
    line: int | None = field(compare=False)
    element_id: str | None = field(compare=False)
    message: str = field(compare=False)
    _key: tuple = field(init=False, repr=False)

    def __post_init__(self):
        line = -1 if self.line is None else self.line
        object.__setattr__(self, "_key", (self.file, line, self.element_id or "", self.message))

    def __str__(self) -> str:
        line = "?" if self.line is None else self.line
        return f"{self.file}:{line}: {self.element_id or '-'}: {self.message}"


# --------------------------------------------------------------------------- small helpers


def _root(tree) -> etree._Element:
    return tree.getroot() if hasattr(tree, "getroot") else tree


def _local(element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _bpmn(*names: str) -> list[str]:
    return [f"{{{BPMN_NS}}}{name}" for name in names]


def _spiff(*names: str) -> list[str]:
    return [f"{{{SPIFF_NS}}}{name}" for name in names]


def _line(element, offset: int = 0) -> int | None:
    return element.sourceline + offset if element.sourceline else None


def _owner_id(element) -> str | None:
    """The id a designer knows the element by: its own, or that of the nearest element around it."""
    for node in (element, *element.iterancestors()):
        if node.get("id") and not _local(node).endswith(_HELPER_SUFFIXES):
            return node.get("id")
    return None


def _problem(file_name: str, element, message: str, offset: int = 0) -> Problem:
    return Problem(file_name, _line(element, offset), _owner_id(element), message)


def _pretty(message: str) -> str:
    """Write ``{namespace-uri}name`` as ``prefix:name`` and keep the message on one line."""
    message = _NAMESPACED.sub(lambda m: PREFIXES[m[1]] + ":" if m[1] in PREFIXES else m[0], message)
    return " ".join(message.split())


def _document_kind(root) -> str | None:
    if not isinstance(root.tag, str) or _local(root) != "definitions":
        return None
    namespace = etree.QName(root).namespace
    return "bpmn" if namespace == BPMN_NS else "dmn" if namespace in DMN_NAMESPACES else None


def _has_child(element, *tags: str) -> bool:
    return next(element.iterchildren(*tags), None) is not None


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


# --------------------------------------------------------------------------- helpers for callers


def process_ids(tree) -> set[str]:
    """Ids of the executable processes of a BPMN document (what a call activity may call)."""
    root = _root(tree)
    if _document_kind(root) != "bpmn":
        return set()
    return {
        p.get("id")
        for p in root.iterchildren(*_bpmn("process"))
        if p.get("id") and p.get("isExecutable", "true") == "true"
    }


def decision_ids(tree) -> set[str]:
    """Ids of the decisions of a DMN document (what a business rule task may call)."""
    root = _root(tree)
    if _document_kind(root) != "dmn":
        return set()
    decisions = root.iterchildren(f"{{{etree.QName(root).namespace}}}decision")
    return {d.get("id") for d in decisions if d.get("id")}


# --------------------------------------------------------------------------- XML and XSD


def check_xml(file_name: str, content: bytes) -> tuple[etree._ElementTree | None, list[Problem]]:
    """Parse ``content``; return the tree, or None and the problem (syntax error, wrong root)."""
    if isinstance(content, str):
        content = content.encode("utf-8")
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(content, parser)
    except etree.XMLSyntaxError as err:
        return None, [_syntax_problem(file_name, err)]
    if _document_kind(root) is None:
        message = (
            f"root element is <{_pretty(str(root.tag))}>; a process file must be a "
            "bpmn:definitions (BPMN 2.0) or a DMN definitions document"
        )
        return None, [Problem(file_name, root.sourceline, root.get("id"), message)]
    return etree.ElementTree(root), []


def _syntax_problem(file_name: str, err: etree.XMLSyntaxError) -> Problem:
    message = _SYNTAX_POSITION.sub(r" (column \1)", err.msg or str(err))
    return Problem(file_name, err.lineno or None, None, "XML is not well-formed: " + message)


def check_schema(file_name: str, tree) -> list[Problem]:
    """Validate against the BPMN 2.0 + spiff XSD (or the DMN XSD): every violation, with its line."""
    root = _root(tree)
    schema = _xml_schema(etree.QName(root).namespace)
    if schema is None:
        return []
    document = copy.deepcopy(root)  # the spiff preprocessing renames elements: keep the caller's tree
    VALIDATOR.preprocess(document)
    with _SCHEMA_LOCK:
        schema.validate(document)
        entries = list(schema.error_log)
    return sorted({_schema_problem(file_name, root, entry) for entry in entries})


@cache
def _xml_schema(namespace: str) -> etree.XMLSchema | None:
    if namespace == BPMN_NS:
        return VALIDATOR.validator
    xsd = DMN_SCHEMAS.get(namespace)
    return BpmnValidator(xsd).validator if xsd else None


def _schema_problem(file_name: str, root, entry) -> Problem:
    element = _element_at(root, entry.line, _SCHEMA_ELEMENT.search(entry.message))
    element_id = _owner_id(element) if element is not None else None
    return Problem(file_name, entry.line or None, element_id, "schema violation: " + _pretty(entry.message))


def _element_at(root, line: int, named: re.Match | None):
    """The element an XSD error on ``line`` is about (its name is quoted in the message)."""
    candidates = [e for e in root.iter(etree.Element) if e.sourceline == line]
    matching = [e for e in candidates if named and e.tag == named[1]]
    return (matching or candidates or [None])[0]


# --------------------------------------------------------------------------- BPMN


@dataclass(frozen=True)
class _Context:
    file: str
    form_exists: Callable[[str], bytes | None]
    process_ids: frozenset[str]
    decision_ids: frozenset[str]

    def at(self, element, message: str, offset: int = 0) -> Problem:
        return _problem(self.file, element, message, offset)


def check_bpmn(
    file_name: str,
    tree,
    *,
    form_exists: Callable[[str], bytes | None],
    known_process_ids: Iterable[str],
    known_decision_ids: Iterable[str],
) -> list[Problem]:
    """Every static problem of one BPMN document (flows, code, timers, targets, forms, ids)."""
    context = _Context(file_name, form_exists, frozenset(known_process_ids), frozenset(known_decision_ids))
    root = _root(tree)
    return sorted({problem for check in _BPMN_CHECKS for problem in check(context, root)})


SPIFF_NAMESPACE = "http://spiffworkflow.org/bpmn/schema/1.0/core"


def _check_duplicate_ids(c: _Context, root) -> Iterator[Problem]:
    """BPMN and diagram ids must be unique; spiff extension ``id`` attributes (operator and
    parameter names) are not element ids and may repeat."""
    first_line: dict[str, int] = {}
    for element in root.iter(etree.Element):
        ident = element.get("id")
        if ident is None or etree.QName(element).namespace == SPIFF_NAMESPACE:
            continue
        if ident in first_line:
            message = f"duplicate id (also used on line {first_line[ident]}); give each element its own id"
            yield Problem(c.file, element.sourceline, ident, message)
        else:
            first_line[ident] = element.sourceline


def _check_flows(c: _Context, root) -> Iterator[Problem]:
    all_ids = {e.get("id") for e in root.iter(etree.Element) if e.get("id")}
    for container in root.iter(*_bpmn(*CONTAINERS)):
        yield from _container_flows(c, container, all_ids)


def _container_flows(c: _Context, container, all_ids: set[str]) -> Iterator[Problem]:
    nodes = {e.get("id"): e for e in container.iterchildren(*_bpmn(*FLOW_NODES)) if e.get("id")}
    flows = {e.get("id"): e for e in container.iterchildren(*_bpmn("sequenceFlow"))}
    for flow in flows.values():
        for end in ("sourceRef", "targetRef"):
            yield from _flow_end(c, flow, end, nodes, all_ids)
    for node in nodes.values():
        yield from _node_flow_refs(c, node, flows)


def _flow_end(c: _Context, flow, end: str, nodes: dict, all_ids: set[str]) -> Iterator[Problem]:
    ref = flow.get(end)
    if not ref:
        yield c.at(flow, f"sequence flow has no {end}; connect both ends or delete the flow")
    elif ref not in nodes and ref in all_ids:
        yield c.at(flow, f"{end} '{ref}' is not a task, event or gateway of the flow's (sub-)process")
    elif ref not in nodes:
        yield c.at(flow, f"dangling sequence flow: {end} '{ref}' does not exist; reconnect or delete it")


def _node_flow_refs(c: _Context, node, flows: dict) -> Iterator[Problem]:
    for ref in node.iterchildren(*_bpmn("incoming", "outgoing")):
        name, kind = (ref.text or "").strip(), _local(ref)
        end = "targetRef" if kind == "incoming" else "sourceRef"
        flow = flows.get(name)
        if flow is None:
            yield c.at(ref, f"{kind} flow '{name}' does not exist in this (sub-)process")
        elif flow.get(end) != node.get("id"):
            yield c.at(ref, f"lists {kind} flow '{name}', but that flow's {end} is '{flow.get(end)}'")


def _check_start_events(c: _Context, root) -> Iterator[Problem]:
    for process in root.iterchildren(*_bpmn("process")):
        if process.get("isExecutable", "true") != "true":
            continue
        if not _has_child(process, *_bpmn("startEvent")):
            yield c.at(process, "executable process has no start event; add one")
        yield from _check_subprocess_events(c, process)


def _check_subprocess_events(c: _Context, process) -> Iterator[Problem]:
    for sub in process.iter(*_bpmn("subProcess", "transaction")):
        starts = len(list(sub.iterchildren(*_bpmn("startEvent"))))
        if starts != 1:
            yield c.at(sub, f"a sub-process needs exactly one start event; found {starts}")
        if not _has_child(sub, *_bpmn("endEvent")):
            yield c.at(sub, "sub-process has no end event; add one")


def _check_expressions(c: _Context, root) -> Iterator[Problem]:
    for element in root.iter(*_bpmn(*EXPRESSIONS)):
        if not _blank(element.text):
            yield from _code_problems(c.file, element, compile_expression, EXPRESSIONS[_local(element)])
    for param in root.iter(*_spiff("parameter")):
        if param.get("value") is not None:
            label = f"service parameter '{param.get('id')}'"
            yield from _code_problems(c.file, param, compile_expression, label, param.get("value"))


def _check_scripts(c: _Context, root) -> Iterator[Problem]:
    for task in root.iter(*_bpmn("scriptTask")):
        script = next(task.iterchildren(*_bpmn("script")), None)
        if script is None or _blank(script.text):
            yield c.at(task, "script task has no script; write one or use a plain task")
        else:
            yield from _code_problems(c.file, script, compile_script, "script")
    for element in root.iter(*_spiff("preScript", "postScript")):
        if element.text is not None:
            yield from _code_problems(c.file, element, compile_script, _local(element))


def _code_problems(file_name: str, element, compiler, label: str, source: str | None = None) -> list[Problem]:
    """Compile the element's text (or ``source``); report where in the file the error is."""
    source = element.text if source is None else source
    try:
        compiler(source)
    except ScriptError as err:
        detail = _SCRIPT_LINE.sub("", err.message, count=1)
        if not err.line:
            return [_problem(file_name, element, f"{label} does not compile: {detail}")]
        where = f"script line {err.line}: " if compiler is compile_script else ""
        return [_problem(file_name, element, f"{label} does not compile: {where}{detail}", err.line - 1)]
    return []


def _check_timers(c: _Context, root) -> Iterator[Problem]:
    for element in root.iter(*_bpmn(*TIMERS)):
        text = (element.text or "").strip()
        if not text:
            yield c.at(element, f'{_local(element)} is empty; give the timer a value such as "PT1H"')
        elif _ISO_TIME.fullmatch(text):
            yield c.at(element, f'timer value {text} must be quoted: timers are Python expressions, write "{text}"')
        else:
            yield from _code_problems(c.file, element, compile_expression, "timer expression")


def _check_event_gateways(c: _Context, root) -> Iterator[Problem]:
    """SpiffWorkflow 3.2 keeps one due time per event-based gateway, so with two timer branches
    the first one evaluated decides for both (see the research notes). Refuse it clearly."""
    for process in root.iter(*_bpmn("process", "subProcess")):
        by_id = {e.get("id"): e for e in process}
        for gateway in process.iter(*_bpmn("eventBasedGateway")):
            targets = [
                f.get("targetRef")
                for f in process.iter(*_bpmn("sequenceFlow"))
                if f.get("sourceRef") == gateway.get("id")
            ]
            timers = [t for t in targets if t in by_id and _has_timer(by_id[t])]
            if len(timers) > 1:
                yield c.at(
                    gateway,
                    f"event-based gateway with {len(timers)} timer branches ({', '.join(timers)}) is "
                    "not supported by the engine: keep one timer and route the others after it",
                )


def _has_timer(element) -> bool:
    return any(True for _ in element.iter(*_bpmn("timerEventDefinition")))


def _check_call_activities(c: _Context, root) -> Iterator[Problem]:
    for activity in root.iter(*_bpmn("callActivity")):
        target = activity.get("calledElement")
        if _blank(target):
            yield c.at(activity, "call activity has no calledElement; choose the process to call")
        elif target not in c.process_ids:
            yield c.at(
                activity, f"unknown call-activity target '{target}'; deploy a process with that id or fix calledElement"
            )


def _check_business_rules(c: _Context, root) -> Iterator[Problem]:
    for task in root.iter(*_bpmn("businessRuleTask")):
        ref = next(
            iter(
                task.xpath(
                    "./bpmn:extensionElements/spiffworkflow:calledDecisionId",
                    namespaces={"bpmn": BPMN_NS, "spiffworkflow": SPIFF_NS},
                )
            ),
            None,
        )
        if ref is None or _blank(ref.text):
            yield c.at(task, "business rule task has no spiffworkflow:calledDecisionId; choose the DMN decision to run")
        elif ref.text not in c.decision_ids:
            yield c.at(ref, f"unknown DMN decision '{ref.text}'; deploy a DMN file with that decision id")


def _check_forms(c: _Context, root) -> Iterator[Problem]:
    for prop in root.iter(*_spiff("property")):
        kind = prop.get("name")
        if kind in FORM_PROPERTIES:
            message = _form_message(c.form_exists, kind, prop.get("value") or "")
            if message:
                yield c.at(prop, message)


def _form_message(form_exists, kind: str, name: str) -> str | None:
    if not name.strip():
        return f"{kind} is empty; name the form file"
    content = form_exists(name)
    if content is None:
        return f"form file '{name}' not found; deploy it with the process file"
    return _form_content_message(name, content, is_schema=kind == "formJsonSchemaFilename")


def _form_content_message(name: str, content: bytes, *, is_schema: bool) -> str | None:
    try:
        data = json.loads(content)
    except UnicodeDecodeError:
        return f"form file '{name}' is not UTF-8 text"
    except json.JSONDecodeError as err:
        return f"form file '{name}' is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})"
    if is_schema:
        return _json_schema_message(name, data)
    return None if isinstance(data, dict) else f"form file '{name}' must hold a JSON object"


def _json_schema_message(name: str, schema) -> str | None:
    if not isinstance(schema, dict | bool):
        return f"form file '{name}' is not a JSON Schema: it must hold a JSON object"
    if isinstance(schema, dict) and not isinstance(schema.get("$schema", ""), str):
        return f"form file '{name}' is not a valid JSON Schema: $schema must be a string"
    try:
        validators.validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as err:
        return f"form file '{name}' is not a valid JSON Schema: {err.message} (at {err.json_path})"
    return None


DURATION_PROPERTIES = ("dueIn", "followUpIn")


def _check_task_properties(c: _Context, root) -> Iterator[Problem]:
    """Inbox properties are read when a task opens: refuse values that would be ignored there."""
    for prop in root.iter(*_spiff("property")):
        name, value = prop.get("name"), (prop.get("value") or "").strip()
        if name == "priority" and not _is_int(value):
            yield c.at(prop, f"priority must be a whole number (higher comes first), got {value!r}")
        elif name in DURATION_PROPERTIES and not _is_duration(value):
            yield c.at(prop, f"{name} must be an ISO 8601 duration such as P2D or PT4H, got {value!r}")


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def _is_duration(value: str) -> bool:
    from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

    if not value.startswith("P"):
        return False
    try:
        return bool(TimerEventDefinition.parse_iso_duration(value))
    except Exception:  # noqa: BLE001 - any parse failure means "not a duration"
        return False


_BPMN_CHECKS = (
    _check_duplicate_ids,
    _check_flows,
    _check_start_events,
    _check_expressions,
    _check_scripts,
    _check_timers,
    _check_event_gateways,
    _check_call_activities,
    _check_business_rules,
    _check_forms,
    _check_task_properties,
)


# --------------------------------------------------------------------------- DMN


def check_dmn(file_name: str, tree) -> list[Problem]:
    """Decisions present (one per file, as SpiffWorkflow supports) and every cell compiles."""
    root = _root(tree)
    namespace = etree.QName(root).namespace
    decisions = list(root.iterchildren(f"{{{namespace}}}decision"))
    problems = list(_dmn_decisions(file_name, root, decisions))
    for table in root.iter(f"{{{namespace}}}decisionTable"):
        problems += _dmn_table(file_name, table, namespace)
    return sorted(set(problems))


def _dmn_decisions(file_name: str, root, decisions: list) -> Iterator[Problem]:
    if not decisions:
        yield _problem(file_name, root, "DMN file has no decision; add a decision table")
    for decision in decisions:
        if not decision.get("id"):
            yield _problem(file_name, decision, "decision has no id; business rule tasks call it by id")
        elif not _has_child(decision, f"{{{etree.QName(root).namespace}}}decisionTable"):
            yield _problem(file_name, decision, "decision has no decision table")
    for extra in decisions[1:]:
        yield _problem(file_name, extra, "only one decision per DMN file is supported; move it to a new file")


def _dmn_table(file_name: str, table, namespace: str) -> Iterator[Problem]:
    def tag(name: str) -> str:
        return f"{{{namespace}}}{name}"

    inputs = list(table.iterchildren(tag("input")))
    for text in table.iterfind(f"{tag('input')}/{tag('inputExpression')}/{tag('text')}"):
        if not _blank(text.text):
            yield from _code_problems(file_name, text, compile_expression, "input expression")
    for rule in table.iterchildren(tag("rule")):
        yield from _dmn_rule(file_name, rule, tag, len(inputs))


def _dmn_rule(file_name: str, rule, tag: Callable[[str], str], input_count: int) -> Iterator[Problem]:
    entries = list(rule.iterchildren(tag("inputEntry")))
    if len(entries) > input_count:
        yield _problem(file_name, rule, f"rule has {len(entries)} input entries but the table has {input_count} inputs")
    for text in rule.iterfind(f"{tag('inputEntry')}/{tag('text')}"):
        if not _blank(text.text) and text.text.strip() != "-":
            yield from _code_problems(file_name, text, _compile_input_entry, "input entry")
    for text in rule.iterfind(f"{tag('outputEntry')}/{tag('text')}"):
        if not _blank(text.text):
            yield from _code_problems(file_name, text, compile_expression, "output entry")


def _compile_input_entry(text: str):
    """An input cell is a value (``"low"``), a test to complete (``< 100``) or uses ``?`` for the input."""
    if "dmninputexpr" in (replaced := _replace_placeholder(text)):
        return compile_expression(replaced)
    try:
        return compile_expression(text)
    except ScriptError as err:
        try:
            return compile_expression(f"dmninputexpr {text.strip()}")
        except ScriptError:
            raise err from None


def _replace_placeholder(text: str) -> str:
    """Replace ``?`` outside string quotes by the name SpiffWorkflow's DMN engine binds to the input."""
    out, quote = [], None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "?":
            char = "dmninputexpr"
        out.append(char)
    return "".join(out)


# --------------------------------------------------------------------------- SpiffWorkflow errors


def problem_from_spiff(exc: BaseException, trees: dict, default_file: str) -> Problem:
    """Map an exception raised by the SpiffWorkflow parser (or lxml) to a Problem with a line."""
    if isinstance(exc, ValidationException):
        return _from_validation(exc, trees, default_file)
    if isinstance(exc, etree.XMLSyntaxError):
        return _syntax_problem(_match_file(exc.filename, trees) or default_file, exc)
    if isinstance(exc, etree.DocumentInvalid):
        return _from_invalid(exc, default_file)
    return Problem(default_file, None, None, _describe(exc))


def _from_validation(exc: ValidationException, trees: dict, default_file: str) -> Problem:
    file_name = _match_file(exc.file_name, trees) or default_file
    message = _pretty(_spiff_message(exc))
    if isinstance(exc.line_number, int) and exc.line_number > 0:  # only XSD errors carry a line
        return _at_line(exc, trees, file_name, message)
    xpath, value = "//*[@id=$value]", exc.id or None
    if value is None and (missing := _MISSING_PROCESS.match(message)):
        xpath, value = "//*[local-name()='callActivity'][@calledElement=$value]", missing[1]
    found = _find(trees, file_name, xpath, value) if value else None
    if found is None:
        return Problem(file_name, None, exc.id or None, message)
    return Problem(found[0], found[1].sourceline, _owner_id(found[1]), message)


def _at_line(exc: ValidationException, trees: dict, file_name: str, message: str) -> Problem:
    element = None
    if file_name in trees:
        named = _SCHEMA_ELEMENT.search(str(exc.args[0]) if exc.args else "")
        element = _element_at(_root(trees[file_name]), exc.line_number, named)
    element_id = exc.id or (_owner_id(element) if element is not None else None)
    return Problem(file_name, exc.line_number, element_id, message)


def _from_invalid(exc: etree.DocumentInvalid, default_file: str) -> Problem:
    entry = exc.error_log.last_error if exc.error_log else None
    if entry is None:
        return Problem(default_file, None, None, _describe(exc))
    return Problem(default_file, entry.line or None, None, "schema violation: " + _pretty(entry.message))


def _find(trees: dict, preferred: str, xpath: str, value: str):
    """(file, element) of the first element matching ``xpath``, looking in ``preferred`` first."""
    for name in sorted(trees, key=lambda n: n != preferred):
        hits = _root(trees[name]).xpath(xpath, value=value)
        if hits:
            return name, hits[0]
    return None


def _match_file(name: str | None, trees: dict) -> str | None:
    """The key of ``trees`` that SpiffWorkflow's file name (maybe a full path) refers to."""
    if not name:
        return None
    if name in trees:
        return name
    path = name.replace("\\", "/")
    for key in trees:
        if path.endswith("/" + key.replace("\\", "/")):
            return key
    return next((key for key in trees if os.path.basename(key) == os.path.basename(path)), None)


def _spiff_message(exc: BaseException) -> str:
    """The message without the ``". "`` SpiffWorkflowException appends, notes joined in."""
    parts = [str(exc.args[0]) if exc.args else "", *getattr(exc, "notes", [])]
    return ". ".join(p.strip().rstrip(".").strip() for p in parts if p and p.strip(". "))


def _describe(exc: BaseException) -> str:
    text = _spiff_message(exc) if isinstance(exc, SpiffWorkflowException) else str(exc)
    text = " ".join(text.split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = [
    "Problem",
    "check_bpmn",
    "check_dmn",
    "check_schema",
    "check_xml",
    "decision_ids",
    "problem_from_spiff",
    "process_ids",
]
