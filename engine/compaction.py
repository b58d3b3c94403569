"""Prune finished history from a running workflow's task tree.

SpiffWorkflow keeps every task it ever ran in one tree, and a loop made with a gateway
back-edge adds a deeper branch on every pass. Two things follow (see the research notes):
time per step grows with history, because the engine walks the whole tree on every
completion, and after ~333 passes the next task sits deeper than ``TaskIterator``'s
``max_depth=1000`` and the workflow stalls without an error.

The engine keeps its own history (the audit event table), so the tree only needs what can
still influence the future: the subtree under the lowest common ancestor of the parents of
all unfinished (and failed) tasks. Everything above that anchor, and every finished branch
hanging off that chain, is removed and the anchor is re-attached to the root. Joins and
gateways only look at tasks below the anchor (the branches still in flight), so behaviour
is unchanged; time per step and state size stay flat however long the instance runs.
Finished subprocesses whose calling task is gone are dropped with it.
"""

from __future__ import annotations

from SpiffWorkflow.util.task import TaskState

KEEP_MASK = TaskState.NOT_FINISHED_MASK | TaskState.ERROR
MIN_TASKS = 40  # below this a tree is cheap to walk: leave it alone


def prune_history(workflow, min_tasks: int = MIN_TASKS) -> int:
    """Prune the top workflow and every subworkflow that holds at least ``min_tasks`` tasks.

    Returns how many tasks were removed.
    """
    removed = _prune_one(workflow) if len(workflow.tasks) >= min_tasks else 0
    for sub in list(workflow.subprocesses.values()):
        if not sub.completed and len(sub.tasks) >= min_tasks:
            removed += _prune_one(sub)
    removed += _drop_orphan_subprocesses(workflow)
    return removed


def _prune_one(workflow) -> int:
    root = workflow.task_tree
    anchor = _anchor(workflow)
    if anchor is None or anchor is root or anchor.parent is root:
        return 0
    keep = {task.id for task in _subtree(anchor)}
    keep.add(root.id)
    doomed = [tid for tid in workflow.tasks if tid not in keep]
    for tid in doomed:
        del workflow.tasks[tid]
    anchor._parent = root.id
    root._children = [anchor.id]
    if workflow.last_task is not None and workflow.last_task.id not in keep:
        workflow.last_task = anchor
    return len(doomed)


def _anchor(workflow):
    """Lowest common ancestor of the parents of every unfinished or failed task."""
    common: list | None = None
    for task in workflow.tasks.values():
        if not task.has_state(KEEP_MASK):
            continue
        chain = _ancestry(task.parent or task)
        common = chain if common is None else _common_prefix(common, chain)
        if len(common) <= 2:  # root or its child: nothing to prune
            break
    return common[-1] if common else None


def _ancestry(task) -> list:
    chain = []
    while task is not None:
        chain.append(task)
        task = task.parent
    chain.reverse()
    return chain


def _common_prefix(a: list, b: list) -> list:
    n = 0
    limit = min(len(a), len(b))
    while n < limit and a[n] is b[n]:
        n += 1
    return a[:n]


def _subtree(task):
    stack = [task]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.children)


def _drop_orphan_subprocesses(workflow) -> int:
    """Remove finished subprocess state whose calling task no longer exists in any tree."""
    removed = 0
    for task_id, sub in list(workflow.subprocesses.items()):
        if sub.completed and _owner_gone(workflow, task_id):
            removed += len(sub.tasks)
            del workflow.subprocesses[task_id]
    return removed


def _owner_gone(workflow, task_id) -> bool:
    if task_id in workflow.tasks:
        return False
    return not any(task_id in sub.tasks for sub in workflow.subprocesses.values())
