"""sdf-sample-plugin: the smallest useful third-party plugin for the Service Delivery Framework.

Installed with ``pip install -e tests/sample_plugin``, it is found through the ``sdf``
entry-point group under the name ``sample`` (so ``SDF_DISABLE_PLUGINS=sample`` turns it off).
It contributes:

* the operator ``sample_echo``: returns ``{"echo": params, "key": call.idempotency_key}``, so a
  service task can show exactly what the engine passed to an operator;
* the operator ``sample_fail_once``: raises ``ConnectionError`` on the first attempt of a call
  and succeeds on the next, to watch the retry with backoff at work;
* the operator ``sample_slow``: appends a line to the file ``params["log"]`` (so a test sees
  every real call, even from a worker process it kills), sleeps ``params["seconds"]`` on the
  first attempt only (long enough to kill the worker mid-call), and returns the call's
  idempotency key;
* a ``task_created`` listener that appends every new human task (the inbox dictionary) to
  :data:`SEEN_TASKS`.
"""

from __future__ import annotations

from engine.hookspecs import hookimpl

#: Every human task announced to this plugin, oldest first (tests clear it before use).
SEEN_TASKS: list[dict] = []


@hookimpl
def register_operators(register):
    register("sample_echo", sample_echo, description="Return the parameters and the idempotency key")
    register("sample_fail_once", sample_fail_once, description="Fail the first attempt, then return the parameters")
    register("sample_slow", sample_slow, description="Log the call to a file, sleep, return the idempotency key")


def sample_echo(params: dict, call) -> dict:
    return {"echo": params, "key": call.idempotency_key}


def sample_fail_once(params: dict, call) -> dict:
    if call.attempt == 1:
        raise ConnectionError(f"sample_fail_once: attempt {call.attempt} fails on purpose")
    return {"echo": params, "attempt": call.attempt}


def sample_slow(params: dict, call) -> dict:
    import time

    with open(params["log"], "a") as log:
        log.write(f"{call.idempotency_key} attempt {call.attempt}\n")
    if call.attempt == 1:
        time.sleep(float(params.get("seconds", 0)))
    return {"key": call.idempotency_key}


@hookimpl
def task_created(task):
    SEEN_TASKS.append(dict(task))
