"""Can the judge serve a task, and with which kind of kernel? Measured, not assumed.

A CPU-execution candidate replaces the creators of the task's (op type, sub-type) targets, a
geometry candidate the geometry computer of an op type. Either only means something if MNN,
with the judge's runtime settings, asks for it when it runs the task: geometry may lower an op
into Raster regions or a loop first (MNN-NOTES). So the native runner runs the task once on the
host, and its creation-time record (CPU creations and geometry computations) must show every
target being asked for. A composite candidate replaces the converter's transform of the task's
ONNX operator: a probe transform in a candidate converter shows whether the converter asks for
one when it converts the task, and every evaluation proves the candidate's ran.
"""

from __future__ import annotations

import json
import os
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


def native_report(task: Task, runner: Path, settings: settings_module.Settings | None = None) -> dict:
    """The native runner's report.json for one timing run of the task (raises RuntimeError)."""
    artifacts = task_artifacts.prepare(task, settings=settings)
    with tempfile.TemporaryDirectory(prefix="mkbench-support-") as tmp:
        inputs = Path(tmp) / "inputs"
        inputs.mkdir()
        (inputs / "timing").symlink_to(artifacts.inputs / "timing")
        argv = _runner_argv(str(runner), str(artifacts.mnn_model), str(inputs), f"{tmp}/out", 0, 1, judge_settings(task))
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"the native runner fails: {(result.stderr.strip().splitlines() or [''])[-1][:160]}")
        return json.loads((Path(tmp) / "out" / "report.json").read_text())


# A transform that only shows whether the converter asks for one: it records (the candidate
# converter's recorder does) and declines, so MNN's conversion goes on as without it.
_PROBE = """
#include <MNN/expr/ExprCreator.hpp>
#include "MNN_generated.h"
#include "OnnxExtraManager.hpp"
namespace MNN {
namespace Express {
class MkbenchProbeTransform : public OnnxExtraManager::Transform {
public:
    EXPRP onExecute(EXPRP expr) const override { return nullptr; }
};
static auto gMkbenchProbe = []() {
    OnnxExtraManager::get()->insert("%s", std::shared_ptr<OnnxExtraManager::Transform>(new MkbenchProbeTransform));
    return true;
}();
}  // namespace Express
}  // namespace MNN
"""


def converter_asks(task: Task, onnx_op: str, settings: settings_module.Settings | None = None) -> tuple[bool, str]:
    """(asked, reason): does MNN's converter hand the task's `onnx_op` nodes to a transform at all?
    Measured with a probe transform in a candidate converter: an ONNX op the converter's front end
    turns into an MNN op directly never reaches a transform, so no composite kernel could serve it."""
    from ..mnn import convert as mnn_convert
    from ..mnn import converter as mnn_converter

    # A workspace per process: validation's workers probe at once, and a build clears its workspace.
    built = mnn_converter.build_composite_candidate(_PROBE % onnx_op, onnx_op, settings, worker=f"probe-{os.getpid()}")
    if not built.ok:
        return False, f"the probe converter does not build: {built.reason}"
    artifacts = task_artifacts.prepare(task, settings=settings)
    with tempfile.TemporaryDirectory(prefix="mkbench-probe-") as tmp:
        log = Path(tmp) / "transforms.log"
        try:
            mnn_convert.convert(artifacts.onnx_model, Path(tmp) / "probe.mnn", converter=built.converter,
                                env={mnn_converter.SERVED_LOG_ENV: str(log)})
        except mnn_convert.ConversionError:
            pass  # declining may fail the conversion; the record says whether the transform was asked
        asked = onnx_op in mnn_converter.served_transforms(log)
    return (True, "") if asked else (False, f"MNN's converter never hands {onnx_op} to a transform (its front end converts it)")


def _asked(served: list[dict], stage: str, op_type: str, sub_type: str | None = None) -> bool:
    return any(r.get("op_type") == op_type and r.get("stage", "execution") == stage
               and (sub_type is None or str(r.get("sub_type", "")).upper().endswith(sub_type)) for r in served)


def choose_kind(task: Task, targets: tuple, report: dict, tree_root: Path | None) -> tuple[str, tuple, bool, str]:
    """(kind, targets, judgeable, reason) from the converted graph's compute targets and what MNN
    asked for when it ran them, in this order of preference:
      cpu-execution  one compute op, and MNN asks its CPU creator;
      composite      MNN's converter rewrites the ONNX operator with a transform of its own (onnxextra);
      cpu-execution  several compute ops, all asked of CPU creators (ReduceL1 = ABS + SUM);
      geometry       the ops the CPU creators never see are each computed by a geometry computer.
    """
    from ..mnn import converter as mnn_converter

    served = report.get("served", [])
    executed = sorted({op.get("type", "?") for op in report.get("ops", [])})
    cpu_asked = [t for t in targets if t[0] in CPU_OP_TYPES and _asked(served, "execution", t[0], t[1])]
    if len(targets) == 1 and cpu_asked:
        return "cpu-execution", targets, True, ""
    if tree_root is not None and mnn_converter.native_transform_files(tree_root, task.operator) \
            and converter_asks(task, task.operator)[0]:
        return "composite", ((task.operator, None),), True, ""
    if len(cpu_asked) == len(targets):
        return "cpu-execution", targets, True, ""
    rest = [t for t in targets if t not in cpu_asked]
    geometry = tuple(dict.fromkeys((op, None) for op, _ in rest if _asked(served, "geometry", op)))
    missing = [op for op, _ in rest if not _asked(served, "geometry", op)]
    if geometry and not missing:
        return "geometry", geometry, True, ""
    labels = [f"{op}:{sub}" if sub else op for op, sub in rest]
    return ("cpu-execution" if all(t[0] in CPU_OP_TYPES for t in targets) else "geometry"), targets, False, (
        f"MNN asks neither a CPU creator nor a geometry computer for {', '.join(labels)}: it runs {', '.join(executed)}")


def check(task: Task, runner: Path, settings: settings_module.Settings | None = None) -> tuple[bool, str]:
    """(judgeable, reason) for the kind and targets the task records."""
    if task.mnn is None:
        return False, "no MNN target recorded"
    if task.mnn.kind == "composite":
        return converter_asks(task, task.mnn.targets[0][0], settings)
    try:
        report = native_report(task, runner, settings)
    except RuntimeError as error:
        return False, str(error)
    served = report.get("served", [])
    executed = sorted({op.get("type", "?") for op in report.get("ops", [])})
    stage = "geometry" if task.mnn.kind == "geometry" else "execution"
    for op_type, sub_type in task.mnn.targets:
        label = f"{op_type}:{sub_type}" if sub_type else op_type
        if not _asked(served, stage, op_type, sub_type):
            asked = "a geometry computer" if stage == "geometry" else "a CPU creator"
            return False, f"MNN never asks {asked} for {label}: it runs {', '.join(executed)}"
    return True, ""
