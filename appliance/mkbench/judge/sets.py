"""One evaluation's input sets: the timed ones and a correctness one drawn fresh, beside the task's
seeded correctness sets.

Named s00, s01, ... in the order the runner takes them (the first ones timed), so nothing in a set's
name says what it is for. What each holds is known to the judge only:
- timed sets (TIMED of them): the task's timing distribution, drawn afresh for this evaluation;
  their outputs after the timed runs are checked against native's on the same inputs;
- the task's seeded sets (check0, check1, edge): the same in every evaluation, for comparability,
  checked against the ONNX reference (the paper's rule) and by a scale-aware check;
- a fresh set: the task's correctness distribution drawn afresh, checked against native MNN's
  outputs on it (validation proved native agrees with the reference on these distributions), so a
  kernel that learned the seeded sets' answers gains nothing.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..tasks import artifacts as task_artifacts
from ..tasks import model as task_model
from ..tasks.spec import Task

TIMED = 1  # timed sets (the runner can go round several, a session each; one set changed before every run suffices)


@dataclass(frozen=True)
class EvaluationSets:
    folder: Path  # all/ (every set: s00/, s01/, ...) and timed/ (the timed sets only), one <input>.npy per input
    timed: tuple[str, ...]  # judged against native's outputs of the same run shape
    seeded: dict  # set name -> the task's set (check0, check1, edge): judged against the reference
    fresh: tuple[str, ...]  # drawn for this evaluation: judged against native's outputs
    seed: int  # this evaluation's draw seed (recorded with the verdict)

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.timed, *self.seeded, *self.fresh)


def new_seed() -> int:
    """A seed no candidate can predict (the operating system's randomness)."""
    return secrets.randbits(31)


def prepare(task: Task, artifacts: task_artifacts.TaskArtifacts, folder: Path, seed: int) -> EvaluationSets:
    """Write the evaluation's sets into folder (a fresh one): all/ for the runs that check
    correctness, timed/ for the timing runs (the same timed sets under the same names: a timing
    run's outputs are checked too, so it has nothing to gain from knowing it is one)."""
    shutil.rmtree(folder, ignore_errors=True)
    every, timing_only = folder / "all", folder / "timed"
    every.mkdir(parents=True)
    names = iter(f"s{i:02d}" for i in range(100))
    timed = []
    for i in range(TIMED):
        name = next(names)
        task_artifacts.write_set(every / name, task_model.draw_inputs(task, "timing", seed=seed + i))
        shutil.copytree(every / name, timing_only / name)
        timed.append(name)
    seeded = {}
    for set_name in artifacts.correctness_sets:
        name = next(names)
        shutil.copytree(artifacts.inputs / set_name, every / name)
        seeded[name] = set_name
    fresh = next(names)
    task_artifacts.write_set(every / fresh, task_model.draw_inputs(task, "check0", seed=seed + TIMED))
    return EvaluationSets(folder, tuple(timed), seeded, (fresh,), seed)
