"""Run a converted task model with MNN's own native kernels (the PyPI wheel's runtime).

Used by `tasks validate` to check that native MNN agrees with the reference before a task
is trusted to judge anyone else's kernel. Runs in a child process (`python -m
mkbench.tasks.native`), so a crash in MNN is a finding about the task, not the end of
validation. Only `MNN.nn`/`MNN.expr` are imported, never `MNN.tools`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def run_native(mnn_path: Path, inputs: dict[str, np.ndarray], output_names: list[str], workdir: Path,
               timeout: float = 300, hints: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Run the model once on the host with native MNN, with the judge's precision, threads
    and hints (or the given hints); raises RuntimeError with one line."""
    from ..settings import JUDGE_HINTS

    hints = JUDGE_HINTS if hints is None else hints
    workdir.mkdir(parents=True, exist_ok=True)
    np.savez(workdir / "inputs.npz", **inputs)
    request = {"model": str(mnn_path), "inputs": list(inputs), "outputs": output_names, "workdir": str(workdir),
               "hints": hints}
    result = subprocess.run([sys.executable, "-m", "mkbench.tasks.native", json.dumps(request)],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        raise RuntimeError(f"native MNN failed (exit {result.returncode}): {lines[-1] if lines else ''}")
    with np.load(workdir / "outputs.npz") as data:
        return {name: data[name] for name in output_names}


_MNN_DTYPES = {"float32": "float", "int32": "int", "int64": "int", "bool": "int", "uint8": "uint8", "float16": "float"}


def _child(request: dict) -> None:
    import MNN.expr as F
    import MNN.nn as nn

    from ..settings import JUDGE_PRECISION, JUDGE_THREADS, MNN_HINT_IDS

    workdir = Path(request["workdir"])
    config = {"backend": "CPU", "precision": JUDGE_PRECISION, "numThread": JUDGE_THREADS}
    runtime = nn.create_runtime_manager((config,))
    for name, value in request["hints"].items():
        runtime.set_hint(MNN_HINT_IDS[name], int(value))
    net = nn.load_module_from_file(request["model"], request["inputs"], request["outputs"], runtime_manager=runtime)
    with np.load(workdir / "inputs.npz") as data:
        arrays = [data[name] for name in request["inputs"]]
    feeds = []
    for array in arrays:
        kind = _MNN_DTYPES[str(array.dtype)]
        if kind == "int":
            array = array.astype(np.int32)
        elif kind == "float":
            array = array.astype(np.float32)
        feeds.append(F.const(array, list(array.shape), F.NCHW, getattr(F, kind)))
    outputs = net.forward(feeds)
    results = {}
    for name, var in zip(request["outputs"], outputs):
        var = F.convert(var, F.NCHW)
        results[name] = np.array(var.read(), copy=True).reshape(var.shape)
    np.savez(workdir / "outputs.npz", **results)


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
