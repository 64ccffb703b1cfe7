"""The unit test before the judge: the model's scaffolded functions compiled alone with the real
compiler (in the candidate jail) and run on the task's own seeded inputs against its ONNX
reference. No MNN is needed; what it shows the model is asserted on, element by element."""

from __future__ import annotations

import shutil

import pytest
from mkbench.agents.tools import unit_test
from mkbench.kinds import kind_of
from mkbench.tasks import get_task


def unit_tests_for(name: str, settings):
    task = get_task(name)
    made = unit_test.for_task(task, kind_of(task).scaffold(task, settings), settings)
    assert not isinstance(made, str), made
    return made


def run(tests, code: str, settings, target: str = "host"):
    return tests.run(code, target, settings.work_dir / "unit-test")


TANH = "void mk_unary_tanh(const float* x, float* y, size_t n) { for (size_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]); }"
GREATER = ("void mk_binary_greater(const float* a, const float* b, int32_t* y, size_t n) "
           "{ for (size_t i = 0; i < n; ++i) y[i] = a[i] > b[i] ? 1 : 0; }")
PROD = ("void mk_reduce_prod(const float* x, float* y, int outside, int axis, int inside) {\n"
        "  for (int o = 0; o < outside; ++o) for (int i = 0; i < inside; ++i) {\n"
        "    float p = 1; for (int a = 0; a < axis; ++a) p *= x[(o * axis + a) * inside + i]; y[o * inside + i] = p; } }")
SOFTMAX = ("void mk_softmax(const float* x, float* y, int n, int stride) {\n"
           "  float m = -INFINITY; for (int a = 0; a < n; ++a) m = std::max(m, x[a * stride]);\n"
           "  float s = 0; for (int a = 0; a < n; ++a) s += std::exp(x[a * stride] - m);\n"
           "  for (int a = 0; a < n; ++a) y[a * stride] = std::exp(x[a * stride] - m) / s; }")
MATMUL = ("void mk_matmul(const float* x0, const float* x1, float* t1) {\n"
          "  for (int i = 0; i < 16; ++i) for (int j = 0; j < 32; ++j) {\n"
          "    float s = 0; for (int k = 0; k < 128; ++k) s += x0[i * 128 + k] * x1[k * 32 + j]; t1[i * 32 + j] = s; } }")


@pytest.mark.parametrize("task, right, wrong, shown", [
    # the last value left unwritten: the SIMD tail a vectorised loop forgets
    ("Tanh", TANH, TANH.replace("i < n", "i + 1 < n"), "got nan (outputs start as NaN here: never written"),
    # a comparison that says >= where the op is >
    ("GreaterEqual", GREATER.replace("greater", "greater_equal").replace(">", ">="), GREATER.replace("greater", "greater_equal"),
     "expected 1, got 0"),
    # a product started from 0: the edge set (products near 1) shows it, where check0's underflow to 0 cannot
    ("ReduceProd_1d", PROD, PROD.replace("float p = 1", "float p = 0"), "(o = 0, i = 0; outside 1, axis 4096, inside 1) over x = ["),
    ("Softmax", SOFTMAX, SOFTMAX.replace("a < n; ++a) y", "a < n - 1; ++a) y"), "(row o = 0, i = 0: n = 2048, stride = 1; a = 2047)"),
    # the generic frame: the task's own shapes; the second matrix read transposed
    ("Gemm_no_bias", MATMUL, MATMUL.replace("x1[k * 32 + j]", "x1[j * 128 + k]"), "t1[0, 0] (flat 0) -> expected"),
])
def test_right_functions_pass_and_wrong_ones_show_where_they_differ(task, right, wrong, shown, settings):
    tests = unit_tests_for(task, settings)
    passed = run(tests, right, settings)
    assert passed.passed and passed.stage == "passed", passed.details
    failed = run(tests, wrong, settings)
    assert not failed.passed and failed.stage == "values", failed.message
    assert "differ on the task's own inputs" in failed.message
    assert shown in failed.details, failed.details
    lines = failed.details.splitlines()
    assert 2 <= len(lines) <= 1 + unit_test.SHOWN and all(" -> expected " in line for line in lines[1:])


def test_an_elementwise_test_shows_the_inputs_and_leaves_a_simd_tail(settings):
    tests = unit_tests_for("Tanh", settings)
    (check,) = tests.checks
    assert check.buffers[0].size % 4 != 0 and check.buffers[0].size > 60  # the ends, spread values, extremes of 3 sets
    failed = run(tests, TANH.replace("std::tanh(x[i])", "x[i]"), settings)
    first = failed.details.splitlines()[1]
    x = float(first.split("x = ")[1].split(" ->")[0])
    assert first.startswith("  y[0]: x = ") and f"got {x:.6g}" in first


def test_a_compile_error_comes_back_as_the_judges_would(settings):
    failed = run(unit_tests_for("Tanh", settings), TANH.replace("std::tanh", "std::tahn"), settings)
    assert failed.stage == "compile" and not failed.passed
    assert "candidate.cpp:" in failed.details and "tahn" in failed.details
    assert 'fix-it:"candidate.cpp"' in failed.details  # MoKA's fix-its read it as they read the judge's
    missing = run(unit_tests_for("Tanh", settings), "", settings)
    assert missing.stage == "compile" and "mk_unary_tanh" in missing.details


