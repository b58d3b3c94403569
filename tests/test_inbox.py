"""The human-task inbox: visibility, claim/unclaim/assign, permissions, forms, double completion."""

from __future__ import annotations

import pytest

from engine.errors import Conflict, Forbidden, FormValidationError, InvalidInput, NotFound
from tests.conftest import BPMN, only_task

GOOD = {"title": "Status report", "hours": 4}


@pytest.fixture
def review(team):
    team.deploy([BPMN / "review_loop.bpmn"])
    return team


def test_task_row_carries_lane_priority_due_date_and_form(review):
    instance = review.start("review_loop", {})
    task = only_task(instance)
    assert task["candidate_group"] == "project_manager"
    assert task["priority"] == 70
    assert task["form"] == "forms/submit.json"
    assert task["instructions"] == "Upload the deliverable and log your hours."
    assert task["due_at"] is not None and task["due_at"] > task["created_at"]


def test_inbox_shows_each_user_the_tasks_of_their_groups(review):
    review.start("review_loop", {})
    review.start("review_loop", {})
    assert len(review.list_tasks(user="pat")) == 2
    assert review.list_tasks(user="quinn") == []
    assert review.list_tasks(user="olga") == []
    assert len(review.list_tasks(user="root")) == 2  # admins see everything


def test_claim_then_only_the_assignee_completes(review):
    task = only_task(review.start("review_loop", {}))
    review.add_user("pia", groups_=["project_manager"])
    claimed = review.claim(task["id"], "pat")
    assert (claimed["assignee"], claimed["status"]) == ("pat", "claimed")
    assert review.claim(task["id"], "pat")["assignee"] == "pat"  # claiming your own task again is harmless
    with pytest.raises(Conflict, match="claimed by pat"):
        review.claim(task["id"], "pia")
    with pytest.raises(Conflict, match="claimed by pat"):
        review.complete(task["id"], "pia", GOOD)
    with pytest.raises(Forbidden):
        review.unclaim(task["id"], "pia")
    assert review.unclaim(task["id"], "pat")["status"] == "open"
    assert review.complete(task["id"], "pia", GOOD)["tasks"][0]["element_id"] == "review"
    assert review.get_task(task["id"])["completed_by"] == "pia"


def test_users_outside_the_candidate_group_cannot_claim_or_complete(review):
    task = only_task(review.start("review_loop", {}))
    with pytest.raises(Forbidden, match="not a member of 'project_manager'"):
        review.claim(task["id"], "quinn")
    with pytest.raises(Forbidden):
        review.complete(task["id"], "olga", GOOD)
    assert review.get_task(task["id"])["status"] == "open"


def test_assign_only_to_someone_who_can_work_on_it(review):
    task = only_task(review.start("review_loop", {}))
    review.add_user("pia", groups_=["project_manager"])
    with pytest.raises(InvalidInput, match="quinn is not a member"):
        review.assign(task["id"], "quinn", "pat")
    with pytest.raises(Forbidden):
        review.assign(task["id"], "pat", "olga")
    assert review.assign(task["id"], "pia", "pat")["assignee"] == "pia"


def test_form_errors_name_each_field_and_leave_the_task_open(review):
    task = only_task(review.start("review_loop", {}))
    with pytest.raises(FormValidationError) as info:
        review.complete(task["id"], "pat", {"title": "x", "hours": -1, "contact": "not-an-email", "extra": 1})
    fields = {e["field"] for e in info.value.errors}
    assert {"title", "hours", "extra"} <= fields
    assert review.get_task(task["id"])["status"] == "open"
    with pytest.raises(FormValidationError) as info:
        review.complete(task["id"], "pat", {})
    assert [e["field"] for e in info.value.errors] == ["hours", "title"]
    instance = review.complete(task["id"], "pat", GOOD)
    assert only_task(instance)["element_id"] == "review"
    assert instance["data"]["hours"] == 4


def test_second_completion_of_the_same_task_is_a_conflict(review):
    task = only_task(review.start("review_loop", {}))
    first = review.complete(task["id"], "pat", GOOD)
    with pytest.raises(Conflict, match="already completed by pat"):
        review.complete(task["id"], "pat", GOOD)
    after = review.get_instance(first["id"])
    assert [t["element_id"] for t in after["tasks"]] == ["review"]  # no duplicate downstream task


def test_rework_loop_routes_back_with_the_data(review):
    instance = review.start("review_loop", {})
    instance = review.complete(only_task(instance)["id"], "pat", GOOD)
    instance = review.complete(only_task(instance)["id"], "quinn", {"approved": False, "comment": "add figures"})
    task = only_task(instance)
    assert task["element_id"] == "submit"
    assert instance["data"]["comment"] == "add figures"
    instance = review.complete(task["id"], "pat", {"title": "Status report v2", "hours": 2})
    instance = review.complete(only_task(instance)["id"], "quinn", {"approved": True})
    assert instance["status"] == "completed"
    assert instance["data"]["rounds"] == 2


def test_unknown_task_and_user(review):
    with pytest.raises(NotFound):
        review.claim(999, "pat")
    task = only_task(review.start("review_loop", {}))
    with pytest.raises(NotFound, match="unknown user"):
        review.complete(task["id"], "ghost", GOOD)
    with pytest.raises(InvalidInput):
        review.complete(task["id"], "pat", ["a", "list"])


def test_task_details_show_the_form_and_the_process_data(review):
    instance = review.start("review_loop", {"client": "ACME"}, business_key="ACME-9")
    details = review.task_details(only_task(instance)["id"])
    assert details["form_schema"]["required"] == ["title", "hours"]
    assert details["instance"]["data"]["client"] == "ACME"
    assert details["instance"]["business_key"] == "ACME-9"
    with pytest.raises(NotFound):
        review.task_details(4242)


def test_assign_does_not_take_a_task_from_a_colleague(review):
    task = only_task(review.start("review_loop", {}))
    review.add_user("pia", groups_=["project_manager"])
    review.claim(task["id"], "pat")
    with pytest.raises(Conflict, match="claimed by pat"):
        review.assign(task["id"], "pia", "pia")
    assert review.assign(task["id"], "pia", "pat")["assignee"] == "pia"  # the assignee may hand it on
    assert review.assign(task["id"], "pat", "root")["assignee"] == "pat"  # and an admin may reassign


def test_inbox_queries_use_the_open_task_indexes(review):
    """The open-work lists are asked for in the words of the partial indexes (open and claimed
    tasks only), so the database answers them from those, not by reading every completed task."""
    import sqlalchemy as sa

    first = review.start("review_loop", {})
    review.complete(only_task(first)["id"], "pat", GOOD)
    review.start("review_loop", {})
    captured = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "FROM human_tasks" in statement:
            captured.append((statement, parameters))

    sa.event.listen(review.db.engine, "before_cursor_execute", capture)
    try:
        review.list_tasks(user="pat")
        review.list_tasks(candidate_group="project_manager")
        review.list_tasks(assignee="pat")
    finally:
        sa.event.remove(review.db.engine, "before_cursor_execute", capture)
    assert len(captured) == 3
    with review.db.engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        if review.db.is_sqlite:
            explain = "EXPLAIN QUERY PLAN "
        else:
            cursor.execute("SET enable_seqscan = off")  # tiny tables: make the planner show its index choice
            explain = "EXPLAIN "
        for statement, parameters in captured:
            cursor.execute(explain + statement, parameters)
            plan = " ".join(str(row) for row in cursor.fetchall())
            assert "ix_human_tasks_open_" in plan, (statement, plan)
        cursor.close()
