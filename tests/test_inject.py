"""Candidate injection end to end: build a candidate runner, run it on a tiny model, read the report.

Uses the real compiler, the real MNN tree and the MNN wheel's converter. conftest.py gives every
test its own MKBENCH_HOME (so the builds table rows land in a throwaway database) and shares the
MNN build cache (MKBENCH_BUILDS): only the first run pays for the native builds (minutes); after
that the whole module takes well under a minute on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mkbench import settings as settings_module
from mkbench import store
from mkbench.mnn.conversion import convert
from mkbench.kinds.cpu_execution import REGISTRATION as CPU
from mkbench.mnn import build, inject, tree

pytestmark = pytest.mark.slow

EXAMPLE = settings_module.SHIPPED / "mnn" / "examples" / "abs_candidate.cpp"
ABS = [("UnaryOp", "ABS")]
SHAPE = (2, 3, 4, 5)


@pytest.fixture
def native_host(mnn_settings) -> build.NativeBuild:
    return build.build_native("host", mnn_settings)


def make_model(directory: Path, settings) -> Path:
    """x → Abs → Exp → y, and x → Neg → z: one ABS to judge, two other unary types stay native."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(SHAPE))
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, list(SHAPE))
    nodes = [
        helper.make_node("Abs", ["x"], ["a"], name="abs0"),
        helper.make_node("Exp", ["a"], ["y"], name="exp0"),
        helper.make_node("Neg", ["x"], ["z"], name="neg0"),
    ]
    model = helper.make_model(helper.make_graph(nodes, "absexp", [x], [y, z]), opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx_path, mnn_path = directory / "absexp.onnx", directory / "absexp.mnn"
    onnx.save(model, onnx_path)
    convert(onnx_path, mnn_path, settings)  # the judge's own converter call (child process, never MNN.tools)
    return mnn_path


@pytest.fixture(scope="session")
def model(tmp_path_factory, session_settings) -> Path:
    return make_model(tmp_path_factory.mktemp("model"), session_settings)


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """s00/ (timed) and s01..s03/ (checked) with seeded draws; s03 holds edge values."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(7)
    draws = [rng.uniform(-3, 3, SHAPE).astype(np.float32) for _ in range(3)]
    draws[2].flat[:6] = [0.0, -0.0, -1e-30, 1e-30, -10.0, 10.0]  # Exp: stay inside MNN's clamp
    for name, array in [("s00", rng.uniform(-3, 3, SHAPE).astype(np.float32))] + [(f"s0{i + 1}", a) for i, a in enumerate(draws)]:
        (root / name).mkdir()
        np.save(root / name / "x.npy", array)
    return root, draws


def run_runner(runner: Path, model: Path, inputs: Path, out: Path, prefix=(), threads: int = 1, extra=()) -> subprocess.CompletedProcess:
    command = [*prefix, str(runner), "--model", str(model), "--sets", str(inputs), "--out", str(out),
               "--warmup", "2", "--iterations", "5", "--rotate", "1", "--perturb", "7", "--threads", str(threads),
               "--precision", "high", "--hint", "GEOMETRY_COMPUTE_MASK=0xFFFB", "--hint", "WINOGRAD_MEMORY_LEVEL=0", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def check_outputs(out: Path, draws: list[np.ndarray]) -> None:
    for i, x in enumerate(draws):
        y = np.load(out / f"s0{i + 1}" / "y.npy")
        z = np.load(out / f"s0{i + 1}" / "z.npy")
        assert y.dtype == np.float32 and y.shape == SHAPE
        with np.errstate(over="ignore"):
            np.testing.assert_allclose(y, np.exp(np.abs(x)), rtol=1e-4)  # MNN's NEON exp: 5.4e-5 under qemu
        np.testing.assert_array_equal(z, -x)


def served_by_sub_type(report: dict) -> dict[str, dict]:
    return {s["sub_type"]: s for s in report["served"] if s["op_type"] == "UnaryOp"}


# ---------------------------------------------------------------- the native runner


def test_native_runner_reports_native_everywhere(native_host, model, inputs, tmp_path):
    result = run_runner(native_host.runner, model, inputs[0], tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    check_outputs(tmp_path, inputs[1])
    assert len(report["times_ms"]) == 5 and all(t > 0 for t in report["times_ms"])
    assert {op["type"] for op in report["ops"]} >= {"UnaryOp"}
    served = served_by_sub_type(report)
    assert set(served) == {"ABS", "EXP", "NEG"}
    assert all(s["served"] == "native" and s["class_defined_in"] == "native" for s in served.values())
    assert served["ABS"]["execution_class"] == "MNN::CPUUnary"
    assert report["mnn_version"] == "3.6.1"
    assert report["settings"] == {"threads": 1, "precision": "high", "warmup": 2, "iterations": 5, "rotate": 1, "perturb": 7,
                                  "hints": {"GEOMETRY_COMPUTE_MASK": 0xFFFB, "WINOGRAD_MEMORY_LEVEL": 0}}
    assert report["iterations"] == 5 and report["timed_inputs"] in ("in-place", "copied") and report["loop_ms"] > 0
    assert report["threads_before"] == report["threads_after"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda root: (root / "s01" / "x.npy").unlink(), "input x"),
        (lambda root: np.save(root / "s01" / "x.npy", np.zeros((2, 3), np.float64)), "float32"),
        (lambda root: np.save(root / "s01" / "w.npy", np.zeros(3, np.float32)), "matches no model input"),
    ],
)
def test_runner_fails_with_one_line(native_host, model, inputs, tmp_path, change, message):
    import shutil

    root = tmp_path / "in"
    shutil.copytree(inputs[0], root)
    change(root)
    result = run_runner(native_host.runner, model, root, tmp_path / "out")
    assert result.returncode != 0
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_runner_rejects_a_bad_model(native_host, inputs, tmp_path):
    bad = tmp_path / "bad.mnn"
    bad.write_bytes(b"not a model at all")
    result = run_runner(native_host.runner, bad, inputs[0], tmp_path / "out")
    assert result.returncode != 0 and "runner:" in result.stderr


# ---------------------------------------------------------------- candidates


def test_abs_candidate_serves_abs_only(mnn_settings, model, inputs, tmp_path):
    built = inject.build_candidate(EXAMPLE.read_text(), ABS, "host", "test-abs", mnn_settings, CPU)
    assert built.ok, built.compiler_output
    assert built.registrations == ("MkExampleAbsCreator/OpType_UnaryOp",)
    assert built.candidate_classes and built.native_references == ()
    result = run_runner(built.runner, model, inputs[0], tmp_path, threads=2)
    assert result.returncode == 0, result.stderr
    check_outputs(tmp_path, inputs[1])
    served = served_by_sub_type(json.loads((tmp_path / "report.json").read_text()))
    assert served["ABS"]["served"] == "candidate"
    assert served["ABS"]["class_defined_in"] == "candidate"
    assert served["ABS"]["execution_class"] == "MNN::MkExampleAbs"
    assert served["EXP"]["served"] == served["NEG"]["served"] == "native"
    assert served["EXP"]["execution_class"] == "MNN::CPUUnary"
    db = store.open_db(mnn_settings.db_path)
    row = db.conn.execute("SELECT what, ok, log FROM builds WHERE id = ?", (built.build_id,)).fetchone()
    assert row[0] == "candidate" and row[1] == 1 and "candidate.cpp" in row[2]


def test_compile_error_is_ok_false_with_the_message(mnn_settings):
    broken = EXAMPLE.read_text().replace("return NO_ERROR;", "return NO_ERROR", 1)
    built = inject.build_candidate(broken, ABS, "host", "test-broken", mnn_settings, CPU)
    assert not built.ok and built.runner is None
    assert "candidate.cpp:" in built.compiler_output and "error" in built.compiler_output
    assert built.reason.startswith("compile error:")


def test_failed_build_leaves_no_stale_runner(mnn_settings):
    good = inject.build_candidate(EXAMPLE.read_text(), ABS, "host", "test-stale", mnn_settings, CPU)
    assert good.ok and good.runner.is_file()
    bad = inject.build_candidate("this is not C++", ABS, "host", "test-stale", mnn_settings, CPU)
    assert not bad.ok and not good.runner.exists()


DELEGATING = """
#include "backend/cpu/CPUBackend.hpp"
#include "backend/cpu/CPUUnary.hpp"
namespace MNN {
class LazyAbsCreator : public CPUBackend::Creator {
public:
    Execution* onCreate(const std::vector<Tensor*>& inputs, const std::vector<Tensor*>& outputs, const MNN::Op* op,
                        Backend* backend) const override {
        auto proc = CPUUnary::selectForFloat(UnaryOpOperation_ABS, static_cast<CPUBackend*>(backend)->precisionMode());
        return new CPUUnary(backend, proc, nullptr, op);
    }
};
REGISTER_CPU_OP_CREATOR(LazyAbsCreator, OpType_UnaryOp);
}
"""


def test_delegation_to_the_native_execution_is_flagged(mnn_settings, model, inputs, tmp_path):
    built = inject.build_candidate(DELEGATING, ABS, "host", "test-delegate", mnn_settings, CPU)
    assert built.ok, built.compiler_output
    assert any("CPUUnary" in ref for ref in built.native_references)
    result = run_runner(built.runner, model, inputs[0], tmp_path)
    assert result.returncode == 0, result.stderr
    check_outputs(tmp_path, inputs[1])  # right answers, but not the candidate's own kernel
    abs_record = served_by_sub_type(json.loads((tmp_path / "report.json").read_text()))["ABS"]
    assert abs_record["served"] == "candidate"
    assert abs_record["class_defined_in"] == "native" and abs_record["execution_class"] == "MNN::CPUUnary"


def test_core_function_selectors_are_flagged_but_not_mentions(mnn_settings):
    selecting = EXAMPLE.read_text().replace(
        "dst[i] = std::fabs(src[i]);",
        "dst[i] = std::fabs(src[i]);  // not MNNSelectBinaryFunctionForFloat\n"
        "            (void)cpu->functions()->MNNSelectUnaryFunctionForFloat;",
    ).replace('#include "core/Execution.hpp"', '#include "core/Execution.hpp"\n#include "compute/CommonOptFunction.h"')
    built = inject.build_candidate(selecting, ABS, "host", "test-selector", mnn_settings, CPU)
    assert built.ok, built.compiler_output
    assert built.native_references == ("MNNSelectUnaryFunctionForFloat (source)",)


def test_outputs_are_poisoned_before_each_check(mnn_settings, model, inputs, tmp_path):
    # A candidate for NEG that writes nothing: z (a model output) must read back as the poison.
    lazy = EXAMPLE.read_text().replace("dst[i] = std::fabs(src[i]);", "(void)src; (void)dst;")
    built = inject.build_candidate(lazy, [("UnaryOp", "NEG")], "host", "test-lazy", mnn_settings, CPU)
    assert built.ok, built.compiler_output
    result = run_runner(built.runner, model, inputs[0], tmp_path)
    assert result.returncode == 0, result.stderr
    for i, x in enumerate(inputs[1]):
        assert np.isnan(np.load(tmp_path / f"s0{i + 1}" / "z.npy")).all()
        with np.errstate(over="ignore"):
            np.testing.assert_allclose(np.load(tmp_path / f"s0{i + 1}" / "y.npy"), np.exp(np.abs(x)), rtol=1e-4)


def test_a_candidate_returning_nullptr_fails_the_run_clearly(mnn_settings, model, inputs, tmp_path):
    refusing = EXAMPLE.read_text().replace("return new MkExampleAbs(backend);", "return nullptr;")
    built = inject.build_candidate(refusing, ABS, "host", "test-nullptr", mnn_settings, CPU)
    assert built.ok, built.compiler_output
    result = run_runner(built.runner, model, inputs[0], tmp_path)
    assert result.returncode != 0 and "candidate creator returned no execution for op 'a'" in result.stderr


def test_threads_left_behind_are_counted(mnn_settings, model, inputs, tmp_path):
    spawning = EXAMPLE.read_text().replace(
        '#include <cmath>', '#include <cmath>\n#include <thread>\n#include <chrono>'
    ).replace(
        "const int size =",
        "std::thread([] { std::this_thread::sleep_for(std::chrono::seconds(30)); }).detach();\n        const int size =",
    )
    built = inject.build_candidate(spawning, ABS, "host", "test-threads", mnn_settings, CPU)
    assert built.ok, built.compiler_output
    assert run_runner(built.runner, model, inputs[0], tmp_path).returncode == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["threads_after"] > report["threads_before"]


def test_several_sub_types_of_one_op_type_go_to_the_candidate(mnn_settings, model, inputs, tmp_path):
    built = inject.build_candidate(EXAMPLE.read_text(), [("UnaryOp", "ABS"), ("UnaryOp", "NEG")], "host", "test-two", mnn_settings, CPU)
    assert built.ok, built.compiler_output
    assert run_runner(built.runner, model, inputs[0], tmp_path).returncode == 0
    served = served_by_sub_type(json.loads((tmp_path / "report.json").read_text()))
    assert served["ABS"]["served"] == served["NEG"]["served"] == "candidate"
    assert served["EXP"]["served"] == "native"
    np.testing.assert_array_equal(np.load(tmp_path / "s01" / "z.npy"), np.abs(inputs[1][0]))  # |x|: the candidate ran


def test_registration_must_cover_the_targets(mnn_settings):
    built = inject.build_candidate(EXAMPLE.read_text(), [("UnaryOp", "ABS"), ("Reduction", "SUM")], "host", "test-targets", mnn_settings, CPU)
    assert not built.ok and "OpType_Reduction" in built.reason
    wrong = inject.build_candidate(EXAMPLE.read_text(), [("BinaryOp", "ADD")], "host", "test-targets", mnn_settings, CPU)
    assert not wrong.ok and "OpType_UnaryOp" in wrong.reason


def test_unknown_targets_are_a_harness_error(mnn_settings):
    with pytest.raises(ValueError, match="NOTATYPE"):
        inject.check_targets([("NOTATYPE", None)], tree.open_tree(mnn_settings).path)
    with pytest.raises(ValueError, match="SQRTT"):
        inject.check_targets([("UnaryOp", "SQRTT")], tree.open_tree(mnn_settings).path)
    assert inject.check_targets([("OpType_UnaryOp", "UnaryOpOperation_ABS")], tree.open_tree(mnn_settings).path) == (("UnaryOp", "ABS"),)


def test_arm64_candidate_runs_under_qemu(mnn_settings, model, inputs, tmp_path):
    import shutil

    if shutil.which("qemu-aarch64-static") is None:
        pytest.skip("qemu-aarch64-static not installed: apt-get install qemu-user-static")
    if mnn_settings.ndk_home is not None:
        pytest.skip("ANDROID_NDK_HOME is set: the arm64 runner is an Android binary, not runnable here")
    built = inject.build_candidate(EXAMPLE.read_text(), ABS, "arm64", "test-arm64", mnn_settings, CPU)
    assert built.ok, built.compiler_output
    native = build.build_native("arm64", mnn_settings)
    result = run_runner(built.runner, model, inputs[0], tmp_path, prefix=native.run_prefix)
    assert result.returncode == 0, result.stderr
    check_outputs(tmp_path, inputs[1])
    served = served_by_sub_type(json.loads((tmp_path / "report.json").read_text()))
    assert served["ABS"]["served"] == "candidate" and served["ABS"]["class_defined_in"] == "candidate"
    assert served["EXP"]["served"] == "native"
