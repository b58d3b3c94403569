"""The ``sdf`` command line: a thin adapter over the engine.

Each command parses its options, calls one engine operation and prints the result, as a
short human-readable text or, with ``--json``, with the same stable keys the web API uses.
Errors are one line on stderr (``error: ...``; a refused deploy prints one
``file:line: element-id: message`` line per problem) and a non-zero exit status.
"""

from __future__ import annotations

import functools
import sys

import click
import sqlalchemy as sa

from . import jsonutil
from .errors import DefinitionInvalid, FormValidationError, InvalidInput, SdfError
from .outbox import JobStatus
from .runtime import build_engine
from .settings import SETTINGS

EXIT_FAILURE = 1


def _fail(exc: SdfError) -> None:
    if isinstance(exc, DefinitionInvalid):
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"error: {len(exc.problems)} problem(s); nothing was deployed", err=True)
    elif isinstance(exc, FormValidationError):
        fields = "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors)
        click.echo(f"error: the form is not valid: {fields}", err=True)
    else:
        click.echo(f"error: {exc.message}", err=True)
    sys.exit(EXIT_FAILURE)


def engine_command(func=None, *, needs_schema: bool = True):
    """Build the engine for the command, translate domain errors into exit codes."""
    if func is None:
        return functools.partial(engine_command, needs_schema=needs_schema)

    @functools.wraps(func)
    @click.pass_context
    def wrapper(ctx, *args, **kwargs):
        engine = ctx.obj.get("engine") if ctx.obj else None
        owned = engine is None
        try:
            if owned:
                engine = build_engine()
            if needs_schema:
                engine.require_schema()
            return func(engine, *args, **kwargs)
        except SdfError as exc:
            _fail(exc)
        except sa.exc.OperationalError as exc:
            label = engine.database_label if engine is not None else "(unknown)"
            _fail(SdfError(f"database error on {label}: {str(exc.orig).strip().splitlines()[0]}"))
        finally:
            if owned and engine is not None:
                engine.close()

    return wrapper


def emit(value, as_json: bool, text=None) -> None:
    if as_json:
        click.echo(jsonutil.dumps(value, pretty=True))
    elif text is not None:
        click.echo(text(value) if callable(text) else text)


def parse_data(raw: str | None) -> dict:
    return jsonutil.parse_object(raw, "--data")


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
actor_option = click.option("--as", "actor", metavar="USER", help="Act as this user.")


@click.group()
@click.pass_context
def cli(ctx):
    """Service Delivery Framework: run BPMN processes for client delivery work."""
    ctx.ensure_object(dict)


# -- set-up ------------------------------------------------------------------------------------
@cli.command()
@engine_command(needs_schema=False)
def migrate(engine):
    """Create or upgrade the database schema."""
    engine.migrate()
    click.echo(f"database ready: {engine.db.engine.url.render_as_string(hide_password=True)}")


@cli.command()
@click.option("--demo/--no-demo", default=True, help="Add demo users (password 'demo-password').")
@engine_command(needs_schema=False)
def init(engine, demo):
    """Set up everything: migrate, deploy SDF_PROCESSES_DIR, add demo users."""
    from .bootstrap import initialise

    for line in initialise(engine, demo=demo):
        click.echo(line)


@cli.command("settings")
def show_settings():
    """List the SDF_* environment variables."""
    for setting in SETTINGS:
        default = f" (default: {setting.default})" if setting.default else ""
        click.echo(f"SDF_{setting.name}{default}\n    {setting.help}")


# -- definitions -------------------------------------------------------------------------------
@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--strict", is_flag=True, help="Fail (exit 1) on warnings too.")
@json_option
@engine_command(needs_schema=False)
def validate(engine, paths, strict, as_json):
    """Check BPMN/DMN/form files without deploying them; print warnings about what runs but
    will probably surprise its users (a task nobody sees, a gateway without default...)."""
    try:
        compiled = engine.validate(paths)
    except DefinitionInvalid as exc:
        if as_json:
            emit({"valid": False, "problems": [str(p) for p in exc.problems], "warnings": []}, True)
            sys.exit(EXIT_FAILURE)
        raise
    found = [str(w) for w in engine.warnings(paths)]
    processes = [c.process_id for c in compiled]
    if as_json:
        emit({"valid": not (strict and found), "processes": processes, "warnings": found}, True)
    else:
        print_warnings(found)
        verdict = "failed (--strict)" if strict and found else "ok"
        emit(None, False, f"{verdict}: {len(processes)} process(es): " + ", ".join(processes) + _warned(found))
    if strict and found:
        sys.exit(EXIT_FAILURE)


