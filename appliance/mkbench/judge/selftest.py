"""The noise floor: native MNN timed against itself on one device, with the very series
evaluate() times a candidate with (series.py), native's twin in the candidate's place. Any
"speedup" it shows is noise: a candidate whose interval overlaps this band is at parity.
evaluate() measures the floor itself when the store has none for the device, task and settings;
`mkbench selftest` measures it for many tasks up front and shows it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import settings as settings_module
from ..devices import Device
from ..mnn import build as mnn_build
from ..tasks import artifacts as task_artifacts
from ..tasks.spec import Task
from . import series as series_module
from . import sets as evaluation_sets
from .evaluate import TARGET_RUN_MS
from .session import DeviceSession, HarnessError, target_of

# A spread of kinds and sizes: elementwise, memory-bound, reduction, softmax, conv, matmul.
DEFAULT_TASKS = ("Abs", "Exp", "ReduceSum", "Softmax", "Conv", "MatMul", "LayerNorm", "MaxPool")


@dataclass(frozen=True)
class NoiseFloor:
    task: str
    device: str
    pairs: int  # twin runs in the series
    speedup: float  # native / native twin: ~1.0
    low: float  # its 95% interval
    high: float
    median_ms: float
    reportable: bool  # False on emulated devices
    stopped_by: str = ""
    ratios: tuple[float, ...] = ()
    seconds: float = 0.0


def measure(task: Task, device: Device, settings: settings_module.Settings, pairs: int | None = None) -> NoiseFloor:
    """Native against its twin on the device for one task (series.py); `pairs` fixes the number
    of twin runs (default: until the interval is precise or the timing budget is spent)."""
    started = time.monotonic()
    done, _ = twin_series(task, device, settings, pairs)
    if done.failure or done.figure is None:
        raise HarnessError(f"selftest: native against itself failed on {task.name}: {done.failure or 'no figure'}")
    figure = done.figure
    return NoiseFloor(task.name, device.serial, figure.runs, figure.speedup, min(figure.speedup_low, 1.0),
                      max(figure.speedup_high, 1.0), figure.native_median_ms, not device.emulated, done.stopped_by,
                      figure.ratios, time.monotonic() - started)


def twin_series(task: Task, device: Device, settings: settings_module.Settings,
                pairs: int | None = None) -> tuple[series_module.Series, list]:
    """The series of native against its twin, and every run it took (the first, which sized the
    series, included); benchmarks/timing_estimators.py reads the runs themselves."""
    artifacts = task_artifacts.prepare(task, settings)
    native = mnn_build.build_native(target_of(device), settings)
    local = Path(tempfile.mkdtemp(prefix="mkbench-selftest-"))
    session = None
    try:
        drawn = evaluation_sets.prepare(task, artifacts, local / "sets", evaluation_sets.new_seed())
        session = DeviceSession(device, native.guard, {"native": native.runner, "twin": native.runner},
                                {"native": artifacts.mnn_model, "twin": artifacts.mnn_model}, drawn,
                                task_artifacts.run_settings(task, settings.threads), f"selftest-{task.name}", local)
        runs: list = []
        first = series_module.native_run(session, runs, 1, drawn.seed, len(drawn.timed), every_set=True)
        warmup, iterations = series_module.sizing(first, TARGET_RUN_MS)
        bounds = {"min_runs": pairs, "max_runs": pairs} if pairs else {}
        done = series_module.run_series(session, runs, warmup, iterations, first.result.seconds, settings.timing_budget,
                                        None, challenger="twin", **bounds)
        return done, runs
    finally:
        if session is not None:
            session.close()
        shutil.rmtree(local, ignore_errors=True)
