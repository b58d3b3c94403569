"""Users and groups, stored in the database; passwords hashed with argon2.

Groups are the candidate groups of human tasks (a BPMN lane name is a group name). The web
login and API tokens build on these rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from . import fastsql
from .errors import Conflict, InvalidInput, NotFound
from .schema import groups, memberships, users, utcnow

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")
_hasher = PasswordHasher()


@dataclass(frozen=True)
class User:
    id: int
    name: str
    display_name: str | None
    email: str | None
    is_admin: bool
    groups: frozenset[str]

    def can_work_on(self, candidate_group: str | None, assignee: str | None) -> bool:
        """Members of the candidate group, the assignee, and admins may act on a task."""
        if self.is_admin or assignee == self.name:
            return True
        return candidate_group is None or candidate_group in self.groups

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "display_name": self.display_name,
            "email": self.email,
            "is_admin": self.is_admin,
            "groups": sorted(self.groups),
        }


def _check_name(name: str, what: str) -> None:
    if not NAME_PATTERN.match(name or ""):
        raise InvalidInput(f"{what} name {name!r} is invalid: use 1-100 letters, digits, '_', '.', '@' or '-'")


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise InvalidInput("password must be at least 8 characters")
    return _hasher.hash(password)


def add_user(
    conn,
    name: str,
    *,
    groups_: list[str] = (),
    password: str | None = None,
    display_name: str | None = None,
    email: str | None = None,
    is_admin: bool = False,
    skills: dict[str, int] | None = None,
) -> User:
    _check_name(name, "user")
    if conn.execute(sa.select(users.c.id).where(users.c.name == name)).first():
        raise Conflict(f"user {name!r} already exists")
    user_id = conn.execute(
        users.insert().values(
            name=name,
            display_name=display_name,
            email=email,
            is_admin=is_admin,
            active=True,
            password_hash=hash_password(password) if password else None,
            created_at=utcnow(),
        )
    ).inserted_primary_key[0]
    for group in groups_:
        add_membership(conn, user_id, group)
    if skills:
        from .assignment import set_skills

        set_skills(conn, user_id, _checked_skills(skills))
    return get_user(conn, name)


def _checked_skills(skills: dict[str, int]) -> dict[str, int]:
    for skill, level in skills.items():
        _check_name(skill, "skill")
        if not isinstance(level, int) or not 1 <= level <= 5:
            raise InvalidInput(f"skill level of {skill!r} must be 1-5, got {level!r}")
    return skills


def ensure_group(conn, name: str) -> int:
    _check_name(name, "group")
    found = conn.execute(sa.select(groups.c.id).where(groups.c.name == name)).scalar()
    if found is not None:
        return found
    return conn.execute(groups.insert().values(name=name)).inserted_primary_key[0]


def add_membership(conn, user_id: int, group: str) -> None:
    group_id = ensure_group(conn, group)
    exists = conn.execute(
        sa.select(memberships).where(memberships.c.user_id == user_id, memberships.c.group_id == group_id)
    ).first()
    if not exists:
        conn.execute(memberships.insert().values(user_id=user_id, group_id=group_id))


FIND_USER = fastsql.Statement("""
    SELECT u.id, u.name, u.display_name, u.email, u.is_admin, g.name AS group_name
    FROM users u LEFT JOIN memberships m ON m.user_id = u.id LEFT JOIN groups g ON g.id = m.group_id
    WHERE u.name = :name AND u.active = :active""")


def find_user(conn, name: str) -> User | None:
    """The active user with this name and their groups (one query: it runs on every task action)."""
    rows = fastsql.fetch(conn, FIND_USER, {"name": name, "active": True})
    if not rows:
        return None
    row = rows[0]
    names = frozenset(r.group_name for r in rows if r.group_name is not None)
    return User(row.id, row.name, row.display_name, row.email, bool(row.is_admin), names)


def get_user(conn, name: str) -> User:
    user = find_user(conn, name)
    if user is None:
        raise NotFound(f"unknown user {name!r}", user=name)
    return user


def list_users(conn) -> list[User]:
    names = conn.execute(sa.select(users.c.name).where(users.c.active.is_(True)).order_by(users.c.name)).scalars()
    return [get_user(conn, name) for name in list(names)]


def verify_password(conn, name: str, password: str) -> User | None:
    """Return the user when the password matches, else None (no hint which part was wrong)."""
    row = conn.execute(sa.select(users.c.password_hash).where(users.c.name == name)).first()
    if row is None or not row.password_hash:
        return None
    try:
        _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return find_user(conn, name)


def group_members(conn, group: str) -> list[str]:
    return list(
        conn.execute(
            sa.select(users.c.name)
            .join(memberships, memberships.c.user_id == users.c.id)
            .join(groups, groups.c.id == memberships.c.group_id)
            .where(groups.c.name == group, users.c.active.is_(True))
            .order_by(users.c.name)
        ).scalars()
    )