def print_warnings(found: list[str]) -> None:
    for warning in found:
        click.echo(f"warning: {warning}", err=True)


def _warned(found: list[str]) -> str:
    return f" ({len(found)} warning(s))" if found else ""


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@actor_option
@json_option
@engine_command
def deploy(engine, paths, actor, as_json):
    """Deploy BPMN/DMN/form files or folders; unchanged processes keep their version."""
    results = engine.deploy(paths, deployed_by=actor, by_user=True)
    print_warnings([str(w) for w in engine.warnings(paths)])  # on stderr: --json output stays clean
    emit(
        [r.to_dict() for r in results],
        as_json,
        lambda rs: "\n".join(
            f"{r.process_id}: version {r.version}" + ("" if r.created else " (unchanged)") for r in results
        ),
    )


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the SVG to this file (default: stdout).")
def diagram(path, output):
    """Draw the diagram of a BPMN file as SVG, from the layout its modeler saved."""
    from .diagram import render_svg

    try:
        svg = render_svg(path)
        if output is None:
            click.echo(svg, nl=False)
            return
        with open(output, "w", encoding="utf-8") as out:
            out.write(svg)
    except SdfError as exc:
        _fail(exc)
    except OSError as exc:
        _fail(InvalidInput(f"{output}: cannot write the file: {exc.strerror or exc}"))


@cli.command()
@json_option
@engine_command
def definitions(engine, as_json):
    """List deployed process definitions and their versions."""
    rows = engine.list_definitions()
    emit(
        rows,
        as_json,
        lambda rs: (
            "\n".join(f"{r['process_id']} v{r['version']}  {r['name'] or ''}" for r in rs) or "no definitions deployed"
        ),
    )


# -- instances ---------------------------------------------------------------------------------
@cli.command()
@click.argument("process_id")
@click.option("--data", help="Start data as a JSON object.")
@click.option("--business-key", help="Your reference for this instance (project code, ticket...).")
@actor_option
@json_option
@engine_command
def start(engine, process_id, data, business_key, actor, as_json):
    """Start an instance of the newest version of PROCESS_ID."""
    instance = engine.start(process_id, parse_data(data), business_key=business_key, actor=actor)
    emit(engine.get_instance(instance["id"]), as_json, _instance_text)
    warn_if_stopped(instance)


@cli.command("instances")
@click.option("--status")
@click.option("--process", "process_id")
@click.option("--business-key")
@click.option("--limit", default=100, show_default=True)
@json_option
@engine_command
def list_instances(engine, status, process_id, business_key, limit, as_json):
    """List instances, newest first."""
    rows = engine.list_instances(status=status, process_id=process_id, business_key=business_key, limit=limit)
    emit(
        rows,
        as_json,
        lambda rs: (
            "\n".join(
                f"{r['id']:>6}  {r['status']:<10} {r['process_id']} v{r['version']}  {r['business_key'] or ''}"
                for r in rs
            )
            or "no instances"
        ),
    )


@cli.command()
@click.argument("instance_id", type=int)
@click.option("--history", is_flag=True, help="Include the audit history.")
@json_option
@engine_command
def show(engine, instance_id, history, as_json):
    """Show one instance: status, data, open tasks and incidents."""
    instance = engine.get_instance(instance_id)
    if history:
        instance["history"] = engine.history(instance_id)
    emit(instance, as_json, _instance_text)


def warn_if_stopped(inst: dict) -> None:
    """The command worked, but the instance it moved stopped on an incident: say so on stderr."""
    for incident in inst.get("incidents") or []:
        click.echo(
            f"warning: instance {inst['id']} stopped: incident {incident['id']} at "
            f"{incident['element_id']}: {incident['message']} (see `sdf incidents`)",
            err=True,
        )


def _instance_text(inst: dict) -> str:
    lines = [
        f"instance {inst['id']}: {inst['process_id']} v{inst['version']} {inst['status']}"
        + (f" [{inst['business_key']}]" if inst["business_key"] else ""),
        f"data: {jsonutil.dumps(inst['data'])}",
    ]
    lines += [
        f"task {t['id']}: {t['title']} ({t['candidate_group'] or 'anyone'})"
        + (f" claimed by {t['assignee']}" if t["assignee"] else "")
        for t in inst["tasks"]
    ]
    lines += [
        f"incident {i['id']}: {i['element_id']}{(' line ' + str(i['line'])) if i['line'] else ''}: {i['message']}"
        for i in inst["incidents"]
    ]
    lines += [f"{e['at']} {e['type']} {e['element_id'] or ''} {e['actor'] or ''}" for e in inst.get("history", [])]
    return "\n".join(lines)


