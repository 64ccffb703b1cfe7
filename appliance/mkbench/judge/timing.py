"""Turning per-iteration times into a speedup a reader can trust.

Native and candidate runs alternate in a balanced order (A B B A ...), so drift and a
warm-up advantage fall on both sides; each run reports per-iteration times; a side's time is
the median over all its iterations; the speedup's spread is the range of per-pair ratios of
run medians. pyperf's habit: say when a figure is unstable rather than hide it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

# Above this, a speedup is re-measured and flagged for review (KernelBench's bound).
IMPLAUSIBLE_SPEEDUP = 10.0


@dataclass(frozen=True)
class Timing:
    native_median_ms: float
    candidate_median_ms: float
    speedup: float  # native / candidate: > 1 means the candidate is faster
    speedup_low: float  # lowest per-pair ratio
    speedup_high: float  # highest per-pair ratio
    pairs: int
    unstable: bool  # the per-pair ratios spread more than 10% around the speedup


def balanced_order(pairs: int) -> list[str]:
    """A B B A A B B A ...: each side goes first equally often."""
    order = []
    for i in range(pairs):
        order += ["native", "candidate"] if i % 2 == 0 else ["candidate", "native"]
    return order


def summarise(native_runs: list[list[float]], candidate_runs: list[list[float]]) -> Timing:
    """Medians per side and the spread of per-pair speedups; runs are per-iteration times."""
    native_all = [t for run in native_runs for t in run]
    candidate_all = [t for run in candidate_runs for t in run]
    native_median = statistics.median(native_all)
    candidate_median = statistics.median(candidate_all)
    ratios = [statistics.median(n) / max(statistics.median(c), 1e-9) for n, c in zip(native_runs, candidate_runs)]
    speedup = native_median / max(candidate_median, 1e-9)
    low, high = min(ratios), max(ratios)
    return Timing(native_median, candidate_median, speedup, low, high, len(ratios),
                  unstable=(high - low) > 0.2 * speedup)


def iterations_for(per_iteration_ms: float, target_run_ms: float, least: int = 5, most: int = 1000) -> int:
    """How many timed iterations make one run last about target_run_ms (more work per run
    narrows the noise, JUDGE.md's measurement)."""
    if per_iteration_ms <= 0:
        return most
    return max(least, min(most, int(target_run_ms / per_iteration_ms)))
