"""Speedups from per-iteration times: the balanced order, medians, the per-pair spread, run sizes."""

from __future__ import annotations

from mkbench.judge import timing


def test_each_side_goes_first_equally_often():
    order = timing.balanced_order(4)
    pairs = [order[i:i + 2] for i in range(0, len(order), 2)]
    assert pairs == [["native", "candidate"], ["candidate", "native"]] * 2
    assert sum(p[0] == "native" for p in pairs) == sum(p[0] == "candidate" for p in pairs)


def test_speedup_is_native_over_candidate_with_the_pair_range():
    native = [[2.0, 2.0, 2.2], [2.0, 1.9, 2.1], [2.0, 2.0, 2.0]]
    candidate = [[1.0, 1.0, 1.1], [1.6, 1.6, 1.6], [1.0, 1.0, 0.9]]
    summary = timing.summarise(native, candidate)
    assert summary.native_median_ms == 2.0 and summary.candidate_median_ms == 1.0
    assert summary.speedup == 2.0 and summary.pairs == 3
    assert (summary.speedup_low, summary.speedup_high) == (1.25, 2.0)
    assert summary.unstable  # per-pair 1.25-2.0: more than 20% of the speedup apart
    steady = timing.summarise([[2.0], [2.0]], [[1.0], [1.02]])
    assert not steady.unstable and round(steady.speedup_low, 3) == 1.961


def test_a_run_is_sized_to_its_target_within_bounds():
    assert timing.iterations_for(3.0, 300.0) == 100
    assert timing.iterations_for(200.0, 300.0) == 5  # never fewer than 5 timed iterations
    assert timing.iterations_for(1e-4, 300.0) == 1000
    assert timing.iterations_for(0.0, 300.0) == 1000
