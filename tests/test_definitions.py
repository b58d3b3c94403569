"""Deploying definitions: versions, content hashing, atomic deploys, call activities, forms."""

from __future__ import annotations

import shutil

import pytest
import sqlalchemy as sa

from engine.errors import DefinitionInvalid, InvalidInput, NotFound
from engine.schema import definition_resources, definitions
from tests.conftest import BPMN, only_task

APPROVAL = "engine/bench/approval.bpmn"


def count_definitions(engine) -> int:
    with engine.db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(definitions)).scalar()


def test_unchanged_deploy_keeps_the_version(engine):
    first = engine.deploy([APPROVAL])
    second = engine.deploy([APPROVAL])
    assert [(r.process_id, r.version, r.created) for r in first] == [("bench_approval", 1, True)]
    assert [(r.process_id, r.version, r.created) for r in second] == [("bench_approval", 1, False)]
    assert first[0].sha256 == second[0].sha256
    assert count_definitions(engine) == 1


def test_changed_content_creates_a_new_version_and_running_instances_keep_theirs(team, tmp_path):
    source = tmp_path / "approval.bpmn"
    shutil.copy(APPROVAL, source)
    team.deploy([source])
    old = team.start("bench_approval", {})
    source.write_text(source.read_text().replace('name="Submit deliverable"', 'name="Submit the deliverable"'))
    result = team.deploy([source])
    assert (result[0].version, result[0].created) == (2, True)
    new = team.start("bench_approval", {})
    assert (old["version"], new["version"]) == (1, 2)
    assert only_task(team.get_instance(old["id"]))["title"] == "Submit deliverable"
    assert only_task(new)["title"] == "Submit the deliverable"
    # the old instance still runs to the end on version 1
    instance = team.complete(only_task(team.get_instance(old["id"]))["id"], "pat", {})
    instance = team.complete(only_task(instance)["id"], "quinn", {"approved": True})
    instance = team.complete(only_task(instance)["id"], "casey", {})
    assert (instance["status"], instance["version"]) == ("completed", 1)


def test_whitespace_only_changes_do_not_create_a_version(engine, tmp_path):
    source = tmp_path / "approval.bpmn"
    shutil.copy(APPROVAL, source)
    engine.deploy([source])
    source.write_text(source.read_text().replace("\n", "\n\n"))
    assert engine.deploy([source])[0].created is False


def test_a_failed_deploy_stores_nothing_even_for_the_valid_files(engine, tmp_path):
    shutil.copy(APPROVAL, tmp_path / "good.bpmn")
    (tmp_path / "bad.bpmn").write_text(
        (BPMN / "child.bpmn").read_text().replace('targetRef="score"', 'targetRef="nowhere"')
    )
    with pytest.raises(DefinitionInvalid) as info:
        engine.deploy([tmp_path])
    assert any(str(p).startswith("bad.bpmn:") and "c2" in str(p) for p in info.value.problems)
    assert count_definitions(engine) == 0


def test_files_without_diagram_information_deploy_and_run(team):
    results = team.deploy([BPMN / "child.bpmn"])  # no BPMNDI in this file
    assert results[0].process_id == "risk_check"
    instance = team.start("risk_check", {})
    instance = team.complete(only_task(instance)["id"], "dana", {"probability": 3, "impact": 4})
    assert instance["status"] == "completed"
    assert instance["data"]["risk_score"] == 12


def test_call_activity_resolves_a_process_deployed_earlier(team):
    team.deploy([BPMN / "child.bpmn"])
    team.deploy([BPMN / "parent.bpmn"])  # risk_check is not in this deploy
    instance = team.start("project_intake", {})
    task = only_task(instance)
    assert (task["element_id"], task["candidate_group"]) == ("assess", "delivery_manager")
    instance = team.complete(task["id"], "dana", {"probability": 2, "impact": 5})
    assert only_task(instance)["element_id"] == "kickoff"
    instance = team.complete(only_task(instance)["id"], "pat", {})
    assert instance["status"] == "completed"
    assert instance["data"]["risk_score"] == 10


def test_unknown_call_activity_target_is_refused_with_its_line(engine):
    with pytest.raises(DefinitionInvalid) as info:
        engine.deploy([BPMN / "parent.bpmn"])
    text = str(info.value)
    assert "parent.bpmn:6: call_risk:" in text and "risk_check" in text


def test_forms_are_stored_with_the_definition(engine):
    result = engine.deploy([BPMN / "review_loop.bpmn"])[0]
    with engine.db.read() as conn:
        rows = conn.execute(
            sa.select(definition_resources.c.kind, definition_resources.c.name).where(
                definition_resources.c.definition_id == result.definition_id
            )
        ).all()
    assert ("form", "forms/submit.json") in rows
    assert ("form", "forms/review.json") in rows
    assert ("source", "review_loop.bpmn") in rows


def test_changing_a_form_creates_a_new_version(engine, tmp_path):
    shutil.copytree(BPMN, tmp_path / "p")
    engine.deploy([tmp_path / "p" / "review_loop.bpmn"])
    form = tmp_path / "p" / "forms" / "review.json"
    form.write_text(
        form.read_text().replace('"comment": {"type": "string"}', '"comment": {"type": "string", "maxLength": 5}')
    )
    assert engine.deploy([tmp_path / "p" / "review_loop.bpmn"])[0].version == 2


def test_deploy_of_a_missing_path_is_a_clear_error(engine, tmp_path):
    with pytest.raises(InvalidInput, match="no such file"):
        engine.deploy([tmp_path / "missing.bpmn"])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInput, match="no .bpmn"):
        engine.deploy([tmp_path])


def test_starting_an_unknown_process_names_it(engine):
    with pytest.raises(NotFound, match="nope"):
        engine.start("nope", {})


def test_form_fields_keep_the_designers_order(engine):
    engine.deploy([BPMN / "review_loop.bpmn"])
    instance = engine.start("review_loop", {})
    schema = engine.task_details(only_task(instance)["id"])["form_schema"]
    assert list(schema["properties"]) == ["title", "hours", "contact"]


def test_two_files_defining_the_same_process_id_are_refused(engine, tmp_path):
    shutil.copy(APPROVAL, tmp_path / "a.bpmn")
    shutil.copy(APPROVAL, tmp_path / "b.bpmn")
    with pytest.raises(DefinitionInvalid) as info:
        engine.deploy([tmp_path])
    assert "b.bpmn:8: bench_approval: process id 'bench_approval' is also defined in a.bpmn" in str(info.value)
    assert count_definitions(engine) == 0


def test_deploy_by_an_unknown_user_is_refused(engine):
    with pytest.raises(NotFound, match="unknown user 'ghost'"):
        engine.deploy([APPROVAL], deployed_by="ghost", by_user=True)
    assert count_definitions(engine) == 0


def test_a_process_with_a_decision_table_deploys_and_routes_by_it(engine):
    """DMN files deploy with the BPMN that calls them; the table decides the route at run time."""
    results = engine.deploy([BPMN / "rule_route.bpmn", BPMN / "risk_rule.dmn"])
    assert [r.process_id for r in results] == ["rule_route"]
    engine.add_user("sam", groups_=["sponsor"])
    low = engine.start("rule_route", {"amount": 999})
    assert (low["status"], low["data"]["risk"]) == ("completed", "low")
    high = engine.start("rule_route", {"amount": 1000})
    assert only_task(high)["element_id"] == "sponsor_ok" and high["data"]["risk"] == "high"
