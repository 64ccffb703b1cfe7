"""The kinds of kernel behind one interface: every kind answers for its own tasks, the registry
picks the kind MNN asks for, and nothing outside kinds/ needs to know a kind's name."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mkbench import kinds
from mkbench.mnn.conversion import ConvertedOp
from mkbench.tasks import all_tasks, get_task


def record(*served: tuple) -> dict:
    """A native runner's report: (op type, sub-type, stage) per thing MNN asked for."""
    return {"served": [{"op_type": op, "sub_type": sub, "stage": stage} for op, sub, stage in served],
            "ops": [{"type": op} for op, _, _ in served]}


def test_every_recorded_kind_is_registered_with_its_own_files():
    recorded = {t.mnn.kind for t in all_tasks(None)[0] if t.mnn}
    assert recorded == set(kinds.KINDS) == {"cpu-execution", "geometry", "composite"}
    for kind in kinds.KINDS.values():
        assert kind.stage and kind.text("system.whole-file") and kind.text("system.scaffolded")
        assert kind.template("head.cpp").startswith("// mkbench scaffold for task @TASK@")


def test_a_task_without_a_known_kind_is_refused_by_name():
    abs_task = get_task("Abs")
    with pytest.raises(kinds.UnknownKind, match="unknown kind of kernel 'vulkan-shader'"):
        kinds.kind_of(replace(abs_task, mnn=replace(abs_task.mnn, kind="vulkan-shader")))
    with pytest.raises(kinds.UnknownKind, match="records no kind"):
        kinds.kind_of(replace(abs_task, mnn=None))


def test_the_first_guess_from_a_converted_graph():
    unary = [ConvertedOp("a", "UnaryOp", "ABS")]
    assert kinds.first_guess(unary) == ("cpu-execution", (("UnaryOp", "ABS"),))
    assert kinds.first_guess([ConvertedOp("r", "Reshape", None)])[0] == "geometry"
    assert kinds.first_guess([ConvertedOp("a", "UnaryOp", "EXP"), ConvertedOp("b", "BinaryOp", "ADD")])[0] == "composite"


def test_the_kind_mnn_asks_for_is_chosen(settings):
    task = get_task("ReduceSum")
    one = (("Reduction", "SUM"),)
    assert kinds.choose(task, one, record(("Reduction", "SUM", "execution")), None, settings) == ("cpu-execution", one, True, "")
    two = (("UnaryOp", "ABS"), ("Reduction", "SUM"))
    both = record(("UnaryOp", "ABS", "execution"), ("Reduction", "SUM", "execution"))
    assert kinds.choose(task, two, both, None, settings)[:3] == ("cpu-execution", two, True)
    lowered = record(("Reduction", "SUM", "execution"), ("CumSum", None, "geometry"))
    assert kinds.choose(task, (("Reduction", "SUM"), ("CumSum", None)), lowered, None, settings)[:3] == \
        ("geometry", (("CumSum", None),), True)
    kind, _, judgeable, reason = kinds.choose(task, one, record(("While", None, "execution")), None, settings)
    assert (kind, judgeable) == ("cpu-execution", False) and "Reduction:SUM" in reason and "While" in reason


def test_only_the_cpu_kind_needs_the_no_loop_hint_for_a_broadcast():
    add = get_task("Add")  # [4,3,64,64] + [1,3,1,1]
    targets = (("BinaryOp", "ADD"),)
    assert kinds.KINDS["cpu-execution"].runtime_hints(add, targets) == {"GEOMETRY_COMPUTE_MASK": 0xFFFB}
    assert kinds.KINDS["cpu-execution"].runtime_hints(get_task("Abs"), (("UnaryOp", "ABS"),)) == {}
    assert kinds.KINDS["composite"].runtime_hints(add, targets) == {} == kinds.KINDS["geometry"].runtime_hints(add, targets)


def test_what_each_kind_tells_a_whole_file_prompt():
    composite, unary = get_task("Softplus_2d"), get_task("Abs")
    assert not kinds.kind_of(composite).shows_converted_graph and kinds.kind_of(unary).shows_converted_graph
    assert 'insert("Softplus", ...)' in kinds.kind_of(composite).task_line(composite)
    assert kinds.kind_of(composite).whole_file(composite, lambda op: None).example == ""  # its example is Softplus's
    prompt = kinds.kind_of(unary).whole_file(unary, lambda op: {"UnaryOp": "UnaryOp"}.get(op))
    assert "Op::main_as_UnaryOp" in prompt.api_queries and "SquaredDifference" in prompt.example  # another op's example
