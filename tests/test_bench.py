"""The background benchmarks run end to end on small sizes and report sane figures."""

from __future__ import annotations

from engine.bench.background import service_throughput, timer_lateness


def test_timer_lateness_reports_every_due_timer(tmp_path):
    result = timer_lateness(f"sqlite:///{tmp_path}/t.db", waiting=300, due=20)
    assert result["fired"] == 20
    assert 0 <= result["p50_ms"] <= result["p99_ms"] <= result["max_ms"] < 5000


def test_service_throughput_runs_every_call_once_with_one_and_two_workers(tmp_path):
    import sqlalchemy as sa

    from engine.schema import outbox

    url = f"sqlite:///{tmp_path}/s.db"
    result = service_throughput(url, calls=20, latency=0.005)
    assert result["one_worker_per_s"] > 0 and result["two_workers_per_s"] > 0
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        statuses = conn.execute(sa.select(outbox.c.status, outbox.c.attempts)).all()
    engine.dispose()
    assert len(statuses) == 40 and set(statuses) == {("done", 1)}  # each call made exactly once