def _instance_action(name: str, method: str, help_text: str):
    @cli.command(name, help=help_text)
    @click.argument("instance_id", type=int)
    @actor_option
    @json_option
    @engine_command
    def command(engine, instance_id, actor, as_json):
        getattr(engine, method)(instance_id, actor)
        emit(engine.get_instance(instance_id), as_json, lambda i: f"instance {i['id']}: {i['status']}")

    return command


_instance_action("suspend", "suspend", "Suspend an instance: nothing advances until it is resumed.")
_instance_action("resume", "resume", "Resume a suspended instance.")
_instance_action("terminate", "terminate", "End an instance now; its open tasks are cancelled.")


# -- inbox -------------------------------------------------------------------------------------
@cli.command()
@actor_option
@click.option("--group", "candidate_group")
@click.option("--assignee")
@click.option("--instance", "instance_id", type=int)
@json_option
@engine_command
def tasks(engine, actor, candidate_group, assignee, instance_id, as_json):
    """List open tasks (with --as, those the user may work on), highest priority first."""
    rows = engine.list_tasks(user=actor, candidate_group=candidate_group, assignee=assignee, instance_id=instance_id)
    emit(
        rows,
        as_json,
        lambda rs: (
            "\n".join(
                f"{t['id']:>6}  p{t['priority']:<4}{t['title']:<30} {t['candidate_group'] or '-':<18} "
                f"{t['assignee'] or '-':<12} instance {t['instance_id']}"
                + (" (suspended)" if t.get("instance_status") == "suspended" else "")
                for t in rs
            )
            or "no open tasks"
        ),
    )


@cli.command("task")
@click.argument("task_id", type=int)
@json_option
@engine_command
def show_task(engine, task_id, as_json):
    """Show one task: who may act, its instructions, its form fields and the process data."""
    emit(engine.task_details(task_id), as_json, _task_details_text)


def _task_details_text(t: dict) -> str:
    lines = [
        f"task {t['id']}: {t['title']} [{t['status']}] in instance {t['instance_id']} ({t['process_id']})",
        f"candidate group: {t['candidate_group'] or 'anyone'}; assignee: {t['assignee'] or '-'}; "
        f"priority {t['priority']}; due {t['due_at'] or '-'}",
    ]
    if t["instructions"]:
        lines.append(f"instructions: {t['instructions']}")
    schema = t.get("form_schema") or {}
    required = set(schema.get("required", []))
    for name, field in schema.get("properties", {}).items():
        mark = " (required)" if name in required else ""
        lines.append(f"  field {name}: {field.get('type', 'any')}{mark} {field.get('title', '')}".rstrip())
    lines.append(f"data: {jsonutil.dumps(t['instance']['data'])}")
    return "\n".join(lines)


def _task_text(t: dict) -> str:
    return f"task {t['id']}: {t['title']} {t['status']}" + (f" ({t['assignee']})" if t["assignee"] else "")


@cli.command()
@click.argument("task_id", type=int)
@click.option("--as", "actor", metavar="USER", required=True)
@json_option
@engine_command
def claim(engine, task_id, actor, as_json):
    """Claim a task so it is yours to complete."""
    emit(engine.claim(task_id, actor), as_json, _task_text)


@cli.command()
@click.argument("task_id", type=int)
@click.option("--as", "actor", metavar="USER", required=True)
@json_option
@engine_command
def unclaim(engine, task_id, actor, as_json):
    """Give a claimed task back to its candidate group."""
    emit(engine.unclaim(task_id, actor), as_json, _task_text)


@cli.command()
@click.argument("task_id", type=int)
@click.argument("assignee")
@click.option("--as", "actor", metavar="USER", required=True)
@json_option
@engine_command
def assign(engine, task_id, assignee, actor, as_json):
    """Assign a task to a member of its candidate group."""
    emit(engine.assign(task_id, assignee, actor), as_json, _task_text)


@cli.command()
@click.argument("task_id", type=int)
@click.option("--as", "actor", metavar="USER", required=True)
@click.option("--data", help="Form data as a JSON object.")
@json_option
@engine_command
def complete(engine, task_id, actor, data, as_json):
    """Complete a task with its form data; prints the instance afterwards."""
    instance = engine.complete(task_id, actor, parse_data(data))
    emit(instance, as_json, _instance_text)
    warn_if_stopped(instance)


