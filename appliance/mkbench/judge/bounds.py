"""Physically possible times: a kernel has to read its inputs and write its outputs, and a device
moves bytes no faster than its memory bandwidth for that working set.

The bandwidth curve comes from mnn/runner/bandwidth.cpp (best-of copies per working-set size, from
L1 to DRAM), run once per device fingerprint and kept in the store. A task's bound is the bytes of
its inputs and outputs over the bandwidth at the largest probed size not above that working set
(the faster side, so the bound errs low: native MNN must never fall under it, and where it does the
bound is not applied). A candidate timed below SLACK times the bound is `implausible`: never
counted, and measured again in fresh processes.
Every correct kernel's fraction of the bound (bound / its time: 1.0 would be a memory-speed kernel)
is reported beside its speedup, the way KernelBench-Hard scores fraction of peak.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from .. import devices
from ..devices import Device, store_device
from ..store import rows
from ..tasks.spec import Task

SLACK = 0.5  # below half the bound is implausible (the probe's best copy is not every kernel's best)
PROBE_SECONDS = 0.1  # per working-set size, at least


def task_bytes(task: Task) -> int:
    """Bytes a kernel for the task must read (its inputs) and write (its outputs), at least."""
    def size(spec) -> int:
        return int(np.prod(spec.shape, dtype=np.int64)) * np.dtype("bool" if spec.dtype == "bool" else spec.dtype).itemsize
    return sum(size(s) for s in task.inputs) + sum(size(s) for s in task.outputs)


def bound_ms(curve: dict, nbytes: int) -> float:
    """The fewest milliseconds the device needs to move nbytes (module docstring)."""
    sizes, rates = curve.get("sizes") or [], curve.get("bytes_per_second") or []
    if not sizes or nbytes <= 0:
        return 0.0
    rate = rates[0]
    for size, value in zip(sizes, rates):
        if size <= nbytes:
            rate = value
    return 1000.0 * nbytes / rate if rate > 0 else 0.0


_MEASURED: dict[str, dict] = {}  # device id -> curve, for evaluations without a store


def curve(device: Device, probe: Path, db=None) -> dict:
    """The device's bandwidth curve: from the store (or this process), else measured now."""
    device_id = devices.device_id(device)
    if db is not None:
        device_id = store_device(db, device)
        stored = rows.bandwidth_curve(db, device_id)
        if stored:
            return stored
    if device_id in _MEASURED:
        return _MEASURED[device_id]
    remote_dir = device.workdir("bandwidth-probe")
    try:
        device.push(probe, f"{remote_dir}/bandwidth")
        result = device.run([f"{remote_dir}/bandwidth", "--out", f"{remote_dir}/out/curve.json", "--seconds",
                             str(PROBE_SECONDS)], cwd=remote_dir, timeout=300, writable=[f"{remote_dir}/out"])
        with tempfile.TemporaryDirectory() as local:
            if result.exit_code != 0:
                return {}
            device.pull(f"{remote_dir}/out/curve.json", Path(local) / "curve.json")
            measured = json.loads((Path(local) / "curve.json").read_text())
    finally:
        try:
            device.remove(remote_dir)
        except Exception:  # noqa: BLE001 - a probe folder left behind costs nothing
            pass
    _MEASURED[device_id] = measured
    if db is not None:
        rows.record_bandwidth_curve(db, device_id, measured)
    return measured
