"""Everything in processes/ deploys cleanly, as `make run` deploys it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.parsing import collect_files
from tests.conftest import add_team

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


@pytest.mark.parametrize("process_id", sorted(p.stem for p in PROCESSES.glob("*.bpmn")))
def test_a_designer_can_copy_a_shipped_process_under_a_new_id(sqlite_engine, tmp_path, process_id):
    """The steps of docs/processes.md: copy the file, the forms and the decision tables, rename
    the process id, validate (no problem, no warning), deploy next to the originals, start it."""
    add_team(sqlite_engine)
    sqlite_engine.deploy([PROCESSES])
    mine = tmp_path / "mine"
    shutil.copytree(PROCESSES / "forms", mine / "forms")
    for table in PROCESSES.glob("*.dmn"):
        shutil.copy(table, mine / table.name)
    new_id = f"my_{process_id}"
    text = (PROCESSES / f"{process_id}.bpmn").read_text().replace(process_id, new_id)
    (mine / f"{new_id}.bpmn").write_text(text)

    assert [c.process_id for c in sqlite_engine.validate([mine])] == [new_id]
    assert [str(w) for w in sqlite_engine.warnings([mine])] == []
    [result] = sqlite_engine.deploy([mine])
    assert (result.process_id, result.version) == (new_id, 1)
    ids = {d["process_id"] for d in sqlite_engine.list_definitions()}
    assert {process_id, new_id} <= ids  # the original stays as it was
    started = sqlite_engine.start(new_id, {}, actor="pat")
    assert started["process_id"] == new_id and started["status"] in ("running", "waiting")
