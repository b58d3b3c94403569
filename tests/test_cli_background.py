"""The background commands: ``sdf timers``, ``sdf worker --once``, ``sdf jobs``."""

from __future__ import annotations

import time

from tests.conftest import BPMN
from tests.test_cli import ok, ok_json


def test_worker_once_fires_due_timers_and_lists_them_before(sqlite_url):
    ok(sqlite_url, "users", "add", "eli", "--group", "engineer")
    ok(sqlite_url, "deploy", str(BPMN / "sla.bpmn"))
    data = '{"cool_off": "PT0.2S", "warn_after": "PT1H", "breach_after": "PT2H"}'
    instance = ok_json(sqlite_url, "start", "sla", "--data", data)
    waiting = ok_json(sqlite_url, "timers")
    assert [t["instance_id"] for t in waiting] == [instance["id"]]
    time.sleep(0.3)
    result = ok(sqlite_url, "worker", "--once")
    assert "fired timers of 1 instance(s)" in result.stdout
    shown = ok_json(sqlite_url, "show", str(instance["id"]))
    assert [t["element_id"] for t in shown["tasks"]] == ["resolve"]


def test_jobs_lists_service_calls(sqlite_url):
    """No operator is installed from the command line yet, so the deploy is refused and no job exists."""
    assert ok_json(sqlite_url, "jobs") == []
    from tests.test_cli import run

    result = run(sqlite_url, "deploy", str(BPMN / "crm_lookup.bpmn"))
    assert result.exit_code == 1
    assert "unknown operator 'crm_lookup'" in result.stderr


def test_commands_before_init_do_not_create_a_database(tmp_path):
    from tests.test_cli import run

    path = tmp_path / "nothing-here.db"
    result = run(f"sqlite:///{path}", "tasks")
    assert result.exit_code == 1
    assert "run `sdf init`" in result.stderr
    assert not path.exists()


def test_empty_password_on_stdin_is_refused(sqlite_url):
    from tests.test_cli import fails, ok_json

    assert "no password was given" in fails(sqlite_url, "users", "add", "dave", "--password-stdin", input="")
    assert ok_json(sqlite_url, "users", "list") == []


def test_a_command_that_stops_an_instance_warns_on_stderr(sqlite_url, tmp_path):
    from tests import processes
    from tests.test_cli import run

    ok(sqlite_url, "users", "add", "pat", "--group", "project_manager")
    path = processes.write(tmp_path, "div.bpmn", processes.script_then_task("div", "c = 1 / divisor"))
    ok(sqlite_url, "deploy", str(path))
    instance = ok_json(sqlite_url, "start", "div")
    result = run(sqlite_url, "complete", str(instance["tasks"][0]["id"]), "--as", "pat", "--data", '{"divisor": 0}')
    assert result.exit_code == 0
    assert result.stderr.startswith(f"warning: instance {instance['id']} stopped: incident")
