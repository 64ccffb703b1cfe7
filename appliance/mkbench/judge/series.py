"""One timed series: the protocol evaluate() times a candidate with and selftest times native
against itself with (the noise floor), so the two can never drift apart.

Native runs first with N iterations sized from an earlier run; then, until the speedup is known
(timing.py), the challenger runs until the guard stops its loop (as long as native's first loop,
then a number of runs the guard draws: guard.cpp) and native runs again with exactly the challenger's iteration count on the same seed, so the two
end on the same inputs: `check(challenger_run, native_run)` judges the challenger's outputs there.
Every run of the series lands in `runs` (the evaluation's measurements).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable

from . import timing
from .session import DeviceSession, HarnessError, Run

MIN_LOOP_SECONDS = 0.05  # a challenger's timed loop lasts at least this long (the guard's clock resolves it finely)
MIN_RUNS = 3  # challenger runs before the interval is looked at
MAX_RUNS = 20
MIN_DEADLINE = 10.0  # seconds any run may take, however fast native is
SLOWER = 20.0  # a challenger run may take this many times native's before it is judged never to return
NATIVE_DEADLINE = 1800.0
MAX_EXTRA = 32  # runs after the stop flag, drawn by the guard in [0, extra): which run is last, no code can foresee
MAX_REPLAY_SECONDS = 120.0  # a challenger claiming more iterations than native does in this long is not timed


@dataclass
class Series:
    figure: timing.Timing | None = None  # None: stopped before a figure (a failure, or an implausible count)
    natives: list[Run] = field(default_factory=list)
    challengers: list[Run] = field(default_factory=list)
    counted: dict = field(default_factory=dict)  # ms per iteration counted, by (label, run index)
    notes: list[str] = field(default_factory=list)  # review flags (time charged, implausible counts)
    stopped_by: str = ""  # precise | N runs | the budget
    failure: tuple | None = None  # (verdict, reason) of a challenger run that failed or was wrong while timed
    wrong_errors: tuple = (None, None)  # (max abs, max rel) when the failure is wrong outputs


RETAKES = 2  # a run a phone took throttled is taken again, at most this many times


def take(runs: list[Run], notes: list[str] | None, make) -> Run:
    """make() a run; while a phone ran it throttled (session.Run.throttled), make it again (the
    session cools the phone down first), at most RETAKES times. Every run taken is kept in `runs`."""
    run = make()
    runs.append(run)
    for _ in range(RETAKES):
        if not run.throttled:
            break
        if notes is not None:
            notes.append(f"retaken: {run.label} run {run.index} ran throttled ({run.throttled})")
        run = make()
        runs.append(run)
    return run


def native_run(session: DeviceSession, runs: list[Run], warmup: int, seed: int, iterations: int,
               every_set: bool = False, label: str = "native", notes: list[str] | None = None) -> Run:
    """A native run that must succeed: its failure is the harness's (HarnessError)."""
    run = take(runs, notes, lambda: session.run(label, warmup, seed, NATIVE_DEADLINE, iterations=iterations,
                                                 every_set=every_set))
    failure = run.failure() or (None if every_set else run.loop_failure(None))
    if failure:
        raise HarnessError(f"native MNN failed: {failure[1]}")
    return run


def run_series(session: DeviceSession, runs: list[Run], warmup: int, iterations: int, slowest_seconds: float,
               budget: float, check: Callable[[Run, Run], tuple | None] | None = None,
               challenger: str = "candidate", min_runs: int = MIN_RUNS, max_runs: int = MAX_RUNS) -> Series:
    """Time `challenger` against native (module docstring). `slowest_seconds` sizes a challenger
    run's deadline (SLOWER times it, past the stop); `budget` is the time the series may take
    beyond min_runs to make its interval precise (never more than max_runs); `check(challenger_run, native_run)` returns
    (verdict, reason, (max abs, max rel)) when the challenger's outputs are wrong, else None."""
    rng = random.SystemRandom()
    series = Series()
    series.natives.append(native_run(session, runs, warmup, rng.randrange(1 << 31), iterations, notes=series.notes))
    stop_after = max(series.natives[0].timed_ms / 1000.0, MIN_LOOP_SECONDS)
    # After the stop, up to this many more runs (the guard draws how many): at most half a loop's worth.
    extra = max(2, min(MAX_EXTRA, int(0.5 * stop_after * 1000.0 / max(timing.native_ms(series.natives[0]), 1e-6))))
    charged: list[float] = []
    budget_ends = time.monotonic() + budget
    while True:
        seed = rng.randrange(1 << 31)
        deadline = stop_after + max(MIN_DEADLINE, SLOWER * slowest_seconds)
        run = take(runs, series.notes, lambda: session.run(challenger, warmup, seed, deadline, stop_after=stop_after,
                                                            every_set=False, extra=extra))
        failure = run.failure() or run.loop_failure(stop_after)
        if failure:
            series.failure = failure
            return series
        if run.iterations * timing.native_ms(series.natives[-1]) > MAX_REPLAY_SECONDS * 1000.0:
            series.notes.append(f"implausible: {run.iterations} iterations in {run.result.seconds:.2f} s, which native "
                                f"would need over {MAX_REPLAY_SECONDS:.0f} s for; not timed")
            return series
        native = native_run(session, runs, warmup, seed, run.iterations, notes=series.notes)
        series.natives.append(native)
        if check is not None and (wrong := check(run, native)):
            series.failure, series.wrong_errors = wrong[:2], wrong[2]
            return series
        series.challengers.append(run)
        per_iteration, note = timing.candidate_ms(run, series.natives)
        if note and note not in series.notes:
            series.notes.append(note)
        charged.append(per_iteration)
        series.counted[(challenger, run.index)] = per_iteration
        for n in series.natives[-2:]:
            series.counted[(n.label, n.index)] = timing.native_ms(n)
        if len(charged) < min_runs:
            continue
        series.figure = timing.summarise([timing.native_ms(n) for n in series.natives], charged)
        if series.figure.precise:
            series.stopped_by = "precise"
        elif len(charged) >= max_runs:
            series.stopped_by = f"{max_runs} runs"
        elif time.monotonic() >= budget_ends:
            series.stopped_by = f"the {budget:g} s budget"
        else:
            continue
        return series


def sizing(first_native: Run, target_ms: float) -> tuple[int, int]:
    """(warm-up, iterations) for a series, from a native run's own per-iteration times."""
    times = first_native.times_ms
    per_iteration = sorted(times)[len(times) // 2] if times else 1.0
    iterations = timing.iterations_for(max(per_iteration, 1e-4), target_ms)
    return timing.warmup_for(iterations), iterations
