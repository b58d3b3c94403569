"""Messages: deliver a named message to the instance(s) waiting for it, or start one.

SpiffWorkflow matches a message only inside one workflow; finding the right instance among
thousands is ours. Every instance that waits for a message has one ``message_subscriptions``
row per message name, holding its current correlation values for that message (e.g.
``{"project_id": "P-2"}``, flattened from ``workflow.correlations``). The rows are written by
the transition that changed what the instance waits for, in the same transaction as the
state: :func:`capture` notes the waiting messages when a transition opens and
:func:`sync_subscriptions` compares them with the result, so a transition that changes no
message wait runs no extra SQL (the hot path: completing a task).

:func:`correlate` routes a message: to the subscribed instances whose correlation values
equal the given ones (without values, to the only instance waiting), else it starts the
newest version of each process whose start event catches the message. A message nobody takes
is a :class:`~engine.errors.NotFound` error for the caller, never dropped silently.

Delivery details (see the research notes, section 6):
- the event is built with the spiff ``MessageEventDefinition`` (the parser's class family;
  the library compares event classes) and correlations computed from the payload with the
  catching definition's retrieval expressions, exactly as a throwing process would;
- the library evaluates those expressions on the payload, so a correlation property the
  payload lacks is added to it (the instance's own value, else the given one), and a payload
  value that contradicts the instance's is refused;
- with ``spiffworkflow:messageVariable`` the payload lands in that variable; without one the
  spiff dialect would drop it, so its keys are merged into the process data instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from SpiffWorkflow.bpmn import BpmnEvent
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition as AnyMessageDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import WorkflowException
from SpiffWorkflow.spiff.specs.event_definitions import MessageEventDefinition
from SpiffWorkflow.util.task import TaskState

from . import forms, humantasks, jsonutil, startevents
from .audit import EventType
from .errors import Conflict, FormValidationError, InvalidInput, NotFound
from .schema import definitions, message_subscriptions
from .status import InstanceStatus

MESSAGE_CORRELATED = "message_correlated"
DELIVERABLE = (InstanceStatus.RUNNING.value, InstanceStatus.WAITING.value)
_BEFORE = "messages_before"  # attribute :func:`capture` sets on a Transition


# -- what an instance waits for (runs in every transition: memory only) ----------------------------
def waiting_messages(workflow) -> dict[str, str]:
    """Message name -> JSON text of the correlation values, for each message the workflow waits for.

    Reads the workflow's event manager (what ``waiting_events()`` lists), which holds only the
    waiting catch events, so this stays cheap; it also sees messages inside a multiple event
    and the correlations of the subprocess a catch event belongs to.
    """
    found: dict[str, dict] = {}
    for task in workflow.event_manager.tasks.values():
        for definition in message_parts(task.task_spec.event_definition):
            found.setdefault(definition.name, {}).update(correlation_values(definition, task.workflow.correlations))
    return {name: _correlation_text(values) for name, values in found.items()}


def message_parts(definition) -> list:
    """The message definitions of an event definition (a multiple event may hold several)."""
    parts = definition.event_definitions if isinstance(definition, MultipleEventDefinition) else [definition]
    return [d for d in parts if isinstance(d, AnyMessageDefinition)]


def correlation_values(definition, correlations: dict) -> dict:
    """The workflow's current values of the correlation keys a message definition uses, flattened."""
    keys = {key for prop in _properties(definition) for key in prop.correlation_keys}
    return {name: value for key in sorted(keys) for name, value in correlations.get(key, {}).items()}


def _properties(definition) -> list:
    return list(definition.correlation_properties) + list(getattr(definition, "process_correlations", []))


def _correlation_text(values: dict) -> str:
    return jsonutil.dumps(dict(sorted(values.items())))


def capture(tr) -> None:
    """Note what a loaded instance waits for when its transition opens (the "before")."""
    setattr(tr, _BEFORE, waiting_messages(tr.workflow))


def sync_subscriptions(tr) -> None:
    """Make the instance's subscription rows match what it waits for now, if that changed.

    A new instance has no "before"; a completed or terminated one waits for nothing. On a
    change the instance's rows are replaced as a whole (so they also heal if ever out of step).
    """
    before = getattr(tr, _BEFORE, {})
    after = {} if tr.saved_status.is_final else waiting_messages(tr.workflow)
    if after == before:
        return
    if hasattr(tr, _BEFORE):
        tr.conn.execute(message_subscriptions.delete().where(message_subscriptions.c.instance_id == tr.instance_id))
    if after:
        rows = [
            {"instance_id": tr.instance_id, "message_name": name, "correlation": text, "created_at": tr.now}
            for name, text in sorted(after.items())
        ]
        tr.conn.execute(message_subscriptions.insert(), rows)


