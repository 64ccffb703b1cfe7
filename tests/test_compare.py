"""The comparison that decides correctness."""

from __future__ import annotations

import numpy as np

from mkbench.tasks.compare import compare, compare_all
from mkbench.tasks.spec import Tolerance

FP32 = Tolerance(1e-4, 1e-4)


def test_close_values_pass_and_report_their_error():
    ref = np.linspace(-1, 1, 100, dtype=np.float32)
    result = compare("y", ref, ref + 5e-5, FP32)
    assert result.ok and 4e-5 < result.max_abs_error < 6e-5


def test_nan_and_inf_never_pass():
    ref = np.zeros(4, np.float32)
    assert not compare("y", ref, np.array([0, np.nan, 0, 0], np.float32), FP32).ok
    assert not compare("y", np.full(2, np.inf), np.full(2, np.inf), FP32).ok


def test_off_by_one_is_located():
    ref = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = ref.copy()
    out[2, 1] += 1
    result = compare("y", ref, out, FP32)
    assert not result.ok and result.worst_index == (2, 1) and "[2, 1]" in result.reason


def test_integers_are_exact_and_shapes_must_match():
    ref = np.array([1, 2, 3])
    assert not compare("i", ref, np.array([1, 2, 4]), FP32).ok
    assert not compare("i", ref, np.array([1, 2]), FP32).ok


def test_accumulating_ops_scale_atol_by_output_magnitude():
    ref = np.array([1000.0, 0.0])
    out = np.array([1000.0, 0.05])
    assert not compare("y", ref, out, Tolerance(1e-4, 1e-4)).ok
    assert compare("y", ref, out, Tolerance(1e-4, 1e-4, scale_atol_by_output=True)).ok


def test_missing_output_fails():
    assert not compare_all({"a": np.zeros(1)}, {}, FP32).ok
