"""The noise floor: native MNN timed against itself on one device.

Both sides run the same native runner in the balanced order evaluate() uses; any
"speedup" they show is noise. A candidate's speedup inside this band is parity, not a win
(JUDGE.md: measured here, 0.975-1.024 for a cache-resident task, 0.87-1.14 for a
memory-bound one at 50 loops a run).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import settings as settings_module
from ..devices import Device
from ..mnn import build as mnn_build
from ..tasks.spec import Task
from ..tasks import artifacts as task_artifacts
from . import timing
from .session import DeviceSession, run_failure, target_of

# A spread of kinds and sizes: elementwise, memory-bound, reduction, softmax, conv, matmul.
DEFAULT_TASKS = ("Abs", "Exp", "ReduceSum", "Softmax", "Conv", "MatMul", "LayerNorm", "MaxPool")


@dataclass(frozen=True)
class NoiseFloor:
    task: str
    device: str
    pairs: int
    speedup: float  # native A / native B over all iterations: ~1.0
    low: float  # lowest per-pair ratio
    high: float  # highest per-pair ratio
    median_ms: float
    reportable: bool  # False on emulated devices


def measure(task: Task, device: Device, settings: settings_module.Settings, pairs: int = 6) -> NoiseFloor:
    """Time native against native on the device for one task."""
    s = settings
    artifacts = task_artifacts.prepare(task, s)
    native = mnn_build.build_native(target_of(device), s)
    local = Path(tempfile.mkdtemp(prefix="mkbench-selftest-"))
    session = DeviceSession(device, artifacts, {"a": native.runner, "b": native.runner}, task_artifacts.run_settings(task),
                            f"selftest-{task.name}", local)
    try:
        warmup, iterations, timeout = session.calibrate("a")
        runs: dict[str, list[list[float]]] = {"a": [], "b": []}
        for side in timing.balanced_order(pairs):
            label = "a" if side == "native" else "b"
            result, report, _ = session.run(label, warmup, iterations, timeout)
            failure = run_failure(result, f"native ({label})")
            if failure or report is None:
                raise RuntimeError(f"selftest {task.name}: {failure[1] if failure else 'no report'}")
            runs[label].append(report["times_ms"])
        summary = timing.summarise(runs["a"], runs["b"])
        return NoiseFloor(task.name, device.serial, pairs, summary.speedup, summary.speedup_low, summary.speedup_high,
                          summary.native_median_ms, not device.emulated)
    finally:
        session.close()
        shutil.rmtree(local, ignore_errors=True)
