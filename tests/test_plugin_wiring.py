"""Plugins wired into the engine: auto-assignment, lifecycle events, the http_request operator."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine import jobs
from engine.hookspecs import hookimpl
from engine.plugins import create_plugin_manager
from engine.runtime import Engine
from engine.settings import load_settings
from tests.conftest import BPMN, add_team, only_task


def engine_with(database_url, *plugins):
    return Engine(
        load_settings(environ={}, database_url=database_url), plugins=create_plugin_manager(extra=list(plugins))
    )


# -- assignment ---------------------------------------------------------------------------------
@pytest.fixture
def engineers(team):
    team.add_user("ana", groups_=["engineer"], skills={"python": 5, "postgres": 3})
    team.add_user("ben", groups_=["engineer"], skills={"python": 2, "postgres": 4})
    team.add_user("cyd", groups_=["engineer"], skills={"python": 5})  # lacks postgres
    team.deploy([BPMN / "assign.bpmn"])
    return team


def test_task_goes_to_the_qualified_member_with_least_work(engineers):
    first = only_task(engineers.start("fix_issue", {}))
    assert (first["assignee"], first["status"]) == ("ana", "claimed")  # tie on workload: higher skill total
    second = only_task(engineers.start("fix_issue", {}))
    assert second["assignee"] == "ben"  # ana has one open task now
    third = only_task(engineers.start("fix_issue", {}))
    assert third["assignee"] == "ana"
    assert "cyd" not in {first["assignee"], second["assignee"], third["assignee"]}
    events = [e for e in engineers.history(first["instance_id"]) if e["type"] == "task_assigned"]
    assert events[0]["data"]["assignee"] == "ana" and events[0]["actor"] == "engine"


def test_nobody_qualified_leaves_the_task_open_for_the_group(team):
    team.add_user("cyd", groups_=["engineer"], skills={"python": 5})
    team.deploy([BPMN / "assign.bpmn"])
    task = only_task(team.start("fix_issue", {}))
    assert (task["assignee"], task["status"]) == (None, "open")


class PreferEli:
    @hookimpl
    def choose_assignee(self, task, candidates):
        return "eli"


class PicksAnOutsider:
    @hookimpl
    def choose_assignee(self, task, candidates):
        return "casey"  # a client, not an engineer


def test_a_plugin_overrides_the_built_in_choice(database_url):
    engine = engine_with(database_url, PreferEli())
    try:
        add_team(engine)
        engine.deploy([BPMN / "assign.bpmn"])
        assert only_task(engine.start("fix_issue", {}))["assignee"] == "eli"
    finally:
        engine.close()


def test_a_plugin_cannot_assign_outside_the_candidate_group(database_url):
    engine = engine_with(database_url, PicksAnOutsider())
    try:
        add_team(engine)
        engine.deploy([BPMN / "assign.bpmn"])
        assert only_task(engine.start("fix_issue", {}))["assignee"] is None
    finally:
        engine.close()


# -- lifecycle events ---------------------------------------------------------------------------
class Recorder:
    def __init__(self):
        self.events = []

    @hookimpl
    def instance_started(self, instance):
        self.events.append(("instance_started", instance["process_id"]))

    @hookimpl
    def task_created(self, task):
        self.events.append(("task_created", task["element_id"]))

    @hookimpl
    def task_completed(self, task, data, actor):
        self.events.append(("task_completed", task["element_id"], actor, data))

    @hookimpl
    def instance_completed(self, instance):
        self.events.append(("instance_completed", instance["data"]["approved"]))

    @hookimpl
    def incident_raised(self, incident):
        self.events.append(("incident_raised", incident["element_id"]))


class Broken:
    @hookimpl
    def task_completed(self, task, data, actor):
        raise RuntimeError("mail server down")


def test_lifecycle_events_reach_plugins_after_commit(database_url):
    recorder = Recorder()
    engine = engine_with(database_url, recorder, Broken())
    try:
        add_team(engine)
        engine.deploy(["engine/bench/approval.bpmn"])
        instance = engine.start("bench_approval", {})
        instance = engine.complete(only_task(instance)["id"], "pat", {"doc": "x"})
        instance = engine.complete(only_task(instance)["id"], "quinn", {"approved": False})
        assert instance["status"] == "completed"  # the broken plugin did not stop anything
        assert recorder.events == [
            ("instance_started", "bench_approval"),
            ("task_created", "submit"),
            ("task_created", "review"),
            ("task_completed", "submit", "pat", {"doc": "x"}),
            ("instance_completed", False),
            ("task_completed", "review", "quinn", {"approved": False}),
        ]
        failures = [e for e in engine.history(instance["id"]) if e["type"] == "plugin_failed"]
        assert len(failures) == 2 and "mail server down" in failures[0]["data"]["error"]
    finally:
        engine.close()


def test_no_event_for_a_rolled_back_change(database_url):
    recorder = Recorder()
    engine = engine_with(database_url, recorder)
    try:
        add_team(engine)
        engine.deploy([BPMN / "review_loop.bpmn"])
        task = only_task(engine.start("review_loop", {}))
        recorder.events.clear()
        with pytest.raises(Exception):  # noqa: B017 - the form error; any error must not emit
            engine.complete(task["id"], "pat", {"title": "x"})
        assert recorder.events == []
    finally:
        engine.close()


# -- http_request ---------------------------------------------------------------------------------
class Api:
    """A tiny HTTP API on loopback: POST /tickets fails ``failures`` times with 503, then 201."""

    def __init__(self, failures=0, status=201):
        self.failures, self.status, self.requests = failures, status, []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.requests.append((self.path, body, self.headers["Idempotency-Key"]))
                code = 503 if len(api.requests) <= api.failures else api.status
                payload = json.dumps({"id": 42, "title": body["title"]}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    server = Api()
    yield server
    server.close()


def test_http_request_posts_json_and_stores_the_response(team, api):
    team.deploy([BPMN / "http_call.bpmn"])
    instance = team.start("http_call", {"base_url": api.url, "title": "Broken login"})
    assert jobs.run_due(team) == 1
    after = team.get_instance(instance["id"])
    assert after["data"]["response"]["status"] == 201
    assert after["data"]["response"]["json"] == {"id": 42, "title": "Broken login"}
    assert api.requests[0][:2] == ("/tickets", {"title": "Broken login"})
    assert only_task(after)["element_id"] == "check"


def test_http_5xx_is_retried_with_the_same_idempotency_key(team, api):
    api.failures = 2
    team.deploy([BPMN / "http_call.bpmn"])
    instance = team.start("http_call", {"base_url": api.url, "title": "Retry me"})
    for _ in range(3):
        jobs.run_due(team)
    assert len(api.requests) == 3 and len({r[2] for r in api.requests}) == 1
    assert only_task(team.get_instance(instance["id"]))["element_id"] == "check"


def test_http_404_is_a_business_error_caught_by_the_boundary_event(team, api):
    api.status = 404
    team.deploy([BPMN / "http_call.bpmn"])
    instance = team.start("http_call", {"base_url": api.url, "title": "Nowhere"})
    jobs.run_due(team)
    assert only_task(team.get_instance(instance["id"]))["element_id"] == "handle_missing"
    assert len(api.requests) == 1  # not retried


def test_plugins_command_lists_built_ins(sqlite_url):
    from tests.test_cli import ok_json

    rows = {p["name"]: p for p in ok_json(sqlite_url, "plugins")}
    assert rows["plugins.http"]["operators"] == ["http_request"]
    assert rows["plugins.assignment"]["hooks"] == ["choose_assignee"]
    assert rows["plugins.calendar"]["hooks"] == ["register_script_functions"]
    assert all(p["builtin"] for name, p in rows.items() if name.startswith("plugins."))
