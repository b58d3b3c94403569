"""The plugin author's contract: every hook the engine calls, with its exact signature.

A plugin is a module or object with functions marked ``@hookimpl`` whose names and argument
names match the specs below (pluggy matches arguments by name, so a plugin may accept only
the arguments it needs). Third-party plugins are found through the ``sdf`` entry-point group;
the built-ins in ``plugins/`` are registered through the same door and marked
``trylast=True`` so a third-party implementation of a one-answer hook wins.

Hook families:
- ``register_*``: called once when the engine starts; the plugin calls ``register(...)`` for
  each contribution. Duplicate names are refused at start-up, naming both plugins.
- ``score_*`` and ``choose_assignee``: one answer (``firstresult``): the first plugin that
  returns something other than None decides.
- lifecycle events (``instance_started``, ``task_created``...): called after the change is
  committed, with plain dictionaries (the keys of the JSON API). A failing implementation is
  logged and recorded in the audit log; it never undoes or blocks the change.
"""

from __future__ import annotations

import pluggy

PROJECT = "sdf"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- contributions (called once at start-up) ---------------------------------------------------
@hookspec
def register_operators(register):
    """Contribute service-task operators.

    Call ``register(name, func, description="")`` for each. ``func(params: dict, call)`` is
    called by a background job with the evaluated ``spiffworkflow:parameter`` values and an
    :class:`engine.operators.ServiceCall` (operator, instance_id, element_id, attempt,
    max_attempts, idempotency_key); it returns a JSON-serializable result stored in the task's result
    variable. Raise any exception for a technical failure (retried with backoff, then an
    incident) or :class:`engine.operators.BusinessError` for an outcome a BPMN error boundary
    event should handle.
    """


@hookspec
def register_script_functions(register, hook):
    """Contribute functions callable from BPMN scripts, conditions and DMN cells.

    Call ``register(name, func)`` for each. Functions run inside the script sandbox's time
    limit and must not do I/O. ``hook`` is the plugin manager's hook relay, so a function can
    delegate to a one-answer hook (the built-in ``score_risk`` function calls
    ``hook.score_risk``), letting other plugins change the rule without touching BPMN.
    """


@hookspec
def register_notification_channels(register):
    """Contribute notification channels (email, webhook, chat...) for the ``notify`` operator.

    Call ``register(name, send, description="")`` for each. ``send(message: dict, call)``
    delivers one message and returns nothing; ``message`` is ``{"channel", "to": [...],
    "subject", "body", "template", "data"}`` (``subject`` and ``body`` already rendered from
    the template) and ``call`` is the :class:`engine.operators.ServiceCall` of the job that
    delivers it (pass ``call.idempotency_key`` on: it is the same on every retry). Raise any
    exception for a failure worth retrying (with backoff) or
    :class:`engine.operators.BusinessError` for a permanent one. A channel that still fails
    on the last attempt never fails the process: the ``notify`` operator records the error.
    """


@hookspec(firstresult=True)
def job_queue(settings):
    """Where background jobs run. Called once when the engine starts.

    Return an object with ``enqueue(job_id: int, delay: float = 0.0)`` (hand an outbox job to
    workers, now or after ``delay`` seconds) and ``run_worker(engine, burst: bool = False)``
    (run a worker in the foreground), or None to run jobs in the engine's own process (the
    embedded default). ``settings`` is the engine's :class:`engine.settings.Settings`. The
    built-in ``plugins.rq_queue`` answers when ``SDF_REDIS_URL`` is set.
    """


# -- scoring (one answer) ----------------------------------------------------------------------
@hookspec(firstresult=True)
def score_risk(probability, impact):
    """Score a risk from probability and impact (each 1-5).

    Return ``{"score": int, "band": "low"|"medium"|"high"|"critical"}`` or None to let the
    next plugin answer. Called from BPMN as ``score_risk(probability, impact)``.
    """


@hookspec(firstresult=True)
def score_priority(impact, urgency):
    """ITIL-style priority from impact and urgency (each "high", "medium" or "low").

    Return ``{"priority": "P1".."P4", "target_hours": int}`` or None. Called from BPMN as
    ``score_priority(impact, urgency)``.
    """


@hookspec(firstresult=True)
def score_task_priority(task, data):
    """The inbox priority (0-100, higher first) of a task being created.

    ``task`` has the task's inbox keys (element_id, title, candidate_group, priority from the
    BPMN property, due_at); ``data`` is the process data. Return an int or None to keep the
    BPMN priority.
    """


@hookspec(firstresult=True)
def score_satisfaction(answers):
    """Client satisfaction from survey answers.

    ``answers`` holds ``csat`` (1-5) and/or ``nps`` (0-10) for one or more responses (lists
    allowed). Return ``{"csat": float|None, "nps": float|None, "band": str}`` or None.
    """


# -- assignment (one answer) -------------------------------------------------------------------
@hookspec(firstresult=True)
def choose_assignee(task, candidates):
    """Pick who gets a task that asks for automatic assignment.

    Called when a task with the ``assignment`` property ``auto`` (or a ``requiredSkills``
    property) is created. ``candidates`` lists the candidate group's members as
    ``{"name", "skills": {skill: level}, "open_tasks": int}``; ``task`` has its inbox keys plus
    ``required_skills`` (list). Return a user name from the candidates, or None to leave the
    task open for the group to claim.
    """


# -- lifecycle events (after commit) -----------------------------------------------------------
@hookspec
def instance_started(instance):
    """An instance was started. ``instance`` has id, process_id, version, business_key, data."""


@hookspec
def instance_completed(instance):
    """An instance reached an end event. ``instance`` has id, process_id, version, business_key, data."""


@hookspec
def task_created(task):
    """A human task opened (and was auto-assigned, if it asked to be). ``task`` has the inbox keys."""


@hookspec
def task_completed(task, data, actor):
    """A human task was completed by ``actor`` with the submitted ``data``."""


@hookspec
def incident_raised(incident):
    """An instance stopped with an incident: id, instance_id, element_id, kind, message, line."""
