"""Built-in assignment: the best-skilled member with the least work.

Among the candidates holding every required skill, pick the one with the fewest open tasks;
ties go to the higher total level in the required skills, then to the name (so the choice is
deterministic). With no required skills, the least loaded member gets the task. Nobody
qualifies: return None and the task stays open for the group to claim.
"""

from __future__ import annotations

from engine.hookspecs import hookimpl


@hookimpl(trylast=True)
def choose_assignee(task, candidates):
    required = task.get("required_skills") or []
    qualified = [c for c in candidates if all(c["skills"].get(skill, 0) >= 1 for skill in required)]
    if not qualified:
        return None
    best = min(qualified, key=lambda c: (c["open_tasks"], -sum(c["skills"].get(s, 0) for s in required), c["name"]))
    return best["name"]
