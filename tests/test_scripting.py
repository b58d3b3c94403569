"""The script sandbox: normal scripts work, hostile ones are refused or stopped, errors keep their lines."""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.spiff.parser import SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState

from engine.errors import ScriptError, ScriptTimeout
from engine.scripting import (
    SandboxedEnvironment,
    SandboxedScriptEngine,
    compile_expression,
    compile_script,
    create_script_engine,
)

SHORT_LIMIT = 0.3
MARGIN = 0.7  # scheduling slack on a loaded CI machine


def process_xml(script: str, condition: str = "total &gt; 10") -> bytes:
    """start -> script task 'work' -> exclusive gateway -> 'big' (condition) / 'small' (default)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="defs"
                  targetNamespace="https://sdf.example/tests">
  <bpmn:process id="proc" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="work" name="Work"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{escape(script)}</bpmn:script></bpmn:scriptTask>
    <bpmn:exclusiveGateway id="gw" default="f_small"><bpmn:incoming>f2</bpmn:incoming>
      <bpmn:outgoing>f_big</bpmn:outgoing><bpmn:outgoing>f_small</bpmn:outgoing></bpmn:exclusiveGateway>
    <bpmn:endEvent id="big"><bpmn:incoming>f_big</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="small"><bpmn:incoming>f_small</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="gw" />
    <bpmn:sequenceFlow id="f_big" sourceRef="gw" targetRef="big">
      <bpmn:conditionExpression>{condition}</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_small" sourceRef="gw" targetRef="small" />
  </bpmn:process>
</bpmn:definitions>
""".encode()


def workflow(script: str, condition: str = "total &gt; 10", **engine_args) -> BpmnWorkflow:
    parser = SpiffBpmnParser()
    parser.add_bpmn_str(process_xml(script, condition), filename="inline.bpmn")
    engine = create_script_engine(**engine_args)
    return BpmnWorkflow(parser.get_spec("proc"), parser.get_subprocess_specs("proc"), script_engine=engine)


def run_failing(wf: BpmnWorkflow) -> WorkflowTaskException:
    with pytest.raises(WorkflowTaskException) as info:
        wf.do_engine_steps()
    return info.value


def reached(wf: BpmnWorkflow, spec_name: str) -> bool:
    return any(t.state == TaskState.COMPLETED for t in wf.get_tasks(spec_name=spec_name))


@pytest.fixture
def env():
    return SandboxedEnvironment(time_limit=SHORT_LIMIT)


# ---------------------------------------------------------------- normal scripts, through BPMN


def test_script_results_reach_task_data_and_gateway_routes_on_them():
    script = (
        "items = [3, 4, 5]\n"
        "total = sum(items)\n"
        "total += 1\n"
        "summary = {'count': len(items), 'max': max(items)}\n"
        "summary['labels'] = sorted(str(i) for i in items)\n"
    )
    wf = workflow(script)
    wf.do_engine_steps()
    assert wf.is_completed()
    assert reached(wf, "big") and not reached(wf, "small")
    data = wf.get_tasks(spec_name="big")[0].data
    assert data["total"] == 13
    assert data["summary"] == {"count": 3, "max": 5, "labels": ["3", "4", "5"]}


def test_gateway_condition_false_takes_the_default_flow():
    wf = workflow("total = 2 * 3")
    wf.do_engine_steps()
    assert reached(wf, "small") and not reached(wf, "big")


def test_local_function_and_plugin_function_in_a_workflow():
    script = "def tax(amount):\n    return round(amount * rate, 2)\nrate = 0.2\ntotal = tax(double(50))\n"
    wf = workflow(script, functions={"double": lambda v: v * 2})
    wf.do_engine_steps()
    data = wf.get_tasks(spec_name="big")[0].data
    assert data["total"] == 20.0
    assert "tax" not in data and "double" not in data  # callables never reach task data


def test_engine_is_a_python_script_engine_with_the_sandbox():
    engine = create_script_engine(time_limit=1.5)
    assert isinstance(engine, SandboxedScriptEngine)
    assert isinstance(engine.environment, SandboxedEnvironment)
    assert engine.environment.time_limit == 1.5


# ---------------------------------------------------------------- normal scripts, environment


def test_arithmetic_containers_and_augmented_assignment(env):
    data = {"n": 1, "order": {"lines": [{"qty": 2, "price": 5}, {"qty": 1, "price": 7}]}}
    env.execute(
        "n += 1\n"
        "n *= 10\n"
        "total = sum(l['qty'] * l['price'] for l in order['lines'])\n"
        "order['lines'].append({'qty': 1, 'price': 1})\n"
        "a, (b, c) = 1, (2, 3)\n"
        "big = 2 ** 100\n"
        "text = 'ab' * 3 + f'{n:>5}'\n",
        data,
    )
    assert data["n"] == 20
    assert data["total"] == 17
    assert len(data["order"]["lines"]) == 3
    assert (data["a"], data["b"], data["c"]) == (1, 2, 3)
    assert data["big"] == 1267650600228229401496703205376
    assert data["text"] == "ababab   20"


