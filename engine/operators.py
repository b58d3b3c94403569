"""Service-task operators: the named calls a BPMN ``serviceTask`` makes to the outside world.

A spiff service task names an operator (``spiffworkflow:serviceTaskOperator id="..."``) and
its parameters (Python expressions evaluated against the task data). Operators are plain
callables registered by name (plugins will register theirs through the hook contract):
``func(params: dict, call: ServiceCall) -> JSON-serializable result``. The result is stored in
the task's result variable. An operator signals

- a *technical* failure by raising any exception: the call is retried with backoff and, when
  retries run out, the instance gets an incident naming operator and error;
- a *business* outcome the process should handle by raising :class:`BusinessError` with a
  code: a BPMN error boundary event with that code on the service task catches it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import ConfigurationError, NotFound


class BusinessError(Exception):
    """An outcome for the process, routed to the error boundary event whose code matches."""

    def __init__(self, code: str, message: str = "", payload: dict | None = None):
        super().__init__(message or code)
        self.code = code
        self.payload = payload or {}


class CompletedWithError(Exception):
    """The call failed for good, but the process should go on with ``result``.

    For best-effort side effects (a notification): the task completes with ``result`` and the
    job row keeps ``error`` as its last error, so the failure stays visible without stopping
    the instance.
    """

    def __init__(self, result, error: str):
        super().__init__(error)
        self.result = result
        self.error = error


@dataclass(frozen=True)
class ServiceCall:
    """What an operator is told about the call it serves."""

    operator: str
    instance_id: int
    element_id: str
    attempt: int
    idempotency_key: str  # stable across retries and re-runs: pass it on (e.g. a webhook id)
    max_attempts: int = 1  # attempts the job may make: ``attempt == max_attempts`` is the last
    channels: OperatorRegistry | None = field(default=None, repr=False, compare=False)  # notification channels


@dataclass(frozen=True)
class Operator:
    name: str
    func: Callable
    provider: str = "engine"
    description: str = ""


@dataclass
class OperatorRegistry:
    """Operators by name; a duplicate name is refused with both providers named."""

    _operators: dict[str, Operator] = field(default_factory=dict)

    def register(self, name: str, func: Callable, *, provider: str = "engine", description: str = "") -> None:
        existing = self._operators.get(name)
        if existing is not None:
            raise ConfigurationError(
                f"operator {name!r} is provided by both {existing.provider} and {provider}; rename one"
            )
        self._operators[name] = Operator(name, func, provider, description)

    def unregister(self, name: str) -> None:
        self._operators.pop(name, None)

    def get(self, name: str) -> Operator:
        try:
            return self._operators[name]
        except KeyError:
            raise NotFound(f"no plugin provides the operator {name!r}", operator=name) from None

    def names(self) -> set[str]:
        return set(self._operators)

    def all(self) -> list[Operator]:
        return sorted(self._operators.values(), key=lambda op: op.name)