# -- routing a message ---------------------------------------------------------------------------
def correlate(
    engine, name: str, payload: dict | None, correlation: dict[str, str] | None = None, actor: str | None = None
) -> list[dict]:
    """Deliver message ``name`` to the waiting instance(s) it correlates to, or start an instance.

    Returns the instances that received it, as :func:`engine.instances.get` returns them.
    """
    from . import instances  # imported here: transitions imports this module, instances imports transitions

    payload, correlation = _checked(name, payload, correlation)
    with engine.db.read() as conn:
        if actor is not None:
            engine.require_user(conn, actor)
        waiting = subscribers(conn, name)
    targets = _choose(name, waiting, correlation)
    if targets:
        ids = [_deliver_to(engine, instance_id, name, payload, correlation, actor) for instance_id in targets]
    else:
        ids = _start_by_message(engine, name, payload, correlation, actor)
    return [instances.get(engine, instance_id) for instance_id in ids]


def _checked(name, payload, correlation) -> tuple[dict, dict[str, str]]:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("a message needs a name")
    if payload is not None and not isinstance(payload, dict):
        raise InvalidInput("message data must be a JSON object")
    correlation = dict(correlation or {})
    if any(not isinstance(key, str) or not key for key in correlation):
        raise InvalidInput("correlation keys must be non-empty names")
    return dict(payload or {}), correlation


def subscribers(conn, name: str) -> list[tuple[int, dict]]:
    """(instance id, correlation values) of every instance waiting for message ``name``."""
    rows = conn.execute(
        sa.select(message_subscriptions.c.instance_id, message_subscriptions.c.correlation)
        .where(message_subscriptions.c.message_name == name)
        .order_by(message_subscriptions.c.instance_id)
    )
    return [(row.instance_id, jsonutil.loads(row.correlation, {})) for row in rows]


def _choose(name: str, waiting: list[tuple[int, dict]], correlation: dict) -> list[int]:
    """The instances the message goes to: all whose values match, or the only one waiting."""
    if correlation:
        return [instance_id for instance_id, values in waiting if _matches(values, correlation)]
    if len(waiting) > 1:
        raise _ambiguous(name, waiting)
    return [instance_id for instance_id, _ in waiting]


def _matches(values: dict, correlation: dict) -> bool:
    """Every given key is present with an equal value (compared as text: the CLI gives strings)."""
    return all(key in values and _text(values[key]) == _text(value) for key, value in correlation.items())


def _text(value) -> str:
    return value if isinstance(value, str) else jsonutil.dumps(value)


def _ambiguous(name: str, waiting: list[tuple[int, dict]]) -> InvalidInput:
    ids = [instance_id for instance_id, _ in waiting]
    keys = sorted({key for _, values in waiting for key in values})
    listed = ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
    if keys:
        hint = "give a correlation to choose one: " + ", ".join(f"{key}=VALUE" for key in keys)
    else:
        hint = "and they have no correlation values to tell them apart"
    return InvalidInput(
        f"{len(ids)} instances wait for message {name!r} (instances {listed}); {hint}",
        message_name=name,
        instance_ids=ids,
        correlation_keys=keys,
    )


def _describe(name: str, correlation: dict) -> str:
    if not correlation:
        return f"message {name!r}"
    return f"message {name!r} with correlation " + ", ".join(f"{k}={v}" for k, v in correlation.items())


# -- delivering ----------------------------------------------------------------------------------
def _deliver_to(engine, instance_id: int, name: str, payload: dict, correlation: dict, actor) -> int:
    from . import instances

    instances.change(engine, instance_id, actor, lambda tr: deliver(tr, name, payload, correlation), allow=DELIVERABLE)
    return instance_id


def deliver(tr, name: str, payload: dict, correlation: dict) -> None:
    """Deliver message ``name`` inside a transition, record it, and advance the workflow."""
    catchers = _catchers(tr.workflow, name)
    if not catchers:
        where = f"instance {tr.instance_id}" if tr.instance_id is not None else "the new instance"
        raise Conflict(f"{where} no longer waits for message {name!r}", instance_id=tr.instance_id)
    _check_payload_forms(tr, name, catchers, payload)
    sent = _payload_to_send(name, catchers, payload, correlation)
    event = BpmnEvent(
        MessageEventDefinition(name), payload=sent, correlations=_event_correlations(tr, name, catchers, sent)
    )
    try:
        tr.workflow.send_event(event)
    except WorkflowException as exc:  # the library's own correlation check refused it
        raise Conflict(f"instance {tr.instance_id} refused {_describe(name, correlation)}: {exc}") from exc
    _merge_unnamed_payload(catchers, sent)
    tr.record(
        MESSAGE_CORRELATED,
        element_id=catchers[0][0].task_spec.bpmn_id,
        data={"name": name, "payload": payload, "correlation": correlation},
    )
    tr.run_engine()


