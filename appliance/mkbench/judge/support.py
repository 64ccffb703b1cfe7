"""Can today's judge serve a task? Measured, not assumed.

A CPU-execution candidate replaces the creators of the task's (op type, sub-type) targets.
That only means something if MNN, with the judge's runtime settings, asks a CPU creator for
each target when it runs the task: geometry may lower an op into Raster regions or a loop
first (MNN-NOTES). So the native runner runs the task once on the host, and its
creation-time record must show every target being created.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from .. import settings as settings_module
from ..mnn import build as mnn_build
from ..mnn.convert import CPU_OP_TYPES
from ..tasks.spec import Task
from . import artifacts as task_artifacts
from .evaluate import _runner_argv, judge_settings


def host_runner(settings: settings_module.Settings | None = None) -> Path | None:
    """The native host runner if it is built (validation never starts a build of minutes)."""
    for status in mnn_build.status(settings):
        if status.target == "host" and status.built:
            return mnn_build.build_native("host", settings).runner
    return None


def check(task: Task, runner: Path, settings: settings_module.Settings | None = None) -> tuple[bool, str]:
    """(judgeable, reason): every target is a CPU op type and MNN creates each one."""
    if task.mnn is None:
        return False, "no MNN target recorded"
    not_cpu = [t for t, _ in task.mnn.targets if t not in CPU_OP_TYPES]
    if not_cpu:
        return False, f"{', '.join(not_cpu)} has no CPU execution to replace (geometry kernels are not judged yet)"
    artifacts = task_artifacts.prepare(task, settings=settings)
    with tempfile.TemporaryDirectory(prefix="mkbench-support-") as tmp:
        inputs = Path(tmp) / "inputs"
        inputs.mkdir()
        (inputs / "timing").symlink_to(artifacts.inputs / "timing")
        argv = _runner_argv(str(runner), str(artifacts.mnn_model), str(inputs), f"{tmp}/out", 0, 1, judge_settings(task))
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            return False, f"the native runner fails: {(result.stderr.strip().splitlines() or [''])[-1][:160]}"
        report = json.loads((Path(tmp) / "out" / "report.json").read_text())
    served = report.get("served", [])
    executed = sorted({op.get("type", "?") for op in report.get("ops", [])})
    for op_type, sub_type in task.mnn.targets:
        label = f"{op_type}:{sub_type}" if sub_type else op_type
        if not any(r.get("op_type") == op_type and (sub_type is None or str(r.get("sub_type", "")).upper().endswith(sub_type))
                   for r in served):
            return False, f"MNN never asks a CPU creator for {label}: it runs {', '.join(executed)}"
    return True, ""
