"""Everything in processes/ deploys cleanly, as `make run` deploys it."""

from __future__ import annotations

from pathlib import Path

from engine.parsing import collect_files

PROCESSES = Path(__file__).resolve().parent.parent / "processes"


def test_all_shipped_processes_validate_and_deploy_without_a_warning(sqlite_engine):
    compiled = sqlite_engine.validate([PROCESSES])  # raises DefinitionInvalid listing every problem
    assert [str(w) for w in sqlite_engine.warnings([PROCESSES])] == []
    results = sqlite_engine.deploy([PROCESSES])
    assert sorted(r.process_id for r in results) == sorted(c.process_id for c in compiled)
    assert all(r.version == 1 for r in results)


def test_every_shipped_bpmn_file_has_diagram_information():
    bundle = collect_files([PROCESSES])
    for source in bundle.of_kind("bpmn"):
        assert b"BPMNDiagram" in source.content, f"{source.name} has no diagram (BPMNDI) information"
