"""First-run set-up: schema, the shipped processes, and demo users to try them with."""

from __future__ import annotations

from collections.abc import Iterator

from . import users

DEMO_PASSWORD = "demo-password"
DEMO_USERS = (
    ("dana", ["delivery_manager"], "Dana Delivery"),
    ("pat", ["project_manager"], "Pat Project"),
    ("eli", ["engineer"], "Eli Engineer"),
    ("quinn", ["qa_reviewer"], "Quinn QA"),
    ("casey", ["client"], "Casey Client"),
    ("sam", ["sponsor"], "Sam Sponsor"),
)


def initialise(engine, *, demo: bool = True) -> Iterator[str]:
    """Migrate, deploy ``settings.processes_dir`` and (optionally) add demo users; yield progress lines."""
    engine.migrate()
    yield f"database ready: {engine.db.engine.url.render_as_string(hide_password=True)}"
    folder = engine.settings.processes_dir
    if folder.is_dir() and any(folder.rglob("*.bpmn")):
        for result in engine.deploy([folder], deployed_by="sdf-init"):
            yield f"deployed {result.process_id} v{result.version}" + ("" if result.created else " (unchanged)")
    else:
        yield f"no processes found in {folder}"
    if demo:
        yield from _demo_users(engine)


def _demo_users(engine) -> Iterator[str]:
    with engine.db.write() as conn:
        for name, groups, display in DEMO_USERS:
            if users.find_user(conn, name) is None:
                users.add_user(conn, name, groups_=groups, password=DEMO_PASSWORD, display_name=display)
                yield f"demo user {name} ({', '.join(groups)}), password {DEMO_PASSWORD!r}"
        if users.find_user(conn, "admin") is None:
            users.add_user(conn, "admin", password=DEMO_PASSWORD, is_admin=True, display_name="Administrator")
            yield f"demo user admin (all tasks), password {DEMO_PASSWORD!r}"


__all__ = ["initialise"]
