"""Messages reach the right instance by correlation, or start one; a message nobody takes is an error.

Fixtures: ``client_reply.bpmn`` (process ``await_reply``) waits at an intermediate catch event
for message ``client_reply``, correlated by the ``project_id`` in its start data, then opens
"Review the client's reply"; ``change_request_msg.bpmn`` starts on message ``change_submitted``
and opens "Assess the change".
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from engine.cli import cli
from engine.errors import FormValidationError, InvalidInput, InvalidState, NotFound
from engine.schema import events, instances, message_subscriptions
from tests.conftest import BPMN, only_task

PROJECTS = ("P-1", "P-2", "P-3")


@pytest.fixture
def msgs(team):
    team.deploy([BPMN / "client_reply.bpmn", BPMN / "change_request_msg.bpmn"])
    return team


def start_waiting(engine, projects=PROJECTS) -> dict[str, int]:
    """One ``await_reply`` instance per project id, each waiting for ``client_reply``."""
    started = {p: engine.start("await_reply", {"project_id": p}, actor="pat") for p in projects}
    assert all(i["status"] == "waiting" and i["tasks"] == [] for i in started.values())
    return {p: i["id"] for p, i in started.items()}


def subscriptions(engine) -> dict[int, dict]:
    """instance id -> {message name: correlation values}."""
    with engine.db.read() as conn:
        rows = conn.execute(sa.select(message_subscriptions).order_by(message_subscriptions.c.id))
        found: dict[int, dict] = {}
        for r in rows:
            found.setdefault(r.instance_id, {})[r.message_name] = json.loads(r.correlation)
        return found


def snapshot(engine) -> tuple:
    """Everything a refused message must leave alone: instance rows, subscriptions, the audit log."""
    with engine.db.read() as conn:
        rows = conn.execute(
            sa.select(instances.c.id, instances.c.status, instances.c.lock_version).order_by(instances.c.id)
        ).all()
        count = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar()
    return [tuple(r) for r in rows], count, subscriptions(engine)


# -- engine API ----------------------------------------------------------------------------------
def test_message_start_event_creates_an_instance_with_the_payload(msgs):
    payload = {"title": "Add a FAQ page", "pages": 3}
    [instance] = msgs.correlate_message("change_submitted", payload, actor="pat")
    assert instance["process_id"] == "change_request_msg"
    assert instance["data"] == payload  # no messageVariable: the payload becomes the process data
    assert instance["started_by"] == "pat"
    assert only_task(instance)["element_id"] == "assess_change"
    history = msgs.history(instance["id"])
    assert [e["type"] for e in history][:2] == ["instance_started", "message_correlated"]
    correlated = next(e for e in history if e["type"] == "message_correlated")
    assert correlated["data"] == {"name": "change_submitted", "payload": payload, "correlation": {}}
    assert subscriptions(msgs) == {}  # it no longer waits for anything


def test_waiting_instances_are_subscribed_with_their_correlation(msgs):
    ids = start_waiting(msgs)
    assert subscriptions(msgs) == {ids[p]: {"client_reply": {"project_id": p}} for p in PROJECTS}


def test_correlation_picks_the_right_instance_and_the_others_keep_waiting(msgs):
    ids = start_waiting(msgs)
    [instance] = msgs.correlate_message("client_reply", {"answer": "approved"}, {"project_id": "P-2"}, actor="casey")
    assert instance["id"] == ids["P-2"]
    assert instance["data"]["reply"] == {"answer": "approved", "project_id": "P-2"}
    assert only_task(instance)["element_id"] == "review_reply"
    assert instance["status"] == "running"
    for other in ("P-1", "P-3"):
        waiting = msgs.get_instance(ids[other])
        assert waiting["status"] == "waiting" and waiting["tasks"] == [] and "reply" not in waiting["data"]
    assert set(subscriptions(msgs)) == {ids["P-1"], ids["P-3"]}  # the delivered one's row is gone
    correlated = [e for e in msgs.history(ids["P-2"]) if e["type"] == "message_correlated"]
    assert [(e["actor"], e["element_id"], e["data"]["correlation"]) for e in correlated] == [
        ("casey", "wait_reply", {"project_id": "P-2"})
    ]
    # the instance moved on for good: it finishes normally
    done = msgs.complete(only_task(instance)["id"], "pat", {})
    assert done["status"] == "completed"


def test_one_waiting_instance_needs_no_correlation(msgs):
    ids = start_waiting(msgs, ["P-7"])
    [instance] = msgs.correlate_message("client_reply", {"answer": "ok"})
    assert instance["id"] == ids["P-7"]
    assert instance["data"]["reply"] == {"answer": "ok", "project_id": "P-7"}  # the instance's own value
    assert subscriptions(msgs) == {}


def test_unmatched_message_is_not_found_and_changes_nothing(msgs):
    start_waiting(msgs)
    before = snapshot(msgs)
    with pytest.raises(NotFound) as wrong_project:
        msgs.correlate_message("client_reply", {"answer": "?"}, {"project_id": "P-9"})
    assert "'client_reply'" in wrong_project.value.message
    assert "project_id=P-9" in wrong_project.value.message
    with pytest.raises(NotFound) as unknown:
        msgs.correlate_message("nobody_listens", {})
    assert "'nobody_listens'" in unknown.value.message
    assert snapshot(msgs) == before


def test_ambiguous_message_without_correlation_is_refused(msgs):
    ids = start_waiting(msgs, ["P-1", "P-2"])
    before = snapshot(msgs)
    with pytest.raises(InvalidInput) as refused:
        msgs.correlate_message("client_reply", {"answer": "yes"})
    assert "project_id=" in refused.value.message
    assert refused.value.context["instance_ids"] == [ids["P-1"], ids["P-2"]]
    assert snapshot(msgs) == before


def test_payload_contradicting_the_instance_correlation_is_refused(msgs):
    start_waiting(msgs)
    before = snapshot(msgs)
    with pytest.raises(InvalidInput) as refused:
        msgs.correlate_message("client_reply", {"project_id": "P-1"}, {"project_id": "P-2"})
    assert "P-1" in refused.value.message and "P-2" in refused.value.message
    assert snapshot(msgs) == before


def test_suspended_instance_refuses_the_message_and_keeps_its_subscription(msgs):
    ids = start_waiting(msgs, ["P-1"])
    msgs.suspend(ids["P-1"])
    with pytest.raises(InvalidState):
        msgs.correlate_message("client_reply", {}, {"project_id": "P-1"})
    assert subscriptions(msgs) == {ids["P-1"]: {"client_reply": {"project_id": "P-1"}}}
    msgs.resume(ids["P-1"])
    [instance] = msgs.correlate_message("client_reply", {}, {"project_id": "P-1"})
    assert only_task(instance)["element_id"] == "review_reply"


def test_terminating_an_instance_removes_its_subscriptions(msgs):
    ids = start_waiting(msgs, ["P-1", "P-2"])
    msgs.terminate(ids["P-1"], "pat", reason="project cancelled")
    assert set(subscriptions(msgs)) == {ids["P-2"]}
    with pytest.raises(NotFound):
        msgs.correlate_message("client_reply", {}, {"project_id": "P-1"})


# -- the `sdf message` command -------------------------------------------------------------------
def sdf(url: str, *args: str):
    return CliRunner().invoke(cli, list(args), obj={}, env={"SDF_DATABASE_URL": url})


def test_cli_message_delivers_and_prints_the_instance(msgs, database_url):
    ids = start_waiting(msgs)
    args = ["message", "client_reply", "--data", '{"answer": "yes"}', "--correlation", "project_id=P-3"]
    result = sdf(database_url, *args, "--as", "casey", "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    [instance] = json.loads(result.stdout)
    assert instance["id"] == ids["P-3"]
    assert instance["data"]["reply"]["answer"] == "yes"
    assert [t["element_id"] for t in instance["tasks"]] == ["review_reply"]
    started = sdf(database_url, "message", "change_submitted", "--data", '{"title": "New logo"}')
    assert started.exit_code == 0, (started.stdout, started.stderr)
    assert started.stdout.startswith("message change_submitted -> instance ")
    assert "change_request_msg" in started.stdout and "Assess the change" in started.stdout


@pytest.mark.parametrize(
    ("correlation", "expected"),
    [
        ("project_id", "error: --correlation 'project_id': use KEY=VALUE"),
        ("project_id=P-9", "error: no instance waits for message 'client_reply' with correlation project_id=P-9"),
    ],
)
def test_cli_message_errors_are_one_line_and_exit_1(msgs, database_url, correlation, expected):
    start_waiting(msgs, ["P-1"])
    before = snapshot(msgs)
    result = sdf(database_url, "message", "client_reply", "--data", "{}", "--correlation", correlation)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert snapshot(msgs) == before


# -- payloads checked against a form on the catch event -------------------------------------------
PAYLOAD_FORM = {
    "type": "object",
    "required": ["title"],
    "properties": {"title": {"type": "string", "minLength": 3}, "pages": {"type": "integer", "minimum": 1}},
}
WITH_FORM = (
    "<bpmn:extensionElements><spiffworkflow:properties>"
    '<spiffworkflow:property name="formJsonSchemaFilename" value="forms/payload.json" />'
    "</spiffworkflow:properties></bpmn:extensionElements>"
)


def with_payload_forms(tmp_path):
    """The two message fixtures, each catch event given the form forms/payload.json."""
    (tmp_path / "forms").mkdir()
    (tmp_path / "forms" / "payload.json").write_text(json.dumps(PAYLOAD_FORM))
    start = (BPMN / "change_request_msg.bpmn").read_text()
    start = start.replace('name="Change submitted">', 'name="Change submitted">' + WITH_FORM)
    start = start.replace(
        "<bpmn:definitions ", '<bpmn:definitions xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" '
    )
    (tmp_path / "start.bpmn").write_text(start)
    reply = (BPMN / "client_reply.bpmn").read_text()
    reply = reply.replace('name="Client replied">', 'name="Client replied">' + WITH_FORM)
    (tmp_path / "reply.bpmn").write_text(reply)
    return [tmp_path]


def test_a_message_start_event_with_a_form_refuses_a_bad_payload_and_creates_nothing(team, tmp_path):
    team.deploy(with_payload_forms(tmp_path))
    before = snapshot(team)
    with pytest.raises(FormValidationError) as info:
        team.correlate_message("change_submitted", {"title": "x", "pages": 0}, actor="casey")
    assert str(info.value).startswith(
        "message 'change_submitted': submitted data does not match form forms/payload.json"
    )
    assert {e["field"] for e in info.value.errors} == {"title", "pages"}
    assert snapshot(team) == before and team.list_instances() == []
    [instance] = team.correlate_message("change_submitted", {"title": "New FAQ", "pages": 2}, actor="casey")
    assert instance["data"]["title"] == "New FAQ"


def test_a_waiting_catch_event_with_a_form_refuses_a_bad_payload_and_keeps_waiting(team, tmp_path):
    team.deploy(with_payload_forms(tmp_path))
    waiting = team.start("await_reply", {"project_id": "P-1"}, actor="pat")
    before = snapshot(team)
    with pytest.raises(FormValidationError):
        team.correlate_message("client_reply", {"project_id": "P-1", "pages": "many"}, actor="casey")
    assert snapshot(team) == before
    assert team.get_instance(waiting["id"])["status"] == "waiting"
    [after] = team.correlate_message("client_reply", {"project_id": "P-1", "title": "Looks good"}, actor="casey")
    assert only_task(after)["element_id"] == "review_reply"
