"""The ``sdf`` command line, driven as a user drives it (click's CliRunner).

Every command builds its own engine from ``SDF_DATABASE_URL`` (set with ``env=`` for the
call), so these tests go through settings, the engine and the database exactly as a shell does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from engine.cli import cli

ROOT = Path(__file__).resolve().parent.parent
APPROVAL = str(ROOT / "engine" / "bench" / "approval.bpmn")
TASK_KEYS = {"id", "instance_id", "element_id", "title", "candidate_group", "assignee", "status", "priority", "due_at"}
HISTORY_ORDER = [
    "instance_started",
    "task_created",
    "task_claimed",
    "task_completed",
    "gateway_decision",
    "instance_completed",
]


# -- helpers -----------------------------------------------------------------------------------
def run(url: str, *args: str, input: str | None = None):
    """Invoke ``sdf ARGS`` with its own engine built from the environment."""
    return CliRunner().invoke(cli, list(args), obj={}, env={"SDF_DATABASE_URL": url}, input=input)


def ok(url: str, *args: str, input: str | None = None):
    result = run(url, *args, input=input)
    assert result.exit_code == 0, (args, result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def ok_json(url: str, *args: str, input: str | None = None):
    result = ok(url, *args, "--json", input=input)
    return json.loads(result.stdout)


def fails(url: str, *args: str, input: str | None = None) -> str:
    """Run a command that must fail: exit 1, nothing on stdout, one ``error:`` line on stderr."""
    result = run(url, *args, input=input)
    assert result.exit_code == 1, (args, result.exit_code, result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    return lines[0]


def team(url: str) -> None:
    for name, group in (("pat", "project_manager"), ("quinn", "qa_reviewer"), ("casey", "client")):
        user = ok_json(url, "users", "add", name, "--group", group)
        assert user["name"] == name
        assert user["groups"] == [group]


def deployed_instance(url: str) -> dict:
    """Team added, approval deployed, one instance started by pat (waiting at 'submit')."""
    team(url)
    ok_json(url, "deploy", APPROVAL)
    return ok_json(url, "start", "bench_approval", "--data", '{"item": "laptop"}', "--as", "pat")


def is_subsequence(wanted: list[str], seen: list[str]) -> bool:
    remaining = iter(seen)
    return all(item in remaining for item in wanted)


# -- 1. the full flow --------------------------------------------------------------------------
def test_migrate_is_idempotent(database_url):
    for _ in range(2):  # the fixture's schema is already migrated: both runs are no-ops
        result = ok(database_url, "migrate")
        assert result.stdout.startswith("database ready: ")
    assert ok_json(database_url, "definitions") == []


def test_full_approval_flow_with_json(database_url):
    url = database_url
    ok(url, "migrate")
    team(url)

    deployed = ok_json(url, "deploy", APPROVAL)
    assert isinstance(deployed, list) and len(deployed) == 1
    first = deployed[0]
    assert first["process_id"] == "bench_approval"
    assert first["version"] == 1
    assert first["created"] is True
    again = ok_json(url, "deploy", APPROVAL)
    assert [(d["process_id"], d["version"], d["created"]) for d in again] == [("bench_approval", 1, False)]

    instance = ok_json(
        url, "start", "bench_approval", "--data", '{"item": "laptop"}', "--business-key", "P-1", "--as", "pat"
    )
    assert {"id", "process_id", "version", "status", "business_key", "data", "tasks"} <= instance.keys()
    assert instance["process_id"] == "bench_approval"
    assert instance["version"] == 1
    assert instance["business_key"] == "P-1"
    assert instance["data"]["item"] == "laptop"
    assert instance["status"] not in ("completed", "terminated", "error")
    assert [t["element_id"] for t in instance["tasks"]] == ["submit"]
    instance_id = instance["id"]

    pat_tasks = ok_json(url, "tasks", "--as", "pat")
    assert isinstance(pat_tasks, list) and len(pat_tasks) == 1
    for task in pat_tasks:
        assert TASK_KEYS <= task.keys()
    submit = pat_tasks[0]
    assert submit["instance_id"] == instance_id
    assert submit["element_id"] == "submit"
    assert submit["candidate_group"] == "project_manager"
    assert submit["assignee"] is None
    assert submit["id"] not in [t["id"] for t in ok_json(url, "tasks", "--as", "quinn")]

    claimed = ok_json(url, "claim", str(submit["id"]), "--as", "pat")
    assert claimed["id"] == submit["id"]
    assert claimed["assignee"] == "pat"

    after_submit = ok_json(url, "complete", str(submit["id"]), "--as", "pat", "--data", '{"doc": "x"}')
    assert after_submit["id"] == instance_id
    assert after_submit["data"]["doc"] == "x"
    assert [t["element_id"] for t in after_submit["tasks"]] == ["review"]

    quinn_tasks = ok_json(url, "tasks", "--as", "quinn")
    assert [t["element_id"] for t in quinn_tasks] == ["review"]
    after_review = ok_json(url, "complete", str(quinn_tasks[0]["id"]), "--as", "quinn", "--data", '{"approved": true}')
    assert [t["element_id"] for t in after_review["tasks"]] == ["accept"]

    casey_tasks = ok_json(url, "tasks", "--as", "casey")
    assert [t["element_id"] for t in casey_tasks] == ["accept"]
    done = ok_json(url, "complete", str(casey_tasks[0]["id"]), "--as", "casey", "--data", '{"accepted": true}')
    assert done["status"] == "completed"
    assert done["tasks"] == []

    shown = ok_json(url, "show", str(instance_id))
    assert shown["status"] == "completed"
    assert {"item": "laptop", "doc": "x", "approved": True, "accepted": True}.items() <= shown["data"].items()
    assert shown["data"]["quality"] == 5  # the script task after the approved branch ran

    history = ok_json(url, "show", str(instance_id), "--history")["history"]
    types = [event["type"] for event in history]
    assert is_subsequence(HISTORY_ORDER, types), types
    assert types[0] == "instance_started"
    assert types[-1] == "instance_completed"

    listed = ok_json(url, "instances")
    assert [(i["id"], i["status"], i["business_key"]) for i in listed] == [(instance_id, "completed", "P-1")]
    assert ok_json(url, "tasks", "--as", "pat") == []


def test_text_output_without_json(sqlite_url):
    team(sqlite_url)
    assert ok(sqlite_url, "deploy", APPROVAL).stdout.strip() == "bench_approval: version 1"
    assert ok(sqlite_url, "deploy", APPROVAL).stdout.strip() == "bench_approval: version 1 (unchanged)"
    text = ok(sqlite_url, "start", "bench_approval", "--business-key", "P-9").stdout
    assert text.startswith("instance 1: bench_approval v1 ")
    assert "[P-9]" in text
    assert "Submit deliverable (project_manager)" in text


# -- 2. errors ---------------------------------------------------------------------------------
def test_unknown_process(sqlite_url):
    assert "nope" in fails(sqlite_url, "start", "nope")


def test_unknown_instance(sqlite_url):
    assert "999" in fails(sqlite_url, "show", "999")


def test_unknown_task(sqlite_url):
    team(sqlite_url)
    assert "unknown task 999" in fails(sqlite_url, "complete", "999", "--as", "pat")


def test_malformed_data_is_refused(sqlite_url):
    team(sqlite_url)
    ok_json(sqlite_url, "deploy", APPROVAL)
    message = fails(sqlite_url, "start", "bench_approval", "--data", "{bad")
    assert "--data" in message and "JSON" in message
    message = fails(sqlite_url, "start", "bench_approval", "--data", "[1]")
    assert "must be a JSON object" in message
    assert ok_json(sqlite_url, "instances") == []


def test_malformed_data_on_complete_leaves_task_open(sqlite_url):
    task = deployed_instance(sqlite_url)["tasks"][0]
    assert "JSON" in fails(sqlite_url, "complete", str(task["id"]), "--as", "pat", "--data", "{bad")
    assert "must be a JSON object" in fails(sqlite_url, "complete", str(task["id"]), "--as", "pat", "--data", "[1]")
    assert [t["id"] for t in ok_json(sqlite_url, "tasks", "--as", "pat")] == [task["id"]]


def test_complete_by_non_member_is_forbidden(sqlite_url):
    task = deployed_instance(sqlite_url)["tasks"][0]
    olga = ok_json(sqlite_url, "users", "add", "olga")
    assert olga["groups"] == []
    message = fails(sqlite_url, "complete", str(task["id"]), "--as", "olga", "--data", '{"doc": "x"}')
    assert "not a member" in message
    assert "project_manager" in message
    assert ok_json(sqlite_url, "show", str(task["instance_id"]))["tasks"][0]["id"] == task["id"]


def test_second_completion_is_a_conflict(sqlite_url):
    task = deployed_instance(sqlite_url)["tasks"][0]
    ok_json(sqlite_url, "complete", str(task["id"]), "--as", "pat", "--data", '{"doc": "x"}')
    message = fails(sqlite_url, "complete", str(task["id"]), "--as", "pat", "--data", '{"doc": "y"}')
    assert "already completed" in message
    assert ok_json(sqlite_url, "show", str(task["instance_id"]))["data"]["doc"] == "x"


def test_unknown_user_in_as(sqlite_url):
    task = deployed_instance(sqlite_url)["tasks"][0]
    assert "ghost" in fails(sqlite_url, "tasks", "--as", "ghost")
    assert "ghost" in fails(sqlite_url, "complete", str(task["id"]), "--as", "ghost")
    assert "ghost" in fails(sqlite_url, "claim", str(task["id"]), "--as", "ghost")
    assert "ghost" in fails(sqlite_url, "start", "bench_approval", "--as", "ghost")
    assert len(ok_json(sqlite_url, "instances")) == 1


# -- 3. validate / deploy of a broken file ------------------------------------------------------
@pytest.fixture
def broken_bpmn(tmp_path) -> tuple[Path, int]:
    """The approval process with flow f6 pointing at an element that does not exist."""
    text = Path(APPROVAL).read_text()
    broken = text.replace('targetRef="end_accepted"', 'targetRef="nowhere"')
    assert broken != text
    path = tmp_path / "broken.bpmn"
    path.write_text(broken)
    line = next(n for n, content in enumerate(broken.splitlines(), 1) if 'id="f6"' in content)
    return path, line


def test_validate_broken_file(sqlite_url, broken_bpmn):
    path, line = broken_bpmn
    result = run(sqlite_url, "validate", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert any(entry.startswith(f"broken.bpmn:{line}: f6: ") for entry in lines), lines
    assert lines[-1].startswith("error: ")
    assert "nothing was deployed" in lines[-1]


def test_validate_broken_file_json(sqlite_url, broken_bpmn):
    path, line = broken_bpmn
    result = run(sqlite_url, "validate", str(path), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert isinstance(report["problems"], list) and report["problems"]
    assert any(p.startswith(f"broken.bpmn:{line}: f6: ") for p in report["problems"]), report


def test_deploy_broken_file_stores_nothing(sqlite_url, broken_bpmn):
    path, line = broken_bpmn
    result = run(sqlite_url, "deploy", str(path), "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert any(entry.startswith(f"broken.bpmn:{line}: f6: ") for entry in result.stderr.splitlines())
    assert ok_json(sqlite_url, "definitions") == []


def test_validate_good_file(sqlite_url):
    result = ok(sqlite_url, "validate", APPROVAL)
    # the benchmark's user tasks have no forms on purpose: warnings, not problems
    assert result.stdout.strip() == "ok: 1 process(es): bench_approval (3 warning(s))"
    report = ok_json(sqlite_url, "validate", APPROVAL)
    assert report["valid"] is True and report["processes"] == ["bench_approval"]
    assert all("without a form" in w for w in report["warnings"]) and len(report["warnings"]) == 3
    assert ok_json(sqlite_url, "definitions") == []  # validate deploys nothing


def test_validate_missing_file(sqlite_url, tmp_path):
    assert "no such file" in fails(sqlite_url, "validate", str(tmp_path / "absent.bpmn"))


# -- 4. suspend, resume, terminate --------------------------------------------------------------
def test_suspend_resume_terminate(sqlite_url):
    instance = deployed_instance(sqlite_url)
    instance_id, task_id = str(instance["id"]), str(instance["tasks"][0]["id"])

    assert ok_json(sqlite_url, "suspend", instance_id)["status"] == "suspended"
    assert "suspended" in fails(sqlite_url, "complete", task_id, "--as", "pat", "--data", '{"doc": "x"}')
    assert "suspended" in fails(sqlite_url, "suspend", instance_id)
    [listed] = ok(sqlite_url, "tasks", "--as", "pat").stdout.splitlines()
    assert listed.endswith(f"instance {instance_id} (suspended)")  # still listed, marked
    assert ok_json(sqlite_url, "tasks", "--as", "pat")[0]["instance_status"] == "suspended"

    resumed = ok_json(sqlite_url, "resume", instance_id)
    assert resumed["status"] not in ("suspended", "terminated")
    assert [str(t["id"]) for t in resumed["tasks"]] == [task_id]
    assert not ok(sqlite_url, "tasks", "--as", "pat").stdout.rstrip().endswith("(suspended)")
    fails(sqlite_url, "resume", instance_id)  # not suspended any more

    terminated = ok_json(sqlite_url, "terminate", instance_id)
    assert terminated["status"] == "terminated"
    assert terminated["tasks"] == []
    assert ok_json(sqlite_url, "tasks") == []
    assert ok_json(sqlite_url, "tasks", "--as", "pat") == []
    assert ok_json(sqlite_url, "show", instance_id)["status"] == "terminated"
    assert ok_json(sqlite_url, "instances", "--status", "terminated")[0]["id"] == instance["id"]
    types = [e["type"] for e in ok_json(sqlite_url, "show", instance_id, "--history")["history"]]
    assert is_subsequence(["instance_suspended", "instance_resumed", "instance_terminated"], types), types


def test_instance_actions_on_unknown_instance(sqlite_url):
    for action in ("suspend", "resume", "terminate"):
        assert "999" in fails(sqlite_url, action, "999")


# -- 5. users and passwords ---------------------------------------------------------------------
def stored_hash(url: str, name: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT password_hash FROM users WHERE name = :name"), {"name": name}).scalar()
    finally:
        engine.dispose()


def test_add_user_with_password_from_stdin(sqlite_url):
    user = ok_json(
        sqlite_url, "users", "add", "pam", "--group", "project_manager", "--password-stdin", input="s3cret-password\n"
    )
    assert user["name"] == "pam"
    assert user["groups"] == ["project_manager"]
    assert "password" not in json.dumps(user)
    hashed = stored_hash(sqlite_url, "pam")
    assert hashed.startswith("$argon2")
    assert "s3cret-password" not in hashed


def test_add_user_with_short_password_fails(sqlite_url):
    assert "8 characters" in fails(sqlite_url, "users", "add", "shorty", "--password-stdin", input="short\n")
    assert [u["name"] for u in ok_json(sqlite_url, "users", "list")] == []


def test_add_user_twice_fails(sqlite_url):
    ok_json(sqlite_url, "users", "add", "pat", "--group", "project_manager")
    assert "already exists" in fails(sqlite_url, "users", "add", "pat")
    users = ok_json(sqlite_url, "users", "list")
    assert [(u["name"], u["groups"]) for u in users] == [("pat", ["project_manager"])]


def test_users_list_marks_administrators_and_users_without_a_group(sqlite_url):
    ok_json(sqlite_url, "users", "add", "pat", "--group", "project_manager", "--group", "sponsor")
    ok_json(sqlite_url, "users", "add", "admin", "--admin")
    lines = ok(sqlite_url, "users", "list").stdout.splitlines()
    assert "pat              project_manager, sponsor" in lines
    assert "admin            -  (admin)" in lines


def test_add_user_with_invalid_name_fails(sqlite_url):
    assert "invalid" in fails(sqlite_url, "users", "add", "bad name")


# -- 6. incidents and settings ------------------------------------------------------------------
def test_incidents_empty_on_fresh_database(sqlite_url):
    assert ok_json(sqlite_url, "incidents") == []
    assert ok(sqlite_url, "incidents").stdout.strip() == "no incidents"


def test_settings_lists_database_url(sqlite_url):
    result = ok(sqlite_url, "settings")
    assert "SDF_DATABASE_URL" in result.stdout
    assert "SDF_SCRIPT_TIME_LIMIT (default: 2.0)" in result.stdout


# -- 7. bench -----------------------------------------------------------------------------------
def test_bench_json(sqlite_url):
    report = ok_json(sqlite_url, "bench", "--instances", "20", "--loops", "5,10", "--no-background")
    sqlite = report["sqlite"]
    for key in ("raw_per_s", "durable_per_s", "ratio"):
        assert isinstance(sqlite[key], float) and sqlite[key] > 0, (key, sqlite)
    loops = sqlite["loop_ms_per_completion"]
    assert set(loops) == {"5", "10"}
    assert all(value > 0 for value in loops.values())
    assert "postgresql" not in report
