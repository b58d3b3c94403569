"""The plugin documentation keeps up with the contract (the idea of datasette's test_docs.py).

Every hook in engine/hookspecs.py must be documented in docs/plugins.md under a heading that
is its exact signature, and must be named in at least one test module.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from engine import hookspecs
from engine.plugins import DEFAULT_PLUGINS

ROOT = Path(__file__).parent.parent
PLUGINS_DOC = ROOT / "docs" / "plugins.md"
TESTS = Path(__file__).parent
HEADING = re.compile(r"^### `(?P<signature>(?P<name>\w+)\(.*\))`$", re.MULTILINE)


def hook_specs() -> dict[str, str]:
    """Hook name -> its signature line, e.g. ``task_completed(task, data, actor)``."""
    marker = f"{hookspecs.PROJECT}_spec"
    return {
        name: f"{name}{inspect.signature(func)}"
        for name, func in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(func, marker)
    }


HOOKS = hook_specs()


def doc_text() -> str:
    return PLUGINS_DOC.read_text(encoding="utf-8")


def test_the_contract_has_hooks():
    assert len(HOOKS) >= 12 and HOOKS["task_completed"] == "task_completed(task, data, actor)"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_is_documented_with_its_exact_signature(name):
    documented = {m["name"]: m["signature"] for m in HEADING.finditer(doc_text())}
    assert name in documented, f"docs/plugins.md has no '### `{HOOKS[name]}`' heading"
    assert documented[name] == HOOKS[name], f"docs/plugins.md documents {documented[name]}, the spec is {HOOKS[name]}"


def test_no_documented_hook_is_missing_from_the_contract():
    documented = {m["name"] for m in HEADING.finditer(doc_text())}
    assert documented - set(HOOKS) == set()


def test_built_in_plugins_and_the_disable_setting_are_documented():
    text = doc_text()
    for module in DEFAULT_PLUGINS:
        assert f"`{module}`" in text
    assert "SDF_DISABLE_PLUGINS" in text and "sdf plugins" in text


def test_plugin_hooks_have_tests():
    sources = {
        path.relative_to(TESTS).as_posix(): path.read_text(encoding="utf-8")
        for path in TESTS.rglob("test_*.py")
        if path.name != Path(__file__).name
    }
    untested = [name for name in sorted(HOOKS) if not any(re.search(rf"\b{name}\b", text) for text in sources.values())]
    assert untested == [], f"hooks named in no test module: {', '.join(untested)}"
