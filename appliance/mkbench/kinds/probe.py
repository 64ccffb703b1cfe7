"""What MNN asks for when it runs a task natively: the native runner's record of one run.

A CPU creator is asked when a session is created, a geometry computer when it is resized; the
runner records both (mnn/runner/mkbench_dispatch.inc, mkbench_geometry.inc). A kind fits a task
only if MNN, with the judge's runtime settings, asks for what that kind replaces: geometry may
lower an op into Raster regions or a loop first (MNN-NOTES).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from .. import settings as settings_module
from ..mnn import build as mnn_build
from ..mnn.runner import runner_argv
from ..tasks import artifacts as task_artifacts
from ..tasks.spec import Task


def host_runner(settings: settings_module.Settings) -> Path | None:
    """The native host runner if it is built (validation never starts a build of minutes)."""
    for status in mnn_build.status(settings):
        if status.target == "host" and status.built:
            return mnn_build.build_native("host", settings).runner
    return None


def native_record(task: Task, runner: Path, settings: settings_module.Settings) -> dict:
    """The native runner's report for one timing run of the task (raises RuntimeError)."""
    artifacts = task_artifacts.prepare(task, settings)
    with tempfile.TemporaryDirectory(prefix="mkbench-probe-") as tmp:
        sets = Path(tmp) / "sets"
        sets.mkdir()
        (sets / "timing").symlink_to(artifacts.inputs / "timing")
        argv = runner_argv(str(runner), str(artifacts.mnn_model), str(sets), f"{tmp}/out", 0, 1, 1, 0,
                           task_artifacts.run_settings(task, settings.threads))
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"the native runner fails: {(result.stderr.strip().splitlines() or [''])[-1][:160]}")
        return json.loads((Path(tmp) / "out" / "report.json").read_text())


def asked(record: dict, stage: str, op_type: str, sub_type: str | None = None) -> bool:
    """Did MNN ask, at this stage, for this op type (and sub-type)?"""
    return any(r.get("op_type") == op_type and r.get("stage", "execution") == stage
               and (sub_type is None or str(r.get("sub_type", "")).upper().endswith(sub_type))
               for r in record.get("served", []))


def executed(record: dict) -> str:
    """The op types the run executed, for a reason's figure."""
    return ", ".join(sorted({op.get("type", "?") for op in record.get("ops", [])}))


def runner_asks(task: Task, runner: Path, settings: settings_module.Settings, stage: str, what: str) -> tuple[bool, str]:
    """(judgeable, reason): does MNN ask `what` ("a CPU creator", "a geometry computer") at `stage`
    for every target the task records?"""
    try:
        record = native_record(task, runner, settings)
    except RuntimeError as error:
        return False, str(error)
    for op_type, sub_type in task.mnn.targets:
        if not asked(record, stage, op_type, sub_type):
            label = f"{op_type}:{sub_type}" if sub_type else op_type
            return False, f"MNN never asks {what} for {label}: it runs {executed(record)}"
    return True, ""
