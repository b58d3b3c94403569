"""Built-in notifications: the ``notify`` operator, Jinja templates and three channels.

A BPMN service task with the operator ``notify`` renders a communication template and hands
the message to a notification channel, inside the background job that runs the task, so
retries, backoff and the attempt count come from the outbox job row.

Parameters: ``channel`` (``email``, ``webhook``, ``slack`` or one a plugin registers with
``register_notification_channels``), ``to`` (a list or a comma-separated string: addresses
or URLs), ``template`` (a name without extension: ``plugins/templates/<name>.txt.j2``, or the
same file in ``SDF_TEMPLATES_DIR``, which wins), ``data`` (a dict for the template; default:
all the parameters) and optionally ``subject`` (overrides the template's subject).

A template's first line ``Subject: ...`` gives the subject; the rest is the body. Templates
are rendered in Jinja's sandbox with strict undefined variables (use ``| default(...)`` for
optional ones).

Failures never stop the process that asked for the notification:

* a channel that raises is retried with backoff; on the last attempt the operator returns
  ``{"delivered": False, "error": ...}`` and the process moves on (the job row keeps the
  attempts and the last error);
* a channel that raises :class:`engine.operators.BusinessError` (a webhook answering 4xx, an
  SMTP server refusing every recipient) fails for good at once: ``delivered`` is False, with
  the ``code``.

Mistakes in the model itself (unknown channel or template, a template error, no recipients)
raise a ``BusinessError`` (``NOTIFY_CHANNEL``, ``NOTIFY_TEMPLATE``, ``NOTIFY_RECIPIENTS``):
uncaught, that is an incident naming the problem.

Channel settings are read from the environment at send time: ``SDF_SMTP_HOST`` (localhost),
``SDF_SMTP_PORT`` (25), ``SDF_SMTP_USER``/``SDF_SMTP_PASSWORD`` (optional login),
``SDF_SMTP_FROM`` (sdf@localhost), ``SDF_SMTP_STARTTLS`` (0/1), ``SDF_WEBHOOK_SECRET``
(Standard Webhooks signing secret, ``whsec_<base64>`` or a plain string).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import smtplib
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from engine.hookspecs import hookimpl
from engine.operators import BusinessError, CompletedWithError

TEMPLATES_DIR = Path(__file__).parent / "templates"
TEMPLATE_SUFFIX = ".txt.j2"
TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
HTTP_TIMEOUT = 10.0
SMTP_TIMEOUT = 30.0
RETRYABLE_4XX = {408, 425, 429}  # timeouts and rate limits: worth another attempt


# -- hooks ---------------------------------------------------------------------------------------
@hookimpl(trylast=True)
def register_operators(register):
    register("notify", notify, description="Notification from a template: channel, to, template, data, subject")


@hookimpl(trylast=True)
def register_notification_channels(register):
    register("email", send_email, description="Email over SMTP (SDF_SMTP_*); to: addresses")
    register("webhook", send_webhook, description="Signed JSON POST (Standard Webhooks, SDF_WEBHOOK_SECRET); to: URLs")
    register("slack", send_slack, description="Slack-compatible incoming webhook {'text': ...}; to: URLs")


# -- the operator --------------------------------------------------------------------------------
def notify(params: dict, call) -> dict:
    """Render the template and deliver it; a delivery failure on the last attempt is returned, not raised."""
    channel_name = str(params.get("channel") or "").strip()
    channel = _channel(call, channel_name)
    recipients = recipients_of(params.get("to"))
    if not recipients:
        raise BusinessError("NOTIFY_RECIPIENTS", f"notify via {channel_name!r}: no recipients in 'to'")
    template = str(params.get("template") or "").strip()
    data = params.get("data")
    if data is None:
        data = dict(params)
    if not isinstance(data, dict):
        raise BusinessError("NOTIFY_TEMPLATE", f"notify: 'data' must be a dict, got {type(data).__name__}")
    subject, body = render(template, data)
    if params.get("subject"):
        subject = str(params["subject"])
    message = {
        "channel": channel_name,
        "to": recipients,
        "subject": subject,
        "body": body,
        "template": template,
        "data": data,
    }
    try:
        channel.func(message, call)
    except BusinessError as exc:  # permanent: no retry, and the process goes on
        error = f"{exc.code}: {exc}"
        failed = {"delivered": False, "channel": channel_name, "to": recipients, "code": exc.code, "error": str(exc)}
        raise CompletedWithError(failed, error) from exc
    except Exception as exc:
        if call.attempt < call.max_attempts:
            raise  # retried with backoff by the job
        error = f"{type(exc).__name__}: {exc}"
        raise CompletedWithError(
            {"delivered": False, "channel": channel_name, "to": recipients, "error": error}, error
        ) from exc
    return {"delivered": True, "channel": channel_name, "to": recipients, "subject": subject}


def _channel(call, name: str):
    channels = getattr(call, "channels", None)
    names = sorted(channels.names()) if channels is not None else []
    if not name or name not in names:
        raise BusinessError(
            "NOTIFY_CHANNEL", f"notify: unknown channel {name!r} (available: {', '.join(names) or 'none'})"
        )
    return channels.get(name)


def recipients_of(value) -> list[str]:
    """``to`` as a list: a list/tuple, or a comma-separated string; blanks dropped."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