# -- incidents ---------------------------------------------------------------------------------
@cli.command()
@click.option("--all", "show_all", is_flag=True, help="Include resolved incidents.")
@click.option("--instance", "instance_id", type=int)
@json_option
@engine_command
def incidents(engine, show_all, instance_id, as_json):
    """List incidents: instances stopped by an error, with task, line and message."""
    rows = engine.list_incidents(instance_id=instance_id, status=None if show_all else "open")
    emit(
        rows,
        as_json,
        lambda rs: (
            "\n".join(
                f"{i['id']:>5}  instance {i['instance_id']}  {i['element_id'] or '-'}"
                f"{(' line ' + str(i['line'])) if i['line'] else ''}: {i['message']} [{i['status']}]"
                for i in rs
            )
            or "no incidents"
        ),
    )


@cli.command()
@click.argument("incident_id", type=int)
@click.option("--data", help="Corrected data for the failed task, as a JSON object.")
@actor_option
@json_option
@engine_command
def retry(engine, incident_id, data, actor, as_json):
    """Retry the task an incident stopped at (after fixing data or the cause)."""
    instance = engine.retry_incident(incident_id, actor, parse_data(data))
    emit(engine.get_instance(instance["id"]), as_json, _instance_text)
    warn_if_stopped(instance)


# -- timers ----------------------------------------------------------------------------------
@cli.command()
@json_option
@engine_command
def timers(engine, as_json):
    """List instances waiting for a timer, soonest first."""
    from .timers import waiting_timers

    rows = waiting_timers(engine)
    emit(
        rows,
        as_json,
        lambda rs: (
            "\n".join(f"{r['due_at']}  instance {r['instance_id']} ({r['process_id']})" for r in rs)
            or "no waiting timers"
        ),
    )


@cli.command()
@click.option("--once", is_flag=True, help="Do what is due now and exit.")
@engine_command
def worker(engine, once):
    """Fire timers and run background jobs (service calls) as they come due; Ctrl-C stops it."""
    from .background import BackgroundWorker

    if engine.job_queue is not None:
        _queue_worker(engine, once)
        return
    loop = BackgroundWorker(engine)
    if once:
        loop.run_once()
        click.echo(f"fired timers of {loop.timers_fired} instance(s), ran {loop.jobs_run} job(s)")
        return
    click.echo("firing timers and running jobs as they come due; Ctrl-C to stop")
    try:
        loop.run()
    except KeyboardInterrupt:
        click.echo(f"stopped; fired timers of {loop.timers_fired} instance(s), ran {loop.jobs_run} job(s)")


def _queue_worker(engine, once: bool) -> None:
    """Queue mode: an rq worker runs jobs; a thread fires timers and re-enqueues lost jobs."""
    from .background import BackgroundWorker

    sweeper = BackgroundWorker(engine, run_jobs=False)
    if once:
        sweeper.run_once()
        engine.job_queue.run_worker(engine, burst=True)
        click.echo(f"fired timers of {sweeper.timers_fired} instance(s); ran the queued jobs")
        return
    thread = sweeper.start_thread()
    click.echo(f"rq worker on queue {engine.settings.queue_name!r}; firing timers as they come due; Ctrl-C to stop")
    try:
        engine.job_queue.run_worker(engine)
    finally:
        sweeper.stop()
        thread.join(5)


@cli.command("jobs")
@click.option("--status", type=click.Choice([s.value for s in JobStatus]))
@click.option("--instance", "instance_id", type=int)
@json_option
@engine_command
def list_jobs(engine, status, instance_id, as_json):
    """List background jobs (service calls) with their attempts and last error."""
    from .outbox import list_jobs as query

    with engine.db.read() as conn:
        rows = query(conn, status=status, instance_id=instance_id)
    emit(
        rows,
        as_json,
        lambda rs: (
            "\n".join(
                f"{j['id']:>5}  {j['status']:<9} {j['operator'] or j['kind']:<20} instance {j['instance_id']} "
                f"attempt {j['attempts']}/{j['max_attempts']}"
                + (f"  last error: {j['last_error']}" if j["last_error"] else "")
                for j in rs
            )
            or "no jobs"
        ),
    )