def test_crashes_and_hangs_are_stopped(settings, monkeypatch):
    tests = unit_tests_for("Tanh", settings)
    crashed = run(tests, "void mk_unary_tanh(const float* x, float* y, size_t n) { float* p = nullptr; "
                         "for (size_t i = 0; i < n; ++i) p[i * 4096] = x[i]; y[0] = p[1]; }", settings)
    assert crashed.stage == "crash" and "signal SIGSEGV" in crashed.message
    monkeypatch.setattr(unit_test, "RUN_SECONDS", 2)
    hung = run(tests, "void mk_unary_tanh(const float* x, float* y, size_t n) { volatile int k = 1; while (k) {} }", settings)
    assert hung.stage == "timeout" and "did not return within 2 s" in hung.message
    assert not (settings.work_dir / "unit-test").exists()  # nothing left behind


@pytest.mark.skipif(not (shutil.which("aarch64-linux-gnu-g++") and shutil.which("qemu-aarch64-static")),
                    reason="needs g++-aarch64-linux-gnu and qemu-user-static (apt-get install g++-aarch64-linux-gnu qemu-user-static)")
def test_arm64_functions_are_tested_for_arm64(settings):
    """NEON code does not compile for the host; for an arm64 device it is compiled and run as such."""
    neon = ("void mk_unary_tanh(const float* x, float* y, size_t n) { size_t i = 0;\n"
            "  for (; i + 4 <= n; i += 4) { float32x4_t v = vld1q_f32(x + i); vst1q_f32(y + i, v); }\n"
            "  for (; i < n; ++i) y[i] = std::tanh(x[i]); }")
    tests = unit_tests_for("Tanh", settings)
    assert run(tests, neon, settings, "host").stage == "compile"
    failed = run(tests, neon, settings, "arm64")
    assert failed.stage == "values"  # it compiled and ran: the vector part copies instead of tanh
    assert run(tests, TANH, settings, "arm64").passed


def test_a_composites_express_function_is_run_alone_against_mnn(mnn_settings):
    """A composite's function, compiled with the converter's compile line and linked with the
    pinned host library, run on each correctness set: right, wrong (LogSoftmax as the 1.5B model
    wrote it), the wrong shape, a compile error."""
    tests = unit_tests_for("LogSoftmax_axis_2", mnn_settings)
    assert [c.label for c in tests.checks] == [f"{s}: x[8, 32, 64]" for s in ("check0", "check1", "check2")]
    right = ("VARP mk_composite_logsoftmax(VARP x) { auto m = _ReduceMax(x, {2}, true);\n"
             "  return x - m - _Log(_ReduceSum(_Exp(x - m), {2}, true)); }")
    assert run(tests, right, mnn_settings).passed
    wrong = run(tests, "VARP mk_composite_logsoftmax(VARP x) { return _Log(x) - _ReduceSum(_Log(x), {2}, true); }", mnn_settings)
    assert wrong.stage == "values" and "y[0, 0, 0] (flat 0) -> expected" in wrong.details
    shape = run(tests, "VARP mk_composite_logsoftmax(VARP x) { return _ReduceSum(x, {2}, false); }", mnn_settings)
    assert shape.stage == "shape" and "the returned variable has 256 values, the task's output 16384" in shape.message
    broken = run(tests, "VARP mk_composite_logsoftmax(VARP x) { return _Exp(y); }", mnn_settings)
    assert broken.stage == "compile" and "‘y’ was not declared" in broken.details


def test_a_composite_inside_a_larger_graph_is_tested_on_its_own_node(mnn_settings):
    """Gemm_alpha's graph scales and shifts the Gemm's output afterwards; the function stands for
    the Gemm node alone, so it is held against that node's output in the reference run."""
    tests = unit_tests_for("Gemm_alpha", mnn_settings)
    assert run(tests, "VARP mk_composite_gemm(VARP a, VARP b) { return _MatMul(a, b); }", mnn_settings).passed
    transposed = run(tests, "VARP mk_composite_gemm(VARP a, VARP b) { return _MatMul(a, b, false, true); }", mnn_settings)
    assert transposed.stage in ("crash", "shape", "values"), transposed.message


def test_a_machine_without_the_targets_tools_hands_the_kernel_to_the_judge(settings, monkeypatch):
    """No cross compiler or qemu (an NDK-only lab machine): not the model's compile error, but a
    harness fact the attempt records before the judge decides alone."""
    tests = unit_tests_for("Tanh", settings)
    monkeypatch.setattr(unit_test, "COMPILERS", {**unit_test.COMPILERS, "arm64": ("no-such-aarch64-g++", ("-static",))})
    with pytest.raises(unit_test.UnitTestUnavailable, match="no no-such-aarch64-g\\+\\+ here to test arm64 functions"):
        run(tests, TANH, settings, "arm64")


@pytest.mark.parametrize("task, why", [
    ("Reshape", "no unit test frames a movement scaffold"),  # geometry
    ("Mod", "its scaffold has several functions"),
])
def test_tasks_without_a_unit_test_say_why(task, why, settings):
    task = get_task(task)
    made = unit_test.for_task(task, kind_of(task).scaffold(task, settings), settings)
    assert isinstance(made, str) and why in made and made.endswith("the judge is the test")