# -- templates -----------------------------------------------------------------------------------
def template_dirs() -> list[Path]:
    """Where templates are looked up, first match wins: ``SDF_TEMPLATES_DIR``, then the built-ins."""
    override = os.environ.get("SDF_TEMPLATES_DIR")
    return ([Path(override)] if override else []) + [TEMPLATES_DIR]


def available_templates() -> list[str]:
    return sorted(
        {p.name[: -len(TEMPLATE_SUFFIX)] for d in template_dirs() if d.is_dir() for p in d.glob(f"*{TEMPLATE_SUFFIX}")}
    )


@lru_cache(maxsize=8)
def _environment(dirs: tuple[str, ...]) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(list(dirs)),
        autoescape=False,  # plain text: emails and chat messages, not HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, data: dict) -> tuple[str, str]:
    """(subject, body) of a template rendered with ``data``; problems raise ``NOTIFY_TEMPLATE``."""
    if not TEMPLATE_NAME.match(template or ""):
        raise BusinessError("NOTIFY_TEMPLATE", f"notify: invalid template name {template!r}")
    env = _environment(tuple(str(d) for d in template_dirs()))
    try:
        text = env.get_template(template + TEMPLATE_SUFFIX).render(**{"data": data, **data})
    except jinja2.TemplateNotFound:
        raise BusinessError(
            "NOTIFY_TEMPLATE",
            f"notify: unknown template {template!r} (available: {', '.join(available_templates())})",
        ) from None
    except jinja2.TemplateError as exc:
        raise BusinessError("NOTIFY_TEMPLATE", f"notify: template {template!r} failed: {exc}") from None
    return split_subject(text)


def split_subject(text: str) -> tuple[str, str]:
    first, _, rest = text.partition("\n")
    if first.lower().startswith("subject:"):
        return first.split(":", 1)[1].strip(), rest.lstrip("\n").rstrip() + "\n"
    return "", text.rstrip() + "\n"


# -- email ---------------------------------------------------------------------------------------
def send_email(message: dict, call) -> None:
    host = os.environ.get("SDF_SMTP_HOST") or "localhost"
    port = int(os.environ.get("SDF_SMTP_PORT") or 25)
    sender = os.environ.get("SDF_SMTP_FROM") or "sdf@localhost"
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(message["to"])
    mail["Subject"] = message["subject"]
    domain = sender.rpartition("@")[2] or "localhost"
    mail["Message-ID"] = f"<{call.idempotency_key}@{domain}>"  # the same on every retry: dedupable
    mail.set_content(message["body"])
    with smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT) as smtp:
        if os.environ.get("SDF_SMTP_STARTTLS", "0").strip().lower() in ("1", "true", "yes"):
            smtp.starttls()
        if os.environ.get("SDF_SMTP_USER"):
            smtp.login(os.environ["SDF_SMTP_USER"], os.environ.get("SDF_SMTP_PASSWORD", ""))
        try:
            smtp.send_message(mail, from_addr=sender, to_addrs=message["to"])
        except smtplib.SMTPRecipientsRefused as exc:
            raise BusinessError("SMTP_RECIPIENTS_REFUSED", f"SMTP server refused {sorted(exc.recipients)}") from exc


# -- webhooks ------------------------------------------------------------------------------------
def webhook_secret(raw: str | None) -> bytes | None:
    """The signing key: ``whsec_<base64>`` decoded (Standard Webhooks), else the string's bytes."""
    if not raw:
        return None
    if raw.startswith("whsec_"):
        return base64.b64decode(raw[len("whsec_") :])
    return raw.encode()


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks signature: ``v1,`` + base64(HMAC-SHA256(secret, "id.timestamp.body"))."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()


def send_webhook(message: dict, call) -> None:
    body = json.dumps(
        {"type": message["template"], "data": message["data"], "subject": message["subject"], "body": message["body"]}
    ).encode()
    secret = webhook_secret(os.environ.get("SDF_WEBHOOK_SECRET"))
    for url in message["to"]:
        timestamp = int(time.time())
        headers = {"webhook-id": call.idempotency_key, "webhook-timestamp": str(timestamp)}
        if secret is not None:
            headers["webhook-signature"] = sign(secret, call.idempotency_key, timestamp, body)
        post_json(url, body, headers)


def send_slack(message: dict, call) -> None:
    text = f"{message['subject']}\n{message['body']}".strip() if message["subject"] else message["body"].strip()
    body = json.dumps({"text": text}).encode()
    for url in message["to"]:
        post_json(url, body, {})


def post_json(url: str, body: bytes, headers: dict) -> None:
    """POST; 5xx, 408/429, timeouts and connection errors raise (retried); other 4xx are permanent."""
    if not url.startswith(("http://", "https://")):
        raise BusinessError("WEBHOOK_URL", f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", **headers}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310 - scheme checked
            response.read(64 * 1024)
    except urllib.error.HTTPError as exc:
        exc.close()
        if 400 <= exc.code < 500 and exc.code not in RETRYABLE_4XX:
            raise BusinessError(f"HTTP_{exc.code}", f"POST {url} answered {exc.code}") from exc
        raise ConnectionError(f"POST {url} answered {exc.code}") from exc