# -- messages --------------------------------------------------------------------------------
@cli.command()
@click.argument("name")
@click.option("--data", help="The message payload as a JSON object.")
@click.option(
    "--correlation", "correlations", multiple=True, metavar="KEY=VALUE", help="A correlation value (repeatable)."
)
@actor_option
@json_option
@engine_command
def message(engine, name, data, correlations, actor, as_json):
    """Send message NAME to the instance(s) waiting for it, or start a process that begins with it."""
    received = engine.correlate_message(name, parse_data(data), _parse_correlations(correlations), actor)
    emit(
        received,
        as_json,
        lambda rs: "\n".join(f"message {name} -> instance {r['id']}\n{_instance_text(r)}" for r in rs),
    )


def _parse_correlations(values) -> dict[str, str]:
    correlation = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--correlation {value!r}: use KEY=VALUE, e.g. project_id=P-100")
        correlation[key.strip()] = text
    return correlation


# -- users -------------------------------------------------------------------------------------
@cli.group()
def users():
    """Manage users and their groups."""


@users.command("add")
@click.argument("name")
@click.option("--group", "groups_", multiple=True, help="Candidate group (repeatable).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--admin", is_flag=True, help="May act on every task.")
@click.option("--email")
@click.option("--display-name")
@click.option("--skill", "skills", multiple=True, metavar="NAME:LEVEL", help="A skill with level 1-5 (repeatable).")
@json_option
@engine_command
def users_add(engine, name, groups_, password_stdin, admin, email, display_name, skills, as_json):
    """Add a user, optionally with groups, skills and a password."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    if password_stdin and not password:
        raise InvalidInput("--password-stdin: no password was given on standard input")
    user = engine.add_user(
        name,
        groups_=list(groups_),
        password=password,
        is_admin=admin,
        email=email,
        display_name=display_name,
        skills=_parse_skills(skills),
    )
    emit(
        user.to_dict(),
        as_json,
        f"user {user.name} added" + (f" to {', '.join(sorted(user.groups))}" if user.groups else ""),
    )


def _parse_skills(values) -> dict[str, int]:
    skills = {}
    for value in values:
        name, sep, level = value.partition(":")
        if not sep or not level.strip().isdigit():
            raise InvalidInput(f"--skill {value!r}: use NAME:LEVEL with a level from 1 to 5, e.g. python:4")
        skills[name.strip()] = int(level)
    return skills


@users.command("list")
@json_option
@engine_command
def users_list(engine, as_json):
    """List users and their groups."""
    rows = [u.to_dict() for u in engine.list_users()]
    emit(rows, as_json, lambda rs: "\n".join(_user_line(u) for u in rs) or "no users")


def _user_line(user: dict) -> str:
    groups = ", ".join(user["groups"]) or "-"
    return f"{user['name']:<16} {groups}" + ("  (admin)" if user["is_admin"] else "")


# -- plugins -----------------------------------------------------------------------------------
@cli.command("plugins")
@json_option
@engine_command(needs_schema=False)
def list_plugins(engine, as_json):
    """List loaded plugins with their version, hooks, operators and script functions."""
    from .plugins import describe

    rows = [p.to_dict() for p in describe(engine.plugins)]
    for row in rows:
        row["operators"] = sorted(op.name for op in engine.operators.all() if op.provider == row["name"])
    emit(
        rows,
        as_json,
        lambda rs: "\n".join(
            f"{p['name']} {p['version'] or ''}{' (built-in)' if p['builtin'] else ''}: {', '.join(p['hooks']) or '-'}"
            + (f"; operators: {', '.join(p['operators'])}" if p["operators"] else "")
            for p in rs
        ),
    )


# -- benchmark ---------------------------------------------------------------------------------
@cli.command()
@click.option("--instances", "count", default=300, show_default=True, help="Instances per measurement.")
@click.option(
    "--postgres", "postgres_url", help="Also measure on this PostgreSQL server (a scratch database is created)."
)
@click.option("--loops", default="10,100,1000", show_default=True, help="Loop counts for the growth measurement.")
@click.option("--background/--no-background", default=True, help="Also measure timer lateness and service calls.")
@json_option
def bench(count, postgres_url, loops, background, as_json):
    """Measure durable vs raw in-memory throughput, and completion time as history grows."""
    from .bench import run_benchmarks

    try:
        report = run_benchmarks(
            count=count,
            postgres_url=postgres_url,
            loops=[int(x) for x in loops.split(",") if x.strip()],
            progress=None if as_json else click.echo,
            background=background,
        )
    except SdfError as exc:
        _fail(exc)
    emit(report, as_json, None)


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
