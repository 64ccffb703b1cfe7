"""Geometry kernels, end to end: a candidate GeometryComputer for the Reshape task, and each way
of being wrong, on the host (timed) and on arm64 under qemu (correctness only).

The candidate replaces MNN's geometry computer for the op type in every runner build (through
the recorder of mnn/runner/mkbench_geometry.inc); the creation-time record must show it served.
"""

from __future__ import annotations

import pytest

from mkbench import settings as settings_module
from mkbench.tasks import get_task

RESHAPE = (settings_module.SHIPPED / "mnn" / "examples" / "reshape_geometry.cpp").read_text()



def mutate(old: str, new: str) -> str:
    assert old in RESHAPE
    return RESHAPE.replace(old, new)


@pytest.fixture()
def judge(judge):  # the Reshape task, on the host unless a test names another device
    def run(source: str, device: str = "host", task="Reshape"):
        return judge(source, task, device)

    return run


def test_the_reshape_task_is_a_geometry_task():
    task = get_task("Reshape")
    assert task.mnn.kind == "geometry" and task.mnn.targets == (("Reshape", None),)


@pytest.mark.slow
def test_a_correct_geometry_computer_is_served_timed_and_recorded(judge):
    verdict = judge(RESHAPE)
    assert verdict.verdict == "correct", verdict.reason
    assert verdict.timing_reportable and verdict.speedup > 0
    geometry = [r for r in verdict.served if r.get("stage") == "geometry" and r["op_type"] == "Reshape"]
    assert geometry and all(r["served"] == "candidate" for r in geometry)
    assert {r["class_defined_in"] for r in geometry} == {"candidate"}
    assert geometry[0]["execution_class"] == "MNN::MkbenchExampleReshapeGeometry"


@pytest.mark.slow
def test_regions_that_copy_half_the_tensor_are_wrong_values(judge):
    verdict = judge(mutate("region.size[2] = total;", "region.size[2] = total / 2;"))
    assert verdict.verdict == "wrong-values", verdict.reason


@pytest.mark.slow
def test_a_syntax_error_is_a_compile_error(judge):
    verdict = judge(mutate("return true;", "return true"))
    assert verdict.verdict == "compile-error" and "error" in verdict.reason


@pytest.mark.slow
def test_registering_an_op_type_the_task_does_not_target_fails_with_the_reason(judge):
    verdict = judge(mutate("{OpType_Reshape}", "{OpType_Reshape, OpType_Squeeze}"))
    assert verdict.verdict == "crash"
    assert "geometry computer for op type Squeeze, which is not a task target" in verdict.reason


@pytest.mark.slow
def test_handing_the_op_back_to_mnns_own_computer_is_delegation(judge):
    source = mutate("static void _create() {", "extern void ___GeometryReshape___create__();\nstatic void _create() {\n    ___GeometryReshape___create__();\n    return;")
    verdict = judge(source)
    assert verdict.verdict == "delegated", verdict.reason
    assert "GeometryReshape" in verdict.reason


@pytest.mark.slow
def test_arm64_under_qemu_judges_correctness_only(judge):
    verdict = judge(RESHAPE, "qemu-arm64")
    assert verdict.verdict == "correct", verdict.reason
    assert not verdict.timing_reportable
    assert any(r.get("stage") == "geometry" and r["served"] == "candidate" for r in verdict.served)


@pytest.mark.slow
def test_a_computer_for_an_op_the_graph_never_computes_is_not_exercised(judge):
    """Registered for Concat, asked for a task whose graph is one Reshape: never asked, never "correct"."""
    from dataclasses import replace

    from mkbench.tasks.spec import MnnTarget

    task = get_task("Reshape")
    task = replace(task, mnn=MnnTarget("geometry", (("Concat", None),), task.mnn.converted_ops, {}))
    verdict = judge(mutate("{OpType_Reshape}", "{OpType_Concat}"), task=task)
    assert verdict.verdict == "not-exercised", verdict.reason
