"""The verdict of one candidate on one task and device: a plain record, stored as a row."""

from __future__ import annotations

from dataclasses import dataclass, field

# Every verdict the judge can give, in the order the pipeline can reach them.
VERDICTS = (
    "compile-error",  # the candidate (or its registration) did not build
    "forbidden",  # its object reaches for what no kernel needs, or replaces a symbol of the runtime, MNN or the runner
    "delegated",  # it hands the task's op to MNN's own kernel instead of computing it
    "crash",  # the runner died by a signal or reported an error
    "timeout",  # a run did not return in time
    "not-exercised",  # the candidate was never asked to serve the task's op
    "wrong-shape",  # an output of the wrong shape (or missing)
    "wrong-values",  # outputs outside the task's tolerance, NaN or Inf
    "correct",  # every correctness set matches; timed against native
)


# Review flags that keep a kernel out of the wins (fast_p, geomean, best_of) until it is measured
# again clean: how it was timed is in doubt, or it does what a kernel has no business doing.
# Other flags (a graph like MNN's own transform, MNN helpers it calls) are notes for a reader.
BLOCKING = ("threads:", "clock:", "signals:", "files:", "process:", "implausible", "unstable", "sandbox:", "strict:",
            "timing:")


def blocks_win(flag: str) -> bool:
    return flag.startswith(BLOCKING)


@dataclass(frozen=True)
class Verdict:
    verdict: str  # one of VERDICTS
    reason: str  # one line
    task: str
    device: str
    compiled: bool
    correct: bool
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    native_median_ms: float | None = None
    candidate_median_ms: float | None = None
    speedup: float | None = None  # None when not measured or not reportable (emulated device)
    speedup_low: float | None = None
    speedup_high: float | None = None
    timing_reportable: bool = False
    served: tuple = ()  # creation-time records: which code served each op
    flags: tuple[str, ...] = ()  # review flags (implausible speedup, leftover threads, suspicious symbols)
    compiler_output: str = ""
    stage_seconds: dict = field(default_factory=dict)  # build / deploy / run / compare
    evaluation_id: int | None = None  # row in the store, once recorded
    strict_ok: bool | None = None  # the scale-aware check (None: not reached); a failure never wins
    scaled_error: float | None = None  # max |out - ref| / max |ref| over the seeded sets
    native_scaled_error: float | None = None  # native MNN's, on the same draws
    draw_seed: int | None = None  # the seed of this evaluation's fresh draws
    timing_runs: int | None = None  # candidate runs in the timed series
    timing_stopped_by: str | None = None  # what ended the series: precise | N runs | the budget
    noise_floor_low: float | None = None  # the device's native/native band for the task (None: not measured)
    noise_floor_high: float | None = None
    bound_ms: float | None = None  # the time to read the inputs and write the outputs at the device's bandwidth
    bound_fraction: float | None = None  # bound_ms / the candidate's time: 1.0 is a kernel at memory speed
    judged_by: str = "judge"  # judge | lint | unit-test (agents/tools/unit_test.py: feedback, never an attempt's verdict)
    details: str = ""  # beyond the one-line reason: the unit test's first differing elements

    @property
    def blocked(self) -> bool:
        """Correct but kept out of the wins: a blocking flag (see BLOCKING), or the scale-aware check failed."""
        return self.strict_ok is False or any(blocks_win(f) for f in self.flags)

    def line(self) -> str:
        """One line for a terminal."""
        speed = ""
        if self.speedup is not None:
            interval = f" [95%: {self.speedup_low:.2f}-{self.speedup_high:.2f}]" if self.speedup_low is not None else ""
            floor = (f", native vs itself {self.noise_floor_low:.2f}-{self.noise_floor_high:.2f}"
                     if self.noise_floor_low is not None else "")
            speed = (f", {self.speedup:.2f}x vs native{interval} ({self.candidate_median_ms:.4g} ms vs "
                     f"{self.native_median_ms:.4g} ms{floor})")
        elif self.correct and not self.timing_reportable:
            speed = " (emulated device: timing not reported)"
        return f"{self.task} on {self.device}: {self.verdict}{speed}" + (f" — {self.reason}" if self.reason else "")
