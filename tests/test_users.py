"""Users and groups: hashed passwords, membership, clear errors."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from engine import users
from engine.errors import Conflict, InvalidInput
from engine.schema import users as users_table


def test_password_is_hashed_with_argon2_and_verifies(sqlite_engine):
    sqlite_engine.add_user("dana", groups_=["delivery_manager", "sponsor"], password="correct horse")
    with sqlite_engine.db.read() as conn:
        stored = conn.execute(sa.select(users_table.c.password_hash)).scalar()
        assert stored.startswith("$argon2") and "correct horse" not in stored
        assert users.verify_password(conn, "dana", "correct horse").groups == {"delivery_manager", "sponsor"}
        assert users.verify_password(conn, "dana", "wrong password") is None
        assert users.verify_password(conn, "nobody", "correct horse") is None


def test_bad_names_duplicates_and_short_passwords_are_refused(sqlite_engine):
    sqlite_engine.add_user("pat")
    with pytest.raises(Conflict):
        sqlite_engine.add_user("pat")
    with pytest.raises(InvalidInput):
        sqlite_engine.add_user("bad name!")
    with pytest.raises(InvalidInput, match="8 characters"):
        sqlite_engine.add_user("short", password="abc")
    assert [u.name for u in sqlite_engine.list_users()] == ["pat"]


def test_group_members(sqlite_engine):
    sqlite_engine.add_user("eli", groups_=["engineer"])
    sqlite_engine.add_user("ema", groups_=["engineer", "qa_reviewer"])
    with sqlite_engine.db.read() as conn:
        assert users.group_members(conn, "engineer") == ["eli", "ema"]
        assert users.group_members(conn, "qa_reviewer") == ["ema"]
