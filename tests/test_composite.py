"""Composite kernels, end to end: a converter transform for ONNX Softplus, judged on the
Softplus_2d task on the host (timed) and on arm64 under qemu (correctness only).

The candidate's converter (MNNConvert from the pinned tree with the candidate in place of MNN's
transform) converts the task's model; that model is run and timed against the one the native
converter makes, with the same native runner. The conversion's record proves the transform ran.
"""

from __future__ import annotations

import pytest

from mkbench import settings as settings_module
from mkbench.tasks import get_task

SOFTPLUS = (settings_module.SHIPPED / "mnn" / "examples" / "softplus_composite.cpp").read_text()



def mutate(old: str, new: str) -> str:
    assert old in SOFTPLUS
    return SOFTPLUS.replace(old, new)


@pytest.fixture()
def judge(judge):  # the Softplus_2d task, on the host unless a test names another device
    def run(source: str, device: str = "host", task="Softplus_2d"):
        return judge(source, task, device)

    return run


def test_softplus_is_a_composite_task():
    task = get_task("Softplus_2d")
    assert task.mnn.kind == "composite" and task.mnn.targets == (("Softplus", None),)


@pytest.mark.slow
def test_a_correct_transform_is_served_timed_and_recorded(judge):
    verdict = judge(SOFTPLUS)
    assert verdict.verdict == "correct", verdict.reason
    assert verdict.timing_reportable and verdict.speedup > 0
    assert "convert" in verdict.stage_seconds
    converted = [r for r in verdict.served if r.get("stage") == "converter"]
    assert converted and {r["op_type"] for r in converted} == {"Softplus"}
    assert all(r["served"] == "candidate" for r in converted)


@pytest.mark.slow
def test_a_transform_that_remakes_mnns_own_graph_is_flagged(judge):
    """MNN's own transform makes log(exp(x) + 1); a candidate that makes the same ops is correct
    but flagged for review (a copy of, or delegation to, the native rewrite); the example is not."""
    own = judge(mutate("auto newExpr  = _Add(positive, tail)->expr().first;",
                       "auto newExpr  = _Log(_Add(_Exp(x), _Scalar<float>(1.0f)))->expr().first;"))
    assert own.verdict == "correct", own.reason
    assert any(flag.startswith("graph: the same 3 ops as MNN's own transform") for flag in own.flags), own.flags
    assert not any(flag.startswith("graph:") for flag in judge(SOFTPLUS).flags)


@pytest.mark.slow
def test_a_transform_that_drops_the_tail_is_wrong_values(judge):
    verdict = judge(mutate("auto newExpr  = _Add(positive, tail)->expr().first;", "auto newExpr  = positive->expr().first;"))
    assert verdict.verdict == "wrong-values", verdict.reason


@pytest.mark.slow
def test_a_syntax_error_is_a_compile_error(judge):
    verdict = judge(mutate("return newExpr;", "return newExpr"))
    assert verdict.verdict == "compile-error" and "error" in verdict.reason


@pytest.mark.slow
def test_a_transform_for_another_onnx_op_is_refused(judge):
    verdict = judge(mutate('insert("Softplus",', 'insert("Softsign",'))
    assert verdict.verdict == "compile-error"
    assert "'Softsign'" in verdict.reason and "'Softplus'" in verdict.reason


@pytest.mark.slow
def test_arm64_under_qemu_judges_correctness_only(judge):
    verdict = judge(SOFTPLUS, "qemu-arm64")
    assert verdict.verdict == "correct", verdict.reason
    assert not verdict.timing_reportable


@pytest.mark.slow
def test_a_transform_the_converter_never_asks_for_is_not_exercised(judge):
    """MNN's converter turns ONNX Abs straight into a UnaryOp: a transform registered for it never runs."""
    from dataclasses import replace

    from mkbench.tasks.spec import MnnTarget

    task = get_task("Abs")
    task = replace(task, mnn=MnnTarget("composite", (("Abs", None),), task.mnn.converted_ops, {}))
    source = SOFTPLUS.replace('insert("Softplus",', 'insert("Abs",').replace("MkExampleSoftplusTransform", "MkAbsTransform")
    verdict = judge(source, task=task)
    assert verdict.verdict == "not-exercised", verdict.reason
    assert "never asked the candidate's transform for Abs" in verdict.reason


@pytest.mark.slow
def test_validation_measures_whether_the_converter_asks_for_a_transform(mnn_settings):
    """A probe transform shows it: Softplus reaches the converter's transform, Abs never does."""
    from mkbench.kinds.composite import converter_asks

    assert converter_asks(get_task("Softplus_2d"), "Softplus", mnn_settings) == (True, "")
    asked, reason = converter_asks(get_task("Abs"), "Abs", mnn_settings)
    assert not asked and "never hands Abs to a transform" in reason
