"""MNNConvert from the pinned tree, and composite candidates linked into it: real builds, real conversions.

The first run builds MNNConvert into the shared build cache (20-40 min on 2 cores); after that each
candidate converter takes seconds. The converted models run on the MNN wheel's runtime (a child
process, never MNN.tools) and are checked against the ONNX reference.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from mkbench import settings as settings_module
from mkbench import store
from mkbench.tasks.compare import compare_all
from mkbench.mnn import converter_build as converter
from mkbench.mnn.conversion import WHEEL, compute_ops, convert, converted_ops, converter_identity
from mkbench.tasks import get_task
from mkbench.tasks import model as task_model
from mkbench.tasks.native import run_native

pytestmark = pytest.mark.slow

EXAMPLE = settings_module.SHIPPED / "mnn" / "examples" / "softplus_composite.cpp"
TASK = "Softplus_2d"


@pytest.fixture
def built(mnn_settings) -> converter.ConverterBuild:
    return converter.build_converter(mnn_settings)


@pytest.fixture
def task_onnx(tmp_path):
    task = get_task(TASK)
    model = task_model.build_model(task)
    path = tmp_path / "task.onnx"
    onnx.save(model, path)
    return task, model, path


def labels(mnn_path, settings, tool=None) -> list[str]:
    return [op.label for op in compute_ops(converted_ops(mnn_path, settings, tool))]


def test_tree_converter_matches_the_wheel(built, task_onnx, tmp_path, mnn_settings):
    task, _, onnx_path = task_onnx
    assert converter.tree_converter(mnn_settings) == built.converter
    assert converter.build_converter(mnn_settings) == built  # the second call is the cached build
    convert(onnx_path, tmp_path / "tree.mnn", mnn_settings)  # a tree is configured: the tree's converter
    convert(onnx_path, tmp_path / "wheel.mnn", mnn_settings, WHEEL)
    assert labels(tmp_path / "tree.mnn", mnn_settings, built.converter) == labels(tmp_path / "wheel.mnn", mnn_settings, WHEEL)
    assert labels(tmp_path / "tree.mnn", mnn_settings) == list(task.mnn.converted_ops)
    assert converter_identity(None, mnn_settings) == f"tree-{built.key}"
    assert converter_identity(WHEEL, mnn_settings).startswith("wheel-")


def test_softplus_composite_serves_the_task(built, task_onnx, tmp_path, mnn_settings):
    task, model, onnx_path = task_onnx
    result = converter.build_composite_candidate(EXAMPLE.read_text(), "Softplus", mnn_settings)
    assert result.ok, result.compiler_output
    assert result.registered_ops == ("Softplus",)
    assert result.removed_members == ("OnnxSoftplus.cpp.o",)
    print(f"candidate converter built in {result.seconds:.1f} s")

    served_log = tmp_path / "served.log"
    convert(onnx_path, tmp_path / "candidate.mnn", mnn_settings, result.converter, env={converter.SERVED_LOG_ENV: str(served_log)})
    assert converter.served_transforms(served_log) == ["Softplus"]
    native_log = tmp_path / "native-served.log"
    convert(onnx_path, tmp_path / "native.mnn", mnn_settings, built.converter, env={converter.SERVED_LOG_ENV: str(native_log)})
    assert converter.served_transforms(native_log) == []  # MNN's own transforms record nothing

    candidate_ops = labels(tmp_path / "candidate.mnn", mnn_settings)
    assert candidate_ops != labels(tmp_path / "native.mnn", mnn_settings)
    assert "UnaryOp:LOG1P" in candidate_ops and "ReLU" in candidate_ops

    # Both models run on the wheel's runtime and agree with the ONNX reference, negative inputs included.
    inputs = {"x": np.random.default_rng(3).uniform(-20, 20, (8, 128)).astype(np.float32)}
    reference = task_model.reference_outputs(task, inputs, model)
    for name in ("candidate", "native"):
        outputs = run_native(tmp_path / f"{name}.mnn", inputs, ["t0"], tmp_path / f"run-{name}")
        comparison = compare_all(reference, outputs, task.tolerance)
        assert comparison.ok, f"{name}: {comparison.reason}"

    db = store.open_db(mnn_settings.db_path)
    row = db.execute("SELECT ok FROM builds WHERE id = ? AND what = 'composite'", (result.build_id,)).fetchone()
    db.close()
    assert row is not None and row[0] == 1


def test_compile_error_is_a_failed_build(built, mnn_settings):
    broken = EXAMPLE.read_text().replace("_Relu(x);", "_Relu(x)")  # a missing semicolon
    result = converter.build_composite_candidate(broken, "Softplus", mnn_settings)
    assert not result.ok and result.converter is None
    assert result.reason.startswith("compile error: ") and "error" in result.reason
    assert "candidate.cpp" in result.reason
    assert not (result.directory / "MNNConvert").exists()


def test_wrong_op_and_no_transform_are_refused(built, mnn_settings):
    wrong = EXAMPLE.read_text().replace('insert("Softplus"', 'insert("Softsign"')
    result = converter.build_composite_candidate(wrong, "Softplus", mnn_settings)
    assert not result.ok
    assert result.reason == "the file registers a transform for ONNX op 'Softsign', but the task's op is 'Softplus'"
    assert result.registered_ops == ("Softsign",)

    source = EXAMPLE.read_text()
    unregistered = source[: source.index("static auto gRegister")] + "} // namespace Express\n} // namespace MNN\n"
    result = converter.build_composite_candidate(unregistered, "Softplus", mnn_settings)
    assert not result.ok and result.reason.startswith("the file registers no transform")


def test_served_transforms_without_a_log(tmp_path):
    assert converter.served_transforms(tmp_path / "absent.log") == []
