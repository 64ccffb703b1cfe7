"""The verdict of one candidate on one task and device: a plain record, stored as a row."""

from __future__ import annotations

from dataclasses import dataclass, field

# Every verdict the judge can give, in the order the pipeline can reach them.
VERDICTS = (
    "compile-error",  # the candidate (or its registration) did not build
    "delegated",  # it hands the task's op to MNN's own kernel instead of computing it
    "crash",  # the runner died by a signal or reported an error
    "timeout",  # a run did not return in time
    "not-exercised",  # the candidate was never asked to serve the task's op
    "wrong-shape",  # an output of the wrong shape (or missing)
    "wrong-values",  # outputs outside the task's tolerance, NaN or Inf
    "correct",  # every correctness set matches; timed against native
)


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

    def line(self) -> str:
        """One line for a terminal."""
        speed = ""
        if self.speedup is not None:
            speed = f", {self.speedup:.2f}x vs native ({self.candidate_median_ms:.3f} ms vs {self.native_median_ms:.3f} ms)"
        elif self.correct and not self.timing_reportable:
            speed = " (emulated device: timing not reported)"
        return f"{self.task} on {self.device}: {self.verdict}{speed}" + (f" — {self.reason}" if self.reason else "")
