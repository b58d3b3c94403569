"""``sdf bench``: durable engine throughput against raw in-memory SpiffWorkflow, in one run.

Machines here are shared and noisy, so every figure is reported next to a baseline measured
in the same process: the ratio is what to compare between runs, not the raw rate.
- throughput: a three-user-task approval (start + 3 completions) run N times through raw
  SpiffWorkflow (parse once, everything in memory, default script engine) and through the
  engine's public API with durable storage (SQLite file, and PostgreSQL when given), in
  alternating rounds (see :func:`_measure`).
- loop growth: milliseconds per task completion in an instance whose rework loop has
  already been taken 10, 100 and 1,000 times (should stay flat: history is pruned from the
  task tree, see engine/compaction.py).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.parser import SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState

from ..errors import ConfigurationError
from ..plugins import create_plugin_manager
from ..runtime import build_engine
from ..settings import load_settings

HERE = Path(__file__).parent
APPROVAL = HERE / "approval.bpmn"
LOOP = HERE / "rework_loop.bpmn"
ANSWERS = ({"doc": "report.pdf"}, {"approved": True}, {"accepted": True})
USERS = (("bench_pm", "project_manager"), ("bench_qa", "qa_reviewer"), ("bench_client", "client"))
SAMPLE = 25  # completions timed at each loop depth


def raw_rate(count: int) -> float:
    """Instances per second through raw in-memory SpiffWorkflow."""
    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(APPROVAL))
    spec, subs = parser.get_spec("bench_approval"), parser.get_subprocess_specs("bench_approval")
    began = time.perf_counter()
    for _ in range(count):
        wf = BpmnWorkflow(spec, subs)
        wf.do_engine_steps()
        for answer in ANSWERS:
            task = wf.get_next_task(state=TaskState.READY, manual=True)
            task.data.update(answer)
            task.run()
            wf.do_engine_steps()
        assert wf.is_completed()
    return count / (time.perf_counter() - began)


def _prepared_engine(url: str):
    """An engine with the built-in plugins only: installed third-party plugins (their hooks run
    on every task) would make the figures depend on what else is installed."""
    engine = build_engine(
        load_settings(environ={}, database_url=url), plugins=create_plugin_manager(entry_points=False)
    )
    engine.migrate()
    engine.deploy([APPROVAL, LOOP], deployed_by="bench")
    existing = {u.name for u in engine.list_users()}
    for name, group in USERS:
        if name not in existing:
            engine.add_user(name, groups_=[group])
    return engine


def durable_rate(engine, count: int) -> float:
    """Instances per second through the engine API with durable storage."""
    actors = [name for name, _ in USERS]
    began = time.perf_counter()
    for _ in range(count):
        instance = engine.start("bench_approval", {})
        for actor, answer in zip(actors, ANSWERS, strict=True):
            instance = engine.complete(instance["tasks"][0]["id"], actor, answer)
        assert instance["status"] == "completed", instance
    return count / (time.perf_counter() - began)


def loop_growth(engine, depths: list[int]) -> dict[str, float]:
    """Milliseconds per completion after the rework loop ran ``depth`` times."""
    result = {}
    for depth in depths:
        instance = engine.start("bench_rework_loop", {})
        for _ in range(depth):
            instance = engine.complete(instance["tasks"][0]["id"], "bench_qa", {"rework": True})
        times = []
        for _ in range(SAMPLE):
            began = time.perf_counter()
            instance = engine.complete(instance["tasks"][0]["id"], "bench_qa", {"rework": True})
            times.append(time.perf_counter() - began)
        result[str(depth)] = round(statistics.median(times) * 1000, 3)
    return result


ROUNDS = 8  # alternating raw / durable rounds per measurement


def _measure(url: str, count: int, depths: list[int], progress) -> dict:
    """Raw and durable throughput in alternating rounds, so both meet the same machine.

    The instances are split into :data:`ROUNDS` rounds of raw then durable runs. A shared machine
    slows whole stretches of time; each path's rate is its best round (the least disturbed,
    as ``timeit`` reports), and the median of the per-round ratios is reported beside it.
    """
    engine = _prepared_engine(url)
    rounds = max(1, min(ROUNDS, count // 10))
    size = max(1, count // rounds)
    try:
        raw_rate(max(10, count // 10))  # warm-up both paths (imports, caches)
        durable_rate(engine, max(10, count // 10))
        pairs = [(raw_rate(size), durable_rate(engine, size)) for _ in range(rounds)]
        growth = loop_growth(engine, depths) if depths else {}
    finally:
        engine.close()
    raw, durable = max(r for r, _ in pairs), max(d for _, d in pairs)
    report = {
        "raw_per_s": round(raw, 1),
        "durable_per_s": round(durable, 1),
        "ratio": round(durable / raw, 3),
        "ratio_median_of_rounds": round(statistics.median(d / r for r, d in pairs), 3),
        "rounds": rounds,
        "instances": size * rounds,
        "loop_ms_per_completion": growth,
    }
    if growth:
        first, last = growth[str(depths[0])], growth[str(depths[-1])]
        report["loop_growth_ratio"] = round(last / first, 2)
    if progress:
        progress(_describe(url.split(":")[0], report))
    return report


def _describe(name: str, r: dict) -> str:
    text = (
        f"{name}: raw SpiffWorkflow {r['raw_per_s']}/s, durable {r['durable_per_s']}/s, "
        f"ratio {r['ratio']} (target >= 0.333; median of {r['rounds']} rounds {r['ratio_median_of_rounds']})"
    )
    if r["loop_ms_per_completion"]:
        loops = ", ".join(f"{k}: {v} ms" for k, v in r["loop_ms_per_completion"].items())
        text += f"\n  per completion after N loops: {loops} (growth x{r.get('loop_growth_ratio')})"
    return text


def run_benchmarks(
    *,
    count: int = 300,
    postgres_url: str | None = None,
    loops: list[int] = (10, 100, 1000),
    progress: Callable | None = None,
    background: bool = True,
) -> dict:
    loops = list(loops)
    report = {}
    with tempfile.TemporaryDirectory() as folder:
        report["sqlite"] = _measure(f"sqlite:///{folder}/bench.db", count, loops, progress)
        if background:
            report["sqlite"].update(_background(lambda name: f"sqlite:///{folder}/{name}.db", progress, "sqlite"))
    if postgres_url:
        with scratch_postgres(postgres_url) as url:
            report["postgresql"] = _measure(url, count, loops, progress)
        if background:
            report["postgresql"].update(_background_postgres(postgres_url, progress))
    return report


def _background(url_for, progress, label: str) -> dict:
    from .background import service_throughput, timer_lateness

    result = {"timers": timer_lateness(url_for("timers")), "service_calls": service_throughput(url_for("calls"))}
    if progress:
        t, c = result["timers"], result["service_calls"]
        progress(
            f"{label}: timer lateness with {t['waiting_timers']} waiting, {t['due_timers']} due in one second: "
            f"p50 {t['p50_ms']} ms, p99 {t['p99_ms']} ms (target p99 < 1000 ms)"
        )
        progress(
            f"{label}: service calls ({c['operator_latency_ms']:.0f} ms operator): 1 worker "
            f"{c['one_worker_per_s']}/s, 2 workers {c['two_workers_per_s']}/s, x{c['speedup']} (target >= 1.7)"
        )
    return result


def _background_postgres(server_url: str, progress) -> dict:
    with scratch_postgres(server_url) as timers_url, scratch_postgres(server_url) as calls_url:
        urls = {"timers": timers_url, "calls": calls_url}
        return _background(lambda name: urls[name], progress, "postgresql")


class scratch_postgres:
    """Create a throw-away database on the given server and drop it afterwards."""

    def __init__(self, url: str):
        self.server = sa.make_url(url)
        self.name = f"sdf_bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> str:
        try:
            self._admin(f'CREATE DATABASE "{self.name}"')
        except sa.exc.OperationalError as exc:
            raise ConfigurationError(
                f"cannot reach PostgreSQL at {self.server.render_as_string()}: {exc.orig}"
            ) from exc
        return self.server.set(database=self.name).render_as_string(hide_password=False)

    def __exit__(self, *exc_info) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        engine = sa.create_engine(self.server.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(statement)
        finally:
            engine.dispose()