def _check_payload_forms(tr, name: str, catchers: list[tuple], payload: dict) -> None:
    """A catch event with a form (``formJsonSchemaFilename``, as on a user task) accepts only a
    payload that matches it: a bad one is refused field by field and nothing is created or
    changed (the transaction rolls back), instead of an instance that stops on bad data."""
    for task, _definition in catchers:
        form = humantasks.properties(task.task_spec).get("formJsonSchemaFilename")
        if form:
            try:
                forms.check(tr.definition.form_validator(form), payload, form)
            except FormValidationError as exc:
                raise FormValidationError(f"message {name!r}: {exc.message}", exc.errors) from exc


def _catchers(workflow, name: str) -> list[tuple]:
    """(waiting task, message definition) pairs that catch message ``name``."""
    return [
        (task, definition)
        for task in workflow.event_manager.tasks.values()
        for definition in message_parts(task.task_spec.event_definition)
        if definition.name == name
    ]


def _payload_to_send(name: str, catchers: list[tuple], payload: dict, correlation: dict) -> dict:
    """The payload with the correlation properties the catchers' expressions read filled in."""
    sent = dict(payload)
    for task, definition in catchers:
        current = correlation_values(definition, task.workflow.correlations)
        for prop in _properties(definition):
            if prop.name in current:
                if prop.name in sent and _text(sent[prop.name]) != _text(current[prop.name]):
                    raise InvalidInput(
                        f"message {name!r} has {prop.name}={sent[prop.name]!r} but the waiting instance "
                        f"is correlated with {prop.name}={current[prop.name]!r}"
                    )
                sent[prop.name] = current[prop.name]
            elif prop.name not in sent and prop.name in correlation:
                sent[prop.name] = correlation[prop.name]
    return sent


def _event_correlations(tr, name: str, catchers: list[tuple], sent: dict) -> dict:
    """Correlations computed from the payload, as SpiffWorkflow computes them when a process throws."""
    correlations: dict = {}
    for _task, definition in catchers:
        try:
            found = definition.calculate_correlations(
                tr.workflow.script_engine, definition.correlation_properties, sent
            )
        except Exception as exc:  # a retrieval expression failed on this payload
            raise InvalidInput(f"message {name!r}: cannot read its correlation from the data: {exc}") from exc
        correlations.update(found)
    return correlations


def _merge_unnamed_payload(catchers: list[tuple], sent: dict) -> None:
    """Without a message variable the spiff dialect drops the payload: merge it into the data."""
    for task, definition in catchers:
        if getattr(definition, "message_var", None) is None and task.state == TaskState.READY:
            task.data.update(sent)


# -- starting by message -------------------------------------------------------------------------
def _start_by_message(engine, name: str, payload: dict, correlation: dict, actor) -> list[int]:
    with engine.db.read() as conn:
        found = start_definitions(engine, conn, name)
    if not found:
        raise NotFound(
            f"no instance waits for {_describe(name, correlation)}, and no deployed process starts with it",
            message_name=name,
            correlation=correlation,
        )
    return [_start_one(engine, definition_id, name, payload, correlation, actor) for definition_id in found]


def start_definitions(engine, conn, name: str) -> list[int]:
    """Ids of the newest version of each process whose start event catches message ``name``."""
    newest = (
        sa.select(definitions.c.process_id, sa.func.max(definitions.c.version).label("version"))
        .group_by(definitions.c.process_id)
        .subquery()
    )
    ids = conn.execute(
        sa.select(definitions.c.id)
        .join(
            newest,
            sa.and_(definitions.c.process_id == newest.c.process_id, definitions.c.version == newest.c.version),
        )
        .order_by(definitions.c.process_id)
    ).scalars()
    return [definition_id for definition_id in ids if _starts_with(engine.definitions.get(conn, definition_id), name)]


def _starts_with(definition, name: str) -> bool:
    return any(
        part.name == name
        for start in startevents.start_events(definition.spec)
        for part in message_parts(start.event_definition)
    )


def _start_one(engine, definition_id: int, name: str, payload: dict, correlation: dict, actor) -> int:
    """Create an instance, deliver the message to its start event, save: one transaction."""
    from . import transitions

    with engine.db.write() as conn:
        definition = engine.definitions.get(conn, definition_id)
        workflow = BpmnWorkflow(definition.spec, definition.subprocess_specs, script_engine=engine.script_engine)
        tr = transitions.Transition(
            engine, conn, transitions.new_row(None), definition, workflow, actor, engine.clock()
        )
        tr.record(
            EventType.INSTANCE_STARTED,
            data={"process_id": definition.process_id, "version": definition.version, "message": name, "data": {}},
        )
        open_message_start(workflow, name)  # the message start event now waits
        deliver(tr, name, payload, correlation)
        return transitions.save_new_instance(tr)["id"]


def open_message_start(workflow, name: str) -> None:
    """Open only the start events that catch message ``name`` (see :mod:`engine.startevents`)."""
    startevents.open_only(
        workflow, lambda spec: any(part.name == name for part in message_parts(spec.event_definition))
    )