def test_datetime_helpers(env):
    data = {"start": "2024-03-01"}
    env.execute(
        "due = date.fromisoformat(start) + timedelta(days=30)\n"
        "stamp = now()\n"
        "late = datetime(2024, 1, 1, tzinfo=timezone.utc) < stamp\n"
        "price = Decimal('10.10') * 3\n",
        data,
    )
    assert data["due"].isoformat() == "2024-03-31"
    assert data["stamp"].tzinfo is not None
    assert abs(data["stamp"] - datetime.now(UTC)) < timedelta(seconds=5)
    assert data["late"] is True
    assert str(data["price"]) == "30.30"


def test_deleted_names_leave_task_data_and_non_data_is_dropped(env):
    data = {"keep": 1, "drop": 2, "helper": 3}
    env.execute("del drop\nhelper = lambda: 1\nf = len\nnew = keep + 1\n", data)
    assert data == {"keep": 1, "new": 2}


def test_functions_argument_and_add_functions():
    env = SandboxedEnvironment(functions={"double": lambda v: v * 2})
    env.add_functions({"greet": lambda name: f"hello {name}"})
    assert env.evaluate("double(21)", {}) == 42
    assert env.evaluate("greet(who)", {"who": "ann"}) == "hello ann"
    with pytest.raises(ValueError, match="invalid script function name"):
        env.add_functions({"_sneaky": len})


def test_evaluate_sees_data_in_comprehensions_and_external_context(env):
    assert env.evaluate("[i for i in items if i > limit]", {"items": [1, 5, 9], "limit": 4}) == [5, 9]
    assert env.evaluate("dmninputexpr > 3", {}, external_context={"dmninputexpr": 4}) is True
    assert env.evaluate("\n  amount >= 100\n", {"amount": 100}) is True  # whitespace from XML


def test_task_data_cannot_replace_the_guards(env):
    data = {"_getattr_": "x", "_write_": 1, "s": "abc"}
    assert env.evaluate("s.upper()", data) == "ABC"
    env.execute("t = s.upper()", data)
    assert data["t"] == "ABC" and data["_getattr_"] == "x"


def test_ordinary_loops_finish_under_the_time_limit(env):
    data = {}
    env.execute("n = 0\nfor i in range(20000):\n    n += i\nwhile n > 0:\n    n -= 10**7\n", data)
    assert data["n"] <= 0 and data["i"] == 19999


def test_a_script_may_catch_its_own_errors(env):
    data = {}
    env.execute("try:\n    x = 1 / 0\nexcept ZeroDivisionError:\n    x = 0\nfinally:\n    y = 1\n", data)
    assert data == {"x": 0, "y": 1}


# ---------------------------------------------------------------- hostile code

REFUSED = [
    ("import os", ScriptError, "import is not allowed"),
    ("from os import path", ScriptError, "import is not allowed"),
    ("__import__('os')", ScriptError, '"__import__" is an invalid variable name'),
    ("().__class__.__bases__[0].__subclasses__()", ScriptError, "invalid attribute name"),
    ("open('/tmp/x', 'w')", NameError, "'open' is not defined"),
    ("getattr(x, '__class__')", ScriptError, "attribute '__class__' is not allowed"),
    ("'{0.__class__}'.format(1)", ScriptError, "str.format() is not allowed"),
    ("str.format('{0.__class__}', 1)", ScriptError, "str.format() is not allowed"),
    ("(i for i in ()).gi_frame.f_globals", ScriptError, '"gi_frame" is a restricted name'),
    ("g = (i for i in ())\ny = getattr(g, 'gi_frame')", ScriptError, "attribute 'gi_frame' is not allowed"),
    ("type(1)", NameError, "'type' is not defined"),
    ("vars()", NameError, "'vars' is not defined"),
    ("globals()", NameError, "'globals' is not defined"),
    ("setattr(x, 'real', 2)", NameError, "'setattr' is not defined"),
    ("eval('1')", ScriptError, "Eval calls are not allowed"),
    ("class A:\n    pass", ScriptError, "class definitions are not allowed"),
    ("def g():\n    yield 1", ScriptError, "generator functions (yield) are not allowed"),
    ("10**10**8", ScriptError, "the result of ** would have about 100,000,000 digits"),
    ("x = 7\nx **= 10**8", ScriptError, "the result of ** would have"),
    ("pow(10, 10**8)", ScriptError, "the result of ** would have"),
    ("1 << 10**9", ScriptError, "the result of << would have more than"),
    ("'a' * 10**10", ScriptError, "str * 10000000000 would have 10,000,000,000 items"),
    ("[0] * 10**8", ScriptError, "would have 100,000,000 items"),
    ("s = 'ab'\nwhile True:\n    s = s + s", ScriptError, "str + str would have"),
    ("list(range(10**9))", ScriptError, "range() would have 1,000,000,000 items"),
    ("'x'.ljust(10**10)", ScriptError, "the padded string would have"),
    ("'-'.join(['a' * 10**6] * 100)", ScriptError, "the joined string would have"),
    ("f'{1:>9999999999}'", ScriptError, "format width 9999999999 is too large"),
    ("'%*d' % (10**9, 1)", ScriptError, "'*' widths in %-formatting are not allowed"),
    ("sum([[1]] * 10, [])", ScriptError, "sum() of sequences is not allowed"),
    ("raise ValueError.mro()[-2]()", ScriptError, "raised BaseException, which is not allowed"),
]


