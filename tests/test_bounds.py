"""Physically possible times (judge/bounds.py): the bound's arithmetic, and native MNN never under it.

The check over every judgeable task is `python appliance/benchmarks/noise.py` (it times each one
anyway); here, the tasks closest to the bound: the ones that only move memory.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from mkbench.devices import get_device
from mkbench.judge import bounds, series, sets
from mkbench.judge.session import DeviceSession
from mkbench.mnn import build
from mkbench.tasks import artifacts as task_artifacts
from mkbench.tasks import get_task

CURVE = {"sizes": [16384, 1 << 20, 64 << 20], "bytes_per_second": [100e9, 50e9, 10e9]}


def test_the_bound_uses_the_bandwidth_of_the_working_set():
    assert bounds.bound_ms(CURVE, 1000) == pytest.approx(1000 / 100e9 * 1000)  # smaller than any set: the fastest
    assert bounds.bound_ms(CURVE, 2 << 20) == pytest.approx((2 << 20) / 50e9 * 1000)  # the largest set not above it
    assert bounds.bound_ms(CURVE, 1 << 30) == pytest.approx((1 << 30) / 10e9 * 1000)
    assert bounds.bound_ms({}, 1000) == 0.0


def test_a_task_moves_its_inputs_and_outputs():
    abs_task = get_task("Abs")
    elements = 16 * 8 * 256 * 256
    assert bounds.task_bytes(abs_task) == 2 * 4 * elements


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Abs", "Add", "Reshape", "Concat", "ReduceSum", "Equal", "Relu"])
def test_native_mnn_is_never_implausible(name, mnn_settings):
    task = get_task(name)
    device = get_device("host", mnn_settings)
    native = build.build_native("host", mnn_settings)
    curve = bounds.curve(device, native.bandwidth)
    artifacts = task_artifacts.prepare(task, mnn_settings)
    local = Path(tempfile.mkdtemp(prefix="mkbench-bounds-"))
    session = None
    try:
        drawn = sets.prepare(task, artifacts, local / "sets", 1)
        session = DeviceSession(device, native.guard, {"native": native.runner}, {"native": artifacts.mnn_model}, drawn,
                                task_artifacts.run_settings(task), f"bounds-{name}", local)
        runs: list = []
        first = series.native_run(session, runs, 1, 1, 1, every_set=True)
        warmup, iterations = series.sizing(first, 100.0)
        timed = series.native_run(session, runs, warmup, 2, iterations)
        bound = bounds.bound_ms(curve, bounds.task_bytes(task))
        assert timed.run_ms >= bounds.SLACK * bound, (name, timed.run_ms, bound)
    finally:
        if session is not None:
            session.close()
        shutil.rmtree(local, ignore_errors=True)
