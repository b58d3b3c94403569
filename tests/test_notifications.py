"""Notifications: the ``notify`` operator, Jinja templates and the email/webhook/slack channels.

Every channel is exercised against a real server on loopback started by the test: an SMTP
server (aiosmtpd) and HTTP servers that verify the Standard Webhooks signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from engine import jobs
from engine.errors import ConfigurationError
from engine.hookspecs import hookimpl
from engine.operators import BusinessError
from engine.plugins import create_plugin_manager
from engine.runtime import Engine
from engine.schema import outbox
from engine.settings import load_settings
from plugins import notify
from tests.conftest import BPMN, add_team, free_port, only_task

SECRET = "whsec_" + base64.b64encode(b"a shared secret of thirty-two b!").decode()
STATUS = {
    "project": "Apollo",
    "period": "week 12",
    "status": "amber",
    "summary": "On track, except single sign-on.",
    "completed": ["Login page", "Password reset"],
    "next_steps": ["Single sign-on"],
    "risks": [{"title": "SSO vendor late", "band": "high"}],
}


def job_row(engine, instance_id):
    with engine.db.read() as conn:
        [row] = conn.execute(sa.select(outbox).where(outbox.c.instance_id == instance_id)).all()
    return row


def approve_and_notify(engine, channel, to, template="status_report", notice=None):
    """Start the process, approve (which asks for the notification); return the instance id."""
    data = {"channel": channel, "to": to, "template": template, "notice": notice or STATUS}
    instance = engine.start("notify_demo", data)
    after = engine.complete(only_task(instance)["id"], "pat", {})
    assert after["tasks"] == []  # waiting for the notification job
    return instance["id"]


@pytest.fixture
def notifying(team):
    team.deploy([BPMN / "notify.bpmn"])
    return team


# -- SMTP ---------------------------------------------------------------------------------------


def test_email_arrives_with_recipients_subject_and_rendered_body(notifying, smtp):
    import email

    instance_id = approve_and_notify(notifying, "email", "client@acme.example, pm@sdf.example")
    assert jobs.run_due(notifying) == 1
    [envelope] = smtp.envelopes
    assert envelope.rcpt_tos == ["client@acme.example", "pm@sdf.example"]
    assert envelope.mail_from == "delivery@sdf.example"
    mail = email.message_from_bytes(envelope.content)
    assert mail["Subject"] == "[AMBER] Status report: Apollo (week 12)"
    assert mail["To"] == "client@acme.example, pm@sdf.example"
    row = job_row(notifying, instance_id)
    assert mail["Message-ID"] == f"<{row.idempotency_key}@sdf.example>"
    body = mail.get_payload(decode=True).decode().replace("\r\n", "\n")
    assert "Overall status: AMBER" in body
    assert "  - Password reset\n" in body and "  - SSO vendor late [high]\n" in body
    after = notifying.get_instance(instance_id)
    assert only_task(after)["element_id"] == "after"
    assert after["data"]["delivery"] == {
        "delivered": True,
        "channel": "email",
        "to": ["client@acme.example", "pm@sdf.example"],
        "subject": "[AMBER] Status report: Apollo (week 12)",
    }
    assert (row.status, row.attempts, row.last_error) == ("done", 1, None)


def test_a_failing_channel_never_fails_the_process(notifying, monkeypatch):
    monkeypatch.setenv("SDF_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SDF_SMTP_PORT", str(free_port()))  # nothing listens there
    instance_id = approve_and_notify(notifying, "email", ["pm@sdf.example"])
    for _ in range(3):  # retries="2": three attempts, no backoff
        assert jobs.run_due(notifying) == 1
    assert jobs.run_due(notifying) == 0
    after = notifying.get_instance(instance_id)
    assert only_task(after)["element_id"] == "after"
    assert notifying.list_incidents(instance_id=instance_id) == []
    assert after["data"]["delivery"]["delivered"] is False
    assert "ConnectionRefusedError" in after["data"]["delivery"]["error"]
    row = job_row(notifying, instance_id)
    assert (row.status, row.attempts, row.max_attempts) == ("done", 3, 3)
    assert row.last_error.startswith("ConnectionRefusedError")


# -- webhooks -----------------------------------------------------------------------------------
class Receiver:
    """An HTTP endpoint on loopback that records requests and answers from a script of statuses.

    With a ``secret`` it verifies the Standard Webhooks signature itself (401 when wrong).
    """

    def __init__(self, statuses=(200,), secret: bytes | None = None):
        self.statuses, self.secret, self.requests = list(statuses), secret, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = receiver.verify(headers, body) if receiver.secret else None
                receiver.requests.append(
                    {"path": self.path, "headers": headers, "json": json.loads(body), "ok": verified}
                )
                code = 401 if verified is False else receiver.next_status()
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next_status(self) -> int:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def verify(self, headers: dict, body: bytes) -> bool:
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        expected = base64.b64encode(hmac.new(self.secret, signed, hashlib.sha256).digest()).decode()
        return any(sig == f"v1,{expected}" for sig in headers.get("webhook-signature", "").split())

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made = []

    def make(*args, **kwargs):
        made.append(Receiver(*args, **kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def test_webhook_is_signed_and_retried_with_the_same_id(notifying, receivers, monkeypatch):
    monkeypatch.setenv("SDF_WEBHOOK_SECRET", SECRET)
    hook = receivers(statuses=(503, 200), secret=base64.b64decode(SECRET.removeprefix("whsec_")))
    instance_id = approve_and_notify(
        notifying,
        "webhook",
        [hook.url + "/events"],
        template="escalation",
        notice={"item": "Ticket 42", "level": 2, "project": "Apollo"},
    )
    assert jobs.run_due(notifying) == 1
    assert job_row(notifying, instance_id).status == "pending"  # 503: retried
    assert jobs.run_due(notifying) == 1
    first, second = hook.requests
    assert first["ok"] is True and second["ok"] is True  # the receiver verified both signatures
    key = job_row(notifying, instance_id).idempotency_key
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == key
    assert second["headers"]["webhook-timestamp"].isdigit()
    assert second["json"]["type"] == "escalation"
    assert second["json"]["data"] == {"item": "Ticket 42", "level": 2, "project": "Apollo"}
    assert second["json"]["subject"] == "ESCALATION (level 2): Ticket 42 on Apollo"
    assert '"Ticket 42" on Apollo needs your attention.' in second["json"]["body"]
    after = notifying.get_instance(instance_id)
    assert after["data"]["delivery"]["delivered"] is True
    assert only_task(after)["element_id"] == "after"
    row = job_row(notifying, instance_id)
    assert (row.status, row.attempts, row.last_error) == (
        "done",
        2,
        f"ConnectionError: POST {hook.url}/events answered 503",
    )


def test_webhook_4xx_is_permanent_and_the_process_goes_on(notifying, receivers, monkeypatch):
    monkeypatch.setenv("SDF_WEBHOOK_SECRET", "plain secret")
    hook = receivers(statuses=(410,), secret=b"plain secret")
    instance_id = approve_and_notify(notifying, "webhook", hook.url)
    assert jobs.run_due(notifying) == 1
    assert jobs.run_due(notifying) == 0  # not retried
    assert len(hook.requests) == 1 and hook.requests[0]["ok"] is True
    after = notifying.get_instance(instance_id)
    assert after["data"]["delivery"]["delivered"] is False and after["data"]["delivery"]["code"] == "HTTP_410"
    assert only_task(after)["element_id"] == "after"
    row = job_row(notifying, instance_id)
    assert row.attempts == 1 and row.last_error.startswith("HTTP_410")  # the failure stays visible


def test_signature_matches_the_standard_webhooks_example():
    # the example of the Standard Webhooks specification (and its reference libraries)
    secret = notify.webhook_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    assert notify.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


# -- slack ---------------------------------------------------------------------------------------
def test_slack_message_through_an_incoming_webhook(notifying, receivers):
    chat = receivers(statuses=(200,))
    instance_id = approve_and_notify(
        notifying,
        "slack",
        chat.url + "/services/T000/B000/XXXX",
        template="task_assigned",
        notice={"task_title": "Review the contract", "assignee": "pat", "due_at": "2026-12-01"},
    )
    assert jobs.run_due(notifying) == 1
    [request] = chat.requests
    assert request["path"] == "/services/T000/B000/XXXX"
    text = request["json"]["text"]
    assert list(request["json"]) == ["text"]
    assert text.startswith("New task for you: Review the contract\nHello pat,")
    assert "Due: 2026-12-01" in text
    assert notifying.get_instance(instance_id)["data"]["delivery"]["delivered"] is True


# -- templates ------------------------------------------------------------------------------------
def test_unknown_template_is_a_clear_incident(notifying):
    instance_id = approve_and_notify(notifying, "email", "pm@sdf.example", template="weekly_digest")
    assert jobs.run_due(notifying) == 1
    [incident] = notifying.list_incidents(instance_id=instance_id)
    assert "NOTIFY_TEMPLATE" in incident["message"]
    assert "unknown template 'weekly_digest'" in incident["message"]
    assert "status_report" in incident["message"]  # the available ones are listed


def test_every_shipped_template_renders_with_a_subject():
    assert set(notify.available_templates()) >= {
        "status_report",
        "update_email",
        "task_assigned",
        "escalation",
        "client_report",
    }
    samples = {
        "status_report": STATUS,
        "update_email": {"project": "Apollo", "changes": ["Go-live moves to June"], "action_needed": "approve"},
        "task_assigned": {"task_title": "Review the contract"},
        "escalation": {"item": "Ticket 42"},
        "client_report": {"project": "Apollo", "client": "ACME", "hours_used": 30, "hours_budget": 40},
    }
    for name, data in samples.items():
        subject, body = notify.render(name, data)
        assert subject and body.strip() and "{{" not in body, name
    assert notify.render("client_report", samples["client_report"])[1].count("30 of 40 hours used (75%)") == 1


def test_template_errors_are_business_errors():
    with pytest.raises(BusinessError, match="unknown template 'nope'"):
        notify.render("nope", {})
    with pytest.raises(BusinessError, match="invalid template name"):
        notify.render("../secrets", {})
    with pytest.raises(BusinessError, match="'project' is undefined"):
        notify.render("status_report", {})


def test_templates_dir_overrides_and_adds(tmp_path, monkeypatch):
    (tmp_path / "status_report.txt.j2").write_text("Subject: Ours: {{ project }}\n\nShort: {{ status }}\n")
    (tmp_path / "kickoff.txt.j2").write_text("Subject: Kick-off\nWelcome to {{ project }}.\n")
    monkeypatch.setenv("SDF_TEMPLATES_DIR", str(tmp_path))
    assert notify.render("status_report", {"project": "Apollo", "status": "green"}) == (
        "Ours: Apollo",
        "Short: green\n",
    )
    assert notify.render("kickoff", {"project": "Apollo"}) == ("Kick-off", "Welcome to Apollo.\n")
    assert notify.render("escalation", {"item": "x"})[0] == "ESCALATION: x"  # built-ins still there


def test_templates_are_sandboxed():
    # data comes from the process: the sandbox refuses access to Python internals
    env = notify._environment(("/nonexistent",))
    with pytest.raises(Exception, match="unsafe|not safely"):
        env.from_string("{{ f.__globals__ }}").render(f=notify.render)


# -- the hook -------------------------------------------------------------------------------------
class Memo:
    """A third-party channel contributed through register_notification_channels."""

    def __init__(self):
        self.sent = []

    @hookimpl
    def register_notification_channels(self, register):
        register("memo", self.send, description="keeps messages in memory")

    def send(self, message, call):
        self.sent.append((message, call.attempt, call.max_attempts))


class MemoAgain:
    @hookimpl
    def register_notification_channels(self, register):
        register("memo", lambda message, call: None)


def engine_with(database_url, *plugins):
    return Engine(
        load_settings(environ={}, database_url=database_url), plugins=create_plugin_manager(extra=list(plugins))
    )


def test_a_plugin_contributes_a_channel(database_url):
    memo = Memo()
    engine = engine_with(database_url, memo)
    try:
        add_team(engine)
        assert {"email", "webhook", "slack", "memo"} <= engine.channels.names()
        assert engine.channels.get("memo").provider == "Memo"
        engine.deploy([BPMN / "notify.bpmn"])
        instance_id = approve_and_notify(
            engine,
            "memo",
            "team-a, team-b",
            template="update_email",
            notice={"project": "Apollo", "headline": "go-live moved"},
        )
        assert jobs.run_due(engine) == 1
        [(message, attempt, max_attempts)] = memo.sent
        assert (attempt, max_attempts) == (1, 3)
        assert message["channel"] == "memo" and message["to"] == ["team-a", "team-b"]
        assert message["subject"] == "Update on Apollo: go-live moved"
        assert message["template"] == "update_email" and message["data"]["project"] == "Apollo"
        assert only_task(engine.get_instance(instance_id))["element_id"] == "after"
    finally:
        engine.close()


def test_a_channel_registered_twice_is_refused(database_url):
    with pytest.raises(ConfigurationError, match="notification channel 'memo' is provided by both Memo and MemoAgain"):
        engine_with(database_url, Memo(), MemoAgain())


def test_unknown_channel_names_the_available_ones(notifying):
    instance_id = approve_and_notify(notifying, "pigeon", "roof")
    jobs.run_due(notifying)
    [incident] = notifying.list_incidents(instance_id=instance_id)
    assert "unknown channel 'pigeon' (available: email, slack, webhook)" in incident["message"]
