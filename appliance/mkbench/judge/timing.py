"""Turning guarded runs into a speedup a reader can trust.

Runs are sandwiched: native, candidate, native, candidate, ..., native. Each candidate run is
compared with the mean of the native runs on either side of it, so a drift of the device (heat, a
background job) falls on both sides and neither side always goes first. Each native run after a
candidate run does exactly as many iterations as the candidate's loop did, on the same
perturbation seed: it ends on the same inputs, and its outputs judge the candidate's.

A side's time per iteration is taken by the guard's clock (guard.cpp): while the timed runs go,
the guard samples the runner's count of finished runs every 0.2 ms or so, and the median over
those intervals of time per run (weighted by runs) leaves out the runs a busy scheduler
interrupted, as a median of per-run times would. The runner's own clock, in the candidate's
process, is never used. Work a candidate moves out of its loop (before
the warm-up or after the last run) shows as time outside the loop beyond native's: whatever
exceeds native's largest by FIXED_SLACK and SLACK_MS is charged to the loop and noted, so such a
move gains at most that slack.

The speedup is the geometric mean of the per-candidate-run ratios, with the 95% confidence
interval of Student's t over their logarithms (Kalibera and Jones, "Rigorous benchmarking in
reasonable time": ratios of times, runs as the unit of repetition); the judge adds runs until that
interval is within PRECISION of the speedup, or MAX_RUNS or its time budget is reached, and says
which stopped it. pyperf's habit: say how sure a figure is, never hide it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

IMPLAUSIBLE_SPEEDUP = 10.0  # above this, a speedup is re-measured in a fresh process and flagged (KernelBench's bound)
PRECISION = 0.03  # the judge stops adding runs once the 95% interval is within ±3% of the speedup
UNSTABLE = 0.10  # an interval wider than ±10% when the series ends blocks the kernel (`unstable timing`)
CONFIDENCE = 0.95
FIXED_SLACK = 1.25  # a candidate's time outside its loop may exceed native's largest by 25% and SLACK_MS uncharged
SLACK_MS = 20.0


@dataclass(frozen=True)
class Timing:
    native_median_ms: float
    candidate_median_ms: float
    speedup: float  # geometric mean of per-run ratios native / candidate: > 1 means the candidate is faster
    speedup_low: float  # the speedup's 95% confidence interval
    speedup_high: float
    runs: int  # candidate runs
    precise: bool  # the interval is within PRECISION of the speedup
    ratios: tuple[float, ...]

    @property
    def unstable(self) -> bool:
        return not self.precise


def per_iteration_ms(run) -> float:
    """A run's time per iteration by the guard's clock: the median of its sampled intervals
    (guard.cpp: robust to a scheduler's interruptions), else its timed loop over its iterations."""
    return run.run_ms if run.run_ms > 0 else run.timed_ms / max(run.iterations, 1)


def native_ms(run) -> float:
    """A native run's time per iteration."""
    return per_iteration_ms(run)


def candidate_ms(run, native_runs) -> tuple[float, str]:
    """A candidate run's time per iteration, its time outside the loop beyond native's charged to
    it; and a note when something was charged."""
    allowed = max(n.outside_ms for n in native_runs) * FIXED_SLACK + SLACK_MS
    excess = run.outside_ms - allowed
    if excess <= 0:
        return per_iteration_ms(run), ""
    note = (f"outside the loop: {run.outside_ms:.1f} ms before and after the timed runs, native at most "
            f"{allowed:.1f} ms; {excess:.1f} ms charged to the loop")
    return per_iteration_ms(run) + excess / max(run.iterations, 1), note


# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (beyond: 1.96 is within 2%).
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
       2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def interval(ratios: list[float]) -> tuple[float, float, float]:
    """(speedup, low, high): the geometric mean of per-run ratios and its 95% interval (Student's t
    over the ratios' logarithms: ratios of times are log-normal rather than normal)."""
    logs = [math.log(max(r, 1e-12)) for r in ratios]
    centre = statistics.fmean(logs)
    if len(logs) < 2:
        return math.exp(centre), 0.0, math.inf
    half = (T95[len(logs) - 2] if len(logs) - 1 <= len(T95) else 1.96) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(centre), math.exp(centre - half), math.exp(centre + half)


def spread(speedup: float, low: float, high: float) -> float:
    """How far an interval reaches from its speedup, as a share of it (the wider side)."""
    return max(high / speedup - 1.0, 1.0 - low / speedup)


def summarise(native_ms_list: list[float], candidate_ms_list: list[float]) -> Timing:
    """The speedup of sandwiched runs: native_ms_list has one more entry than candidate_ms_list
    (native before and after each candidate run)."""
    ratios = [0.5 * (native_ms_list[i] + native_ms_list[i + 1]) / max(c, 1e-9) for i, c in enumerate(candidate_ms_list)]
    speedup, low, high = interval(ratios)
    precise = low >= speedup * (1 - PRECISION) and high <= speedup * (1 + PRECISION)
    return Timing(statistics.median(native_ms_list), statistics.median(candidate_ms_list), speedup, low, high,
                  len(ratios), precise, tuple(ratios))


def iterations_for(per_iteration_ms: float, target_run_ms: float, least: int = 5, most: int = 1_000_000) -> int:
    """How many timed iterations make one run's loop last about target_run_ms."""
    if per_iteration_ms <= 0:
        return most
    return max(least, min(most, int(target_run_ms / per_iteration_ms)))


def warmup_for(iterations: int) -> int:
    """Warm-up iterations before a run's timed ones: a tenth, at least 2, at most 1000."""
    return max(2, min(1000, iterations // 10))
