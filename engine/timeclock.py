"""SpiffWorkflow's timer events tell time by the engine's clock.

SpiffWorkflow 3.2 calls ``datetime.now(timezone.utc)`` inside its timer event definitions
(when a duration timer starts, and to decide whether any timer has fired). An engine whose
clock is not the wall clock (a test that skips two business days, a simulation, a replay)
would then see its boundary and intermediate timers run on real time while everything else
(due dates, jobs, start timers) follows ``Engine.clock``.

:func:`install` swaps the name ``datetime`` in that one SpiffWorkflow module for a subclass
whose ``now()`` asks the clock of the engine running the current transaction (a context
variable set by :func:`using` around each write transaction), and the real time outside.
Everything else about the class (parsing, arithmetic, ``isinstance``) behaves as
``datetime`` does.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime

from SpiffWorkflow.bpmn.specs.event_definitions import timer as spiff_timer

_current: contextvars.ContextVar[Callable[[], datetime] | None] = contextvars.ContextVar("sdf_clock", default=None)
_REAL = datetime


class _AnyDatetime(type):
    """``isinstance(x, EngineDatetime)`` holds for every datetime, as the timer code expects."""

    def __instancecheck__(cls, obj) -> bool:
        return isinstance(obj, _REAL)


class EngineDatetime(datetime, metaclass=_AnyDatetime):
    """``datetime`` whose ``now()`` is the running engine's clock."""

    @classmethod
    def now(cls, tz=None):
        clock = _current.get()
        if clock is None:
            return _REAL.now(tz)
        value = clock()
        if tz is None:
            return value.astimezone().replace(tzinfo=None)
        return value.astimezone(tz)


def now() -> datetime:
    """The running engine's time as an aware UTC datetime (the real time outside a transition)."""
    clock = _current.get()
    return (clock() if clock is not None else _REAL.now(UTC)).astimezone(UTC)


@contextmanager
def using(clock: Callable[[], datetime]):
    """Make ``clock`` the time of SpiffWorkflow's timers and of ``now()`` in scripts, in this
    thread (or asyncio task), for the duration of the block."""
    token = _current.set(clock)
    try:
        yield
    finally:
        _current.reset(token)


def install() -> None:
    """Point SpiffWorkflow's timer module at :class:`EngineDatetime` (idempotent)."""
    if spiff_timer.datetime is not EngineDatetime:
        spiff_timer.datetime = EngineDatetime
