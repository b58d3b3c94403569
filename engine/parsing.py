"""Turn BPMN/DMN/form files into SpiffWorkflow specs, or a precise list of problems.

A deploy works on a :class:`Bundle` (every file given, by a name relative to where it was
found). All static checks run first and every problem is reported at once as
``file:line: element-id: message``; only a clean bundle reaches the SpiffWorkflow parser,
whose own errors are mapped back to a line too. Nothing here touches the database: call
activities that point at already-deployed processes are resolved through a callback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.spiff.parser import SpiffBpmnParser

from . import validation
from .errors import DefinitionInvalid, InvalidInput
from .servicetasks import PARSER_OVERRIDES

PROCESS_SUFFIXES = {".bpmn": "bpmn", ".bpmn20.xml": "bpmn", ".dmn": "dmn"}
FORM_PROPERTIES = ("formJsonSchemaFilename", "formUiSchemaFilename")


class SdfParser(SpiffBpmnParser):
    """The parser of the engine: the spiff dialect (forms, operators, properties) plus DMN.

    Service tasks become :class:`engine.servicetasks.AsyncServiceTask` (called by a job).
    """

    OVERRIDE_PARSER_CLASSES = {**SpiffBpmnParser.OVERRIDE_PARSER_CLASSES, **PARSER_OVERRIDES}


@dataclass
class SourceFile:
    name: str
    content: bytes
    path: Path | None = None

    @property
    def kind(self) -> str | None:
        lower = self.name.lower()
        for suffix, kind in PROCESS_SUFFIXES.items():
            if lower.endswith(suffix):
                return kind
        return "json" if lower.endswith(".json") else None


@dataclass
class Bundle:
    """The files of one deploy, keyed by name."""

    files: dict[str, SourceFile] = field(default_factory=dict)

    def add(self, name: str, content: bytes, path: Path | None = None) -> None:
        self.files[name] = SourceFile(name, content, path)

    def of_kind(self, kind: str) -> list[SourceFile]:
        return [f for f in self.files.values() if f.kind == kind]

    def resolve(self, referrer: SourceFile, name: str) -> bytes | None:
        """Find a file referenced (by a relative name) from ``referrer``: in the bundle, then on disk."""
        candidates = [str(Path(referrer.name).parent / name), name]
        for candidate in candidates:
            key = str(Path(candidate))
            if key in self.files:
                return self.files[key].content
        if referrer.path is not None:
            on_disk = referrer.path.parent / name
            if on_disk.is_file():
                return on_disk.read_bytes()
        return None


def collect_files(paths: Iterable[str | Path]) -> Bundle:
    """Read files and folders (recursively: *.bpmn, *.dmn, *.json) into a bundle."""
    bundle = Bundle()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and SourceFile(child.name, b"").kind:
                    bundle.add(str(child.relative_to(path)), child.read_bytes(), child)
        elif path.is_file():
            bundle.add(path.name, path.read_bytes(), path)
        else:
            raise InvalidInput(f"{raw}: no such file or folder")
    if not bundle.of_kind("bpmn") and not bundle.of_kind("dmn"):
        raise InvalidInput("no .bpmn or .dmn file found in " + ", ".join(str(p) for p in paths))
    return bundle


@dataclass
class CompiledProcess:
    """One executable process of a bundle, ready to be stored as a definition version."""

    process_id: str
    name: str | None
    source_file: str
    spec: object
    subprocess_specs: dict
    forms: dict[str, dict]
    sources: dict[str, bytes]


# resolve_external(process_id) -> (spec, subprocess_specs, forms) of the deployed version, or None
ExternalResolver = Callable[[str], tuple | None]


def compile_bundle(
    bundle: Bundle,
    *,
    deployed_ids: set[str] = frozenset(),
    resolve_external: ExternalResolver | None = None,
    operators: set[str] | None = None,
) -> list[CompiledProcess]:
    """Check and parse every file of ``bundle``; raise DefinitionInvalid with all problems.

    ``operators`` are the service-task operator names available; None skips that check.
    """
    trees, problems = _parse_xml(bundle)
    process_owner, duplicates = _process_owners(trees)
    problems += duplicates
    decisions = {d for name, tree in trees.items() for d in validation.decision_ids(tree)}
    problems += _static_checks(bundle, trees, set(process_owner) | set(deployed_ids), decisions)
    if problems:
        raise DefinitionInvalid(sorted(set(problems)))
    parser = _load_parser(bundle, trees)
    compiled, problems = [], []
    for pid, file_name in sorted(process_owner.items()):
        try:
            compiled.append(_compile_process(parser, bundle, trees, pid, file_name, resolve_external))
        except ValidationException as exc:
            problems.append(validation.problem_from_spiff(exc, trees, file_name))
        except DefinitionInvalid as exc:
            problems.extend(exc.problems)
    if operators is not None:
        problems += _unknown_operators(compiled, trees, operators)
    if problems:
        raise DefinitionInvalid(sorted(set(problems)))
    return compiled


def _process_owners(trees: dict) -> tuple[dict[str, str], list]:
    """Which file defines each process id; a second file defining the same id is a problem."""
    owners: dict[str, str] = {}
    problems = []
    for name, tree in sorted(trees.items()):
        for pid in sorted(validation.process_ids(tree)):
            if pid in owners:
                problems.append(
                    validation.Problem(
                        name,
                        _line_of(tree, pid),
                        pid,
                        f"process id {pid!r} is also defined in {owners[pid]}; give one of them another id",
                    )
                )
            else:
                owners[pid] = name
    return owners, problems


def _parse_xml(bundle: Bundle):
    trees, problems = {}, []
    for source in bundle.of_kind("bpmn") + bundle.of_kind("dmn"):
        tree, found = validation.check_xml(source.name, source.content)
        problems.extend(found)
        if tree is not None:
            trees[source.name] = tree
    return trees, problems


def _static_checks(bundle: Bundle, trees: dict, known_ids: set[str], decisions: set[str]):
    problems = []
    for name, tree in trees.items():
        source = bundle.files[name]
        problems += validation.check_schema(name, tree)
        if source.kind == "dmn":
            problems += validation.check_dmn(name, tree)
            continue
        problems += validation.check_bpmn(
            name,
            tree,
            form_exists=lambda ref, s=source: bundle.resolve(s, ref),
            known_process_ids=known_ids,
            known_decision_ids=decisions,
        )
    return problems


def _load_parser(bundle: Bundle, trees: dict) -> SdfParser:
    parser = SdfParser()
    for name, tree in trees.items():
        if bundle.files[name].kind == "dmn":
            parser.add_dmn_xml(tree.getroot(), filename=name)
        else:
            parser.add_bpmn_xml(tree, filename=name)
    return parser


def _compile_process(parser, bundle, trees, pid, file_name, resolve_external) -> CompiledProcess:
    spec = parser.get_spec(pid)
    subs = parser.get_subprocess_specs(pid, require_call_activity_specs=False)
    forms: dict[str, dict] = {}
    for missing in [name for name, sub in subs.items() if sub is None]:
        external = resolve_external(missing) if resolve_external else None
        if external is None:
            raise DefinitionInvalid(
                [validation.Problem(file_name, None, missing, f"unknown call-activity target '{missing}'")]
            )
        ext_spec, ext_subs, ext_forms = external
        subs[missing] = ext_spec
        subs.update({k: v for k, v in ext_subs.items() if subs.get(k) is None})
        forms.update(ext_forms)
    forms.update(_collect_forms(bundle, trees, [spec, *subs.values()]))
    sources = {name: bundle.files[name].content for name in _files_of([spec, *subs.values()], bundle)}
    return CompiledProcess(
        pid, spec.description if spec.description != pid else None, file_name, spec, subs, forms, sources
    )


def _unknown_operators(compiled: list[CompiledProcess], trees: dict, operators: set[str]) -> list:
    found = []
    for proc in compiled:
        for spec in [proc.spec, *proc.subprocess_specs.values()]:
            file_name = getattr(spec, "file", None) or proc.source_file
            for task_spec in spec.task_specs.values():
                name = getattr(task_spec, "operation_name", None)
                if name is not None and name not in operators:
                    line = _line_of(trees.get(file_name), task_spec.bpmn_id)
                    known = ", ".join(sorted(operators)) or "none are installed"
                    found.append(
                        validation.Problem(
                            file_name, line, task_spec.bpmn_id, f"unknown operator {name!r} (available: {known})"
                        )
                    )
    return found


def _line_of(tree, element_id: str) -> int | None:
    if tree is None:
        return None
    hits = tree.xpath("//*[@id=$id]", id=element_id)
    return hits[0].sourceline if hits else None


def _files_of(specs, bundle: Bundle) -> set[str]:
    names = {getattr(s, "file", None) for s in specs}
    names |= {f.name for f in bundle.of_kind("dmn")}
    return {n for n in names if n in bundle.files}


def _collect_forms(bundle: Bundle, trees: dict, specs) -> dict[str, dict]:
    forms = {}
    for spec in specs:
        source = bundle.files.get(getattr(spec, "file", None) or "")
        for task_spec in spec.task_specs.values():
            props = (getattr(task_spec, "extensions", None) or {}).get("properties", {})
            for prop in FORM_PROPERTIES:
                ref = props.get(prop)
                if ref and source is not None and ref not in forms:
                    forms[ref] = json.loads(bundle.resolve(source, ref))
    return forms


__all__ = ["Bundle", "CompiledProcess", "SdfParser", "collect_files", "compile_bundle"]
