"""Settings read from ``SDF_*`` environment variables, declared once as data.

Each setting has a name, a default and a help text; ``sdf settings`` (and the docs) print the
table, so there is exactly one place that says what can be configured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import ConfigurationError


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None
    help: str
    kind: type = str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATABASE_URL",
        None,
        "SQLAlchemy URL. Default: a SQLite file sdf.db in the working directory. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    ),
    Setting(
        "REDIS_URL",
        None,
        "Redis URL for a job queue (not used yet: `sdf worker` runs timers and jobs from the database).",
    ),
    Setting("PROCESSES_DIR", "processes", "Folder of BPMN/DMN/form files deployed by `sdf init`."),
    Setting("SECRET_KEY", None, "Secret for signing web sessions and tokens (for the web app, not built yet)."),
    Setting("SCRIPT_TIME_LIMIT", "2.0", "Seconds a BPMN script or condition may run before it is stopped.", float),
    Setting("JOB_LEASE_SECONDS", "60", "How long a worker holds a job before another may take it over.", float),
    Setting("DISABLE_PLUGINS", "", "Comma-separated plugin names not to load (see `sdf plugins`)."),
    Setting(
        "INSTANCE_MANAGERS",
        "delivery_manager",
        "Comma-separated groups whose members may suspend, resume, terminate and retry any instance "
        "(besides administrators and the person who started it).",
    ),
    Setting(
        "ENGINE_STEP_LIMIT",
        "10000",
        "Engine steps one advance may take before the instance is stopped with an incident "
        "(guards against endless loops without a wait state).",
        int,
    ),
    Setting("SMTP_HOST", "localhost", "SMTP server of the `email` notification channel (read at send time)."),
    Setting("SMTP_PORT", "25", "Port of the SMTP server.", int),
    Setting("SMTP_USER", None, "SMTP login user (optional; no login when unset)."),
    Setting("SMTP_PASSWORD", None, "SMTP login password (with SDF_SMTP_USER)."),
    Setting("SMTP_FROM", "sdf@localhost", "From address of notification emails."),
    Setting("SMTP_STARTTLS", "0", "1 to upgrade the SMTP connection with STARTTLS before logging in."),
    Setting(
        "WEBHOOK_SECRET",
        None,
        "Secret that signs `webhook` notifications (Standard Webhooks; `whsec_<base64>` or a plain string). "
        "Unset: webhooks are sent unsigned.",
    ),
    Setting(
        "TEMPLATES_DIR",
        None,
        "Folder of notification templates (`NAME.txt.j2`) that override or add to the built-in ones.",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Resolved settings; build with :func:`load_settings` (tests pass overrides)."""

    database_url: str
    redis_url: str | None
    processes_dir: Path
    secret_key: str | None
    script_time_limit: float
    engine_step_limit: int
    disable_plugins: str = ""
    instance_managers: str = "delivery_manager"
    job_lease_seconds: float = 60.0
    queue_name: str = "sdf"
    extra: dict = field(default_factory=dict)


def _convert(setting: Setting, raw: str | None):
    if raw is None or setting.kind is str:
        return raw
    try:
        return setting.kind(raw)
    except ValueError as exc:
        raise ConfigurationError(f"SDF_{setting.name}={raw!r} is not a valid {setting.kind.__name__}") from exc


def load_settings(environ: dict | None = None, **overrides) -> Settings:
    """Read every declared setting from ``environ`` (default: the process environment)."""
    environ = os.environ if environ is None else environ
    values = {}
    known = {f.name for f in fields(Settings)}
    for setting in SETTINGS:
        raw = environ.get(f"SDF_{setting.name}") or setting.default
        value = _convert(setting, raw)  # a malformed value fails at start-up, even if read later
        if setting.name.lower() in known:  # the others (SDF_SMTP_*...) are read where they are used
            values[setting.name.lower()] = value
    values.update(overrides)
    if not values["database_url"]:
        values["database_url"] = f"sqlite:///{Path.cwd() / 'sdf.db'}"
    values["processes_dir"] = Path(values["processes_dir"])
    return Settings(**values)