@pytest.mark.parametrize(("source", "error", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_hostile_code_is_refused(env, source, error, message):
    started = time.perf_counter()
    with pytest.raises(error) as info:
        env.execute(source, {"x": 1})
    assert message in str(info.value)
    assert time.perf_counter() - started < 0.2  # refused before doing the work


def test_refusals_report_the_script_line(env):
    with pytest.raises(ScriptError) as info:
        env.execute("a = 1\nb = 2\nc = 'x' * 10**9\n", {})
    assert info.value.line == 3
    assert info.value.to_dict()["line"] == 3


TIMEOUTS = [
    "while True: pass",
    "n = 0\nwhile True:\n    n += 1",
    "[1 for a in range(10**7) for b in range(10**7)]",
    "def spin(n):\n    while n >= 0:\n        n = n + 1\nspin(0)",
    "def spin():\n    n = 0\n    while True:\n        n += 1\nx = [spin() for _ in range(1)]",
    # the timeout cannot be swallowed: every except/finally body re-raises it
    "try:\n    while True: pass\nexcept Exception:\n    while True: pass",
    "try:\n    while True: pass\nexcept:\n    pass\nwhile True: pass",
    "try:\n    while True: pass\nfinally:\n    while True: pass",
]


@pytest.mark.timeout(10)  # fail, not hang, if the sandbox regresses
@pytest.mark.parametrize("source", TIMEOUTS)
def test_endless_code_is_stopped_at_the_time_limit(env, source):
    started = time.perf_counter()
    with pytest.raises(ScriptTimeout, match=r"exceeded the 0\.3 s time limit"):
        env.execute(source, {})
    elapsed = time.perf_counter() - started
    assert SHORT_LIMIT <= elapsed < SHORT_LIMIT + MARGIN


@pytest.mark.timeout(10)
def test_endless_expression_is_stopped(env):
    started = time.perf_counter()
    with pytest.raises(ScriptTimeout, match="expression exceeded"):
        env.evaluate("any(a == b - 1 and False for a in range(10**7) for b in range(10**7))", {})
    assert time.perf_counter() - started < SHORT_LIMIT + MARGIN


def test_timeout_in_a_worker_thread(env):
    outcome = {}

    def work():
        outcome["trace_before"] = sys.gettrace()
        started = time.perf_counter()
        try:
            env.execute("while True:\n    pass", {})
        except ScriptTimeout as err:
            outcome["error"] = err
        outcome["elapsed"] = time.perf_counter() - started
        outcome["trace"] = sys.gettrace()

    previous = sys.gettrace()
    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert isinstance(outcome["error"], ScriptTimeout)
    assert outcome["elapsed"] < SHORT_LIMIT + MARGIN
    assert outcome["trace"] is outcome["trace_before"]  # the worker's own trace hook is restored
    assert sys.gettrace() is previous  # the main thread was never touched


@pytest.mark.timeout(10)
def test_hostile_scripts_have_no_side_effect_and_the_interpreter_recovers(env, tmp_path):
    target = tmp_path / "pwned.txt"
    path = repr(str(target))
    attempts = [
        f"open({path}, 'w').write('x')",
        f"__import__('os').system('touch ' + {path})",
        f"import os\nos.system('touch ' + {path})",
        f"from pathlib import Path\nPath({path}).write_text('x')",
        f"for c in ().__class__.__base__.__subclasses__():\n    if c.__name__ == 'FileIO':\n        c({path}, 'w')",
        f"g = (i for i in ())\ng.gi_frame.f_builtins['open']({path}, 'w')",
        f"getattr(getattr(now, '__globals__')['__builtins__'], 'open')({path}, 'w')",
        f"'{{0.__globals__[sys].modules[os].system}}'.format(now)\nopen({path}, 'w')",
        f"exec(\"open({path}, 'w')\")",
        f"try:\n    while True: pass\nexcept Exception:\n    open({path}, 'w')",
    ]

    def spy(frame, event, arg):  # a debugger/coverage hook that must survive
        return None

    previous = sys.gettrace()
    sys.settrace(spy)
    try:
        for source in attempts:
            with pytest.raises((ScriptError, NameError)):
                env.execute(source, {})
            assert sys.gettrace() is spy
    finally:
        sys.settrace(previous)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    data = {"n": 1}
    env.execute("n = n + 1\nfor i in range(3):\n    n += i", data)  # the next script runs normally
    assert data == {"n": 5, "i": 2}


# ---------------------------------------------------------------- errors through SpiffWorkflow


def test_runtime_error_keeps_the_script_line_and_the_task_is_in_error():
    wf = workflow("a = 1\nb = 0\nc = a / b\nd = 4\n")
    err = run_failing(wf)
    assert err.line_number == 3
    assert err.error_line == "c = a / b"
    assert err.error_type == "ZeroDivisionError"
    assert "division by zero" in str(err)
    assert isinstance(err.__context__, ZeroDivisionError)
    assert err.task.task_spec.name == "work"
    assert err.task.state == TaskState.ERROR
    assert not wf.is_completed()


def test_error_inside_a_local_function_reports_the_deepest_line():
    wf = workflow("def half(v):\n    return v / 0\n\ntotal = half(4)\n")
    err = run_failing(wf)
    assert err.line_number == 2


@pytest.mark.timeout(10)
def test_timeout_in_a_script_task_is_a_workflow_task_exception():
    wf = workflow("total = 0\nwhile True:\n    total += 1\n", time_limit=SHORT_LIMIT)
    started = time.perf_counter()
    err = run_failing(wf)
    assert time.perf_counter() - started < SHORT_LIMIT + MARGIN
    assert err.error_type == "ScriptTimeout"
    assert "script exceeded the 0.3 s time limit" in str(err)
    assert isinstance(err.__context__, ScriptTimeout)
    assert err.line_number in (2, 3)
    assert err.task.state == TaskState.ERROR


def test_import_in_a_script_task_is_a_workflow_task_exception():
    err = run_failing(workflow("total = 1\nimport os\n"))
    assert err.error_type == "ScriptError"
    assert "import is not allowed" in str(err)
    assert isinstance(err.__context__, ScriptError)
    assert err.line_number == 2
    assert err.error_line == "import os"


def test_guard_refusal_in_a_script_task_is_a_workflow_task_exception():
    err = run_failing(workflow("total = 1\nbig = 10 ** 10 ** 8\n"))
    assert err.error_type == "ScriptError"
    assert "the result of ** would have" in str(err)
    assert isinstance(err.__context__, ScriptError)
    assert err.line_number == 2


def test_refused_gateway_condition_names_the_expression_and_the_reason():
    wf = workflow("total = 20", condition="total.__class__ is int")
    err = run_failing(wf)
    assert "Error evaluating expression 'total.__class__ is int'" in str(err)
    assert "invalid attribute name" in str(err)
    assert isinstance(err.__cause__, ScriptError)
    assert err.task.task_spec.name == "gw"


def test_failing_gateway_condition_keeps_spiffs_did_you_mean():
    err = run_failing(workflow("total = 20", condition="totl &gt; 10"))
    assert "NameError: name 'totl' is not defined" in str(err)
    assert "Did you mean 'total'?" in str(err)


def test_service_call_errors_become_workflow_task_exceptions():
    wf = workflow("total = 1")
    task = wf.get_tasks(spec_name="work")[0]
    with pytest.raises(WorkflowTaskException) as info:
        wf.script_engine.call_service(task, operation_name="crm/Lookup")
    assert info.value.error_type == "NotImplementedError"


# ---------------------------------------------------------------- compile functions (deploy-time validation)


def test_compile_script_reports_syntax_error_line():
    with pytest.raises(ScriptError) as info:
        compile_script("x = 1\ny = (\n")
    assert info.value.line == 2
    assert "SyntaxError" in info.value.message


def test_compile_expression_reports_syntax_error_line():
    with pytest.raises(ScriptError) as info:
        compile_expression("(amount > 1 and\n status === 'ok')")
    assert info.value.line == 2


def test_compile_refuses_import_with_its_line():
    with pytest.raises(ScriptError, match="import is not allowed") as info:
        compile_script("x = 1\nimport os\n")
    assert info.value.line == 2
    with pytest.raises(ScriptError) as info:
        compile_expression("import os")
    assert info.value.line == 1


def test_compiled_code_is_cached_and_runnable():
    code = compile_script("x = 1")
    assert compile_script("x = 1") is code
    assert compile_expression("a + 1") is compile_expression("a + 1")
    assert code.co_filename == "<string>"
