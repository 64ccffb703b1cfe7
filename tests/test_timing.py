"""Speedups from guarded runs: the sandwich's ratios, their interval, time moved out of the loop,
run sizes."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mkbench.judge import timing


@dataclass
class FakeRun:
    """What timing reads of a guarded run (judge.session.Run)."""

    timed_ms: float
    iterations: int
    outside_ms: float = 50.0
    run_ms: float = 0.0  # the guard's median per iteration (0: none, the loop's mean counts)


def test_each_candidate_run_is_held_against_the_natives_on_either_side():
    # natives 2.0, 2.2, 1.8 around candidates 1.0 and 1.0: ratios 2.1 and 2.0
    figure = timing.summarise([2.0, 2.2, 1.8], [1.0, 1.0])
    assert [round(r, 6) for r in figure.ratios] == [2.1, 2.0]
    assert math.isclose(figure.speedup, math.sqrt(2.1 * 2.0))
    assert figure.runs == 2 and figure.native_median_ms == 2.0 and figure.candidate_median_ms == 1.0


def test_the_interval_narrows_with_agreeing_runs_and_says_when_it_is_precise():
    spread = timing.summarise([1.0] * 4, [1.0, 0.8, 1.25])
    assert spread.speedup_low < 0.8 < 1.25 < spread.speedup_high and not spread.precise
    steady = timing.summarise([1.0] * 6, [0.50, 0.501, 0.499, 0.5, 0.502])
    assert steady.precise and steady.speedup_low < 2.0 < steady.speedup_high
    assert steady.speedup_high / steady.speedup_low < 1.01
    assert not timing.summarise([1.0, 1.0], [0.5]).precise  # one run: no interval at all


def test_a_candidate_is_timed_by_its_loop_and_charged_for_time_moved_out_of_it():
    natives = [FakeRun(100.0, 100, outside_ms=40.0), FakeRun(100.0, 100, outside_ms=50.0)]
    assert timing.native_ms(natives[0]) == 1.0
    honest, note = timing.candidate_ms(FakeRun(50.0, 100, outside_ms=55.0), natives)
    assert honest == 0.5 and note == ""
    # 300 ms outside against native's 50: what exceeds 50 * FIXED_SLACK + SLACK_MS is charged
    moved, note = timing.candidate_ms(FakeRun(10.0, 100, outside_ms=300.0), natives)
    allowed = 50.0 * timing.FIXED_SLACK + timing.SLACK_MS
    assert math.isclose(moved, (10.0 + 300.0 - allowed) / 100) and note.startswith("outside the loop")


def test_the_guards_median_counts_when_it_has_one():
    assert timing.native_ms(FakeRun(100.0, 100, run_ms=0.5)) == 0.5  # interrupted runs made the mean 1.0
    assert timing.native_ms(FakeRun(100.0, 100)) == 1.0


def test_a_run_is_sized_to_its_target_within_bounds():
    assert timing.iterations_for(3.0, 300.0) == 100
    assert timing.iterations_for(200.0, 300.0) == 5  # never fewer than 5 timed iterations
    assert timing.iterations_for(1e-4, 300.0) == 1_000_000
    assert timing.iterations_for(0.0, 300.0) == 1_000_000
    assert timing.warmup_for(5) == 2 and timing.warmup_for(300) == 30 and timing.warmup_for(10**6) == 1000
