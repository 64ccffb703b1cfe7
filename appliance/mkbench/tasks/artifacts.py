"""Everything a device needs to run a task, made once per task version and cached.

The ONNX model, its .mnn conversion, the timing and correctness input sets as .npy files
(the runner's input format), and the reference outputs (kept on the host: the process
that runs a candidate never sees them); and the runtime settings every run of the task gets,
the same for native and candidate.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from .. import settings as settings_module
from ..filelock import built_once
from ..mnn import conversion
from . import model as task_model
from .spec import Task

# Bump when the way artifacts are made changes, so caches made the old way are not reused.
ARTIFACTS_VERSION = 3  # 3: reference fixes for grouped ConvTranspose and ceil_mode AveragePool

# MNN has no int64 tensors: the runner is fed int32 (what the converter gives the input).
_RUNNER_DTYPES = {"int64": np.int32, "bool": np.int32, "float16": np.float32}


@dataclass(frozen=True)
class TaskArtifacts:
    directory: Path
    onnx_model: Path
    mnn_model: Path
    inputs: Path  # holds timing/ and one folder per correctness set
    correctness_sets: tuple[str, ...]
    references: dict  # set name -> {output name -> array}
    input_shapes: dict  # input name -> shape (for the measurements table)


def run_settings(task: Task, threads: int = settings_module.JUDGE_THREADS) -> dict:
    """Runtime settings, the same for native and candidate, recorded with every verdict: threads
    (the judge setting MKBENCH_THREADS), precision, and MNN's runtime hints (the judge's, plus
    those the task needs)."""
    hints = dict(settings_module.JUDGE_HINTS)
    if task.mnn:
        hints.update(task.mnn.hints)
    return {"threads": threads, "precision": settings_module.JUDGE_PRECISION, "hints": hints}


def prepare(task: Task, settings: settings_module.Settings, converter: Path | None = None) -> TaskArtifacts:
    """Build (or reuse) the task's model, inputs and references."""
    s = settings
    # Which converter made the .mnn is part of the key: switching converters never reuses a stale model.
    made_by = conversion.converter_identity(converter, s)
    directory = s.cache_dir / "tasks" / f"{task.name}-{task.sha256[:16]}-{made_by}-v{ARTIFACTS_VERSION}"
    done = directory / "done.json"
    sets = task_model.correctness_sets(task)
    # Workers of one run prepare the same task at once: one builds, the others wait for it.
    built_once(directory.with_name(directory.name + ".lock"), lambda: True if done.exists() else None,
                         lambda: _build(task, directory, converter, sets, s))
    references = {}
    for set_name in sets:
        with np.load(directory / f"reference-{set_name}.npz") as data:
            references[set_name] = {name: data[name] for name in data.files}
    return TaskArtifacts(directory, directory / "task.onnx", directory / "task.mnn", directory / "inputs",
                         tuple(sets), references, {i.name: list(i.shape) for i in task.inputs})


def _build(task: Task, directory: Path, converter: Path | None, sets, settings: settings_module.Settings) -> None:
    """Write the artifacts into a fresh .tmp folder, then rename it into place (never half-built)."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model = task_model.build_model(task)
    onnx.save(model, tmp / "task.onnx")
    conversion.convert(tmp / "task.onnx", tmp / "task.mnn", settings, converter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for set_name in ["timing", *sets]:
            inputs = task_model.draw_inputs(task, set_name)
            write_set(tmp / "inputs" / set_name, inputs)
            if set_name != "timing":
                references = task_model.reference_outputs(task, inputs, model)
                np.savez(tmp / f"reference-{set_name}.npz", **references)
    (tmp / "done.json").write_text(json.dumps({"task": task.name, "sha256": task.sha256}))
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)


def write_set(folder: Path, inputs: dict[str, np.ndarray]) -> None:
    """One input set as the runner reads it: <input>.npy per input, in the dtypes MNN takes."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in inputs.items():
        np.save(folder / f"{name.replace('/', '_')}.npy", array.astype(_RUNNER_DTYPES.get(str(array.dtype), array.dtype)))


def read_outputs(folder: Path) -> dict[str, np.ndarray]:
    """The .npy outputs the runner wrote for one correctness set."""
    return {path.stem: np.load(path) for path in sorted(folder.glob("*.npy"))}
