"""evaluate(task, candidate, device) -> Verdict: the one function that decides a verdict.

Build the candidate's runner (its kernel swapped into a copy of MNN's CPU or geometry
registration), or for a composite kernel its converter (the candidate's transform in place of
MNN's, which converts the task's model once more); push runners, models and inputs to the
device, run native and candidate in a balanced order, check every correctness set against the
host-side reference, prove from the creation-time (or conversion-time) record that the
candidate served the task's op, and store the verdict with every timing.
"""

from __future__ import annotations

import hashlib
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from .. import settings as settings_module
from ..devices import Device, store_device
from ..kinds import kind_of
from ..mnn import build as mnn_build
from ..store import rows
from ..tasks import artifacts as task_artifacts
from ..tasks.compare import compare_all
from ..tasks.spec import Task
from . import scan, timing
from .session import DeviceSession, run_failure, target_of
from .verdict import Verdict

PAIRS = 3  # native/candidate pairs, balanced order


def served_by_candidate(task: Task, stage: str, served: list[dict]) -> tuple[str, str]:
    """("ok" | "not-exercised" | "delegated", reason) from the runner's creation-time record.

    Each record says where MNN asked (`stage`: the kind's, see kinds/), which creator served an op
    (`served`: candidate | native) and where the execution class it returned is defined
    (`class_defined_in`): a candidate creator that returns MNN's own execution has delegated the work.
    """

    def matches(record: dict, op_type: str, sub_type: str | None) -> bool:
        if record.get("op_type") != op_type or record.get("stage", "execution") != stage:
            return False
        return sub_type is None or str(record.get("sub_type", "")).upper().endswith(sub_type.upper())

    for op_type, sub_type in (task.mnn.targets if task.mnn else ()):
        label = f"{op_type}{':' + sub_type if sub_type else ''}"
        records = [r for r in served if matches(r, op_type, sub_type)]
        if not records:
            return "not-exercised", f"MNN never asked for {label} (it lowered the op elsewhere)"
        by_candidate = [r for r in records if r.get("served") == "candidate"]
        if not by_candidate:
            return "not-exercised", f"{label} was served by native code"
        native_classes = [r.get("execution_class", "?") for r in by_candidate if r.get("class_defined_in") == "native"]
        if native_classes:
            return "delegated", f"the candidate's creator returned MNN's own {native_classes[0]} for {label}"
    return "ok", ""


def evaluate(task: Task, candidate: str, device: Device, settings: settings_module.Settings, db=None, worker: str = "0",
             run_id: str | None = None) -> Verdict:
    """Judge one candidate kernel (C++ source) for one task on one device, and store the verdict.

    Raises DeviceLost when the device goes away (the caller requeues the work); every fault
    of the candidate becomes a verdict instead.
    """
    stages: dict[str, float] = {}
    config = task_artifacts.run_settings(task)
    target = target_of(device)
    kind = kind_of(task)
    base = dict(task=task.name, device=device.serial)

    def finish(verdict: Verdict, measurements: list[dict] = ()) -> Verdict:
        verdict = replace(verdict, stage_seconds={k: round(v, 3) for k, v in stages.items()})
        if db is not None:
            verdict = record(db, task, candidate, device, verdict, config, measurements, run_id)
        return verdict

    started = time.monotonic()
    artifacts = task_artifacts.prepare(task, settings)
    native = mnn_build.build_native(target, settings)
    review = tuple(scan.flags(candidate))
    built = kind.build(task, candidate, target, worker, settings)
    stages["build"] = time.monotonic() - started
    if not built.ok:
        return finish(Verdict("compile-error", built.reason, compiled=False, correct=False, flags=review,
                              compiler_output=built.compiler_output, stage_seconds=stages, **base))
    if built.native_references:
        return finish(Verdict("delegated", f"calls MNN's own kernel: {', '.join(built.native_references)[:200]}",
                              compiled=True, correct=False, flags=review, compiler_output=built.compiler_output,
                              stage_seconds=stages, **base))

    local = Path(tempfile.mkdtemp(prefix="mkbench-eval-", dir=settings.cache_dir if settings.cache_dir.exists() else None))
    name = f"{task.name}-{hashlib.sha256(candidate.encode()).hexdigest()[:8]}-{worker}"
    session = None
    try:
        started = time.monotonic()
        side = kind.candidate_side(task, artifacts, built, local, settings)  # a composite's converter makes its own model
        if side.model is not None:
            stages["convert"] = time.monotonic() - started
        if side.failure:
            return finish(Verdict(side.failure[0], side.failure[1], compiled=True, correct=False, served=side.served,
                                  flags=review, compiler_output=built.compiler_output, stage_seconds=stages, **base))
        review = (*review, *side.flags)
        started = time.monotonic()
        session = DeviceSession(device, artifacts, {"native": native.runner, "candidate": built.runner or native.runner},
                                config, name, local, models={"candidate": side.model} if side.model else None)
        stages["deploy"] = time.monotonic() - started
        run_started = time.monotonic()

        def conclude(verdict: Verdict, measurements: list[dict] = ()) -> Verdict:
            stages["run"] = time.monotonic() - run_started - stages.get("compare", 0.0)
            return finish(verdict, measurements)

        return _run_and_judge(task, kind.stage, session, stages, review, built, base, conclude, side.served)
    finally:
        shutil.rmtree(local, ignore_errors=True)
        if session is not None:
            session.close()


def _run_and_judge(task, stage: str, session: DeviceSession, stages, review, built, base, finish, converted=()) -> Verdict:
    """Calibrate, run the candidate (correctness first), then time native against candidate."""
    artifacts, emulated = session.artifacts, session.device.emulated
    warmup, iterations, timeout = session.calibrate("native")

    # Correctness first, on the candidate's first run (fresh inputs after its timed loop).
    first, first_report, first_dir = session.run("candidate", warmup, iterations, timeout, check=True)
    failure = run_failure(first, "candidate")
    if failure:
        return finish(Verdict(failure[0], failure[1], compiled=True, correct=False, flags=review,
                              compiler_output=built.compiler_output, **base))
    served = [*converted, *(first_report or {}).get("served", [])]
    exercised, why = served_by_candidate(task, stage, served)
    if exercised != "ok":
        return finish(Verdict(exercised, why, compiled=True, correct=False, served=tuple(served), flags=review,
                              compiler_output=built.compiler_output, **base))
    compare_started = time.monotonic()
    max_abs, max_rel = 0.0, 0.0
    for set_name in artifacts.correctness_sets:
        outputs = task_artifacts.read_outputs(first_dir / set_name)
        result = compare_all(artifacts.references[set_name], outputs, task.tolerance)
        if not result.ok:
            verdict = "wrong-shape" if "shape" in result.reason or "missing" in result.reason else "wrong-values"
            return finish(Verdict(verdict, f"{set_name}: {result.reason}", compiled=True, correct=False,
                                  max_abs_error=result.max_abs_error, max_rel_error=result.max_rel_error,
                                  served=tuple(served), flags=review, compiler_output=built.compiler_output, **base))
        max_abs, max_rel = max(max_abs, result.max_abs_error or 0), max(max_rel, result.max_rel_error or 0)
    stages["compare"] = time.monotonic() - compare_started

    if emulated:  # correctness only: no timing is taken where none could be reported
        return finish(Verdict("correct", "", compiled=True, correct=True, max_abs_error=max_abs, max_rel_error=max_rel,
                              served=tuple(served), flags=review, compiler_output=built.compiler_output, **base))

    # Timing: balanced pairs; the first candidate run counts as the first pair's candidate.
    native_runs, candidate_runs, measurements = [], [first_report["times_ms"]], []
    flags = list(review)
    if first_report.get("threads_after", 0) > first_report.get("threads_before", 0):
        flags.append(f"threads: {first_report['threads_after'] - first_report['threads_before']} left running after the kernel")
    measurements.append(_measurement("candidate", 0, first_report, artifacts, iterations))
    def time_sides(order: list[str]) -> Verdict | None:
        """Run the sides in this order, collecting their times; a failing run ends the verdict."""
        for side in order:
            result, report, _ = session.run(side, warmup, iterations, timeout)
            failure = run_failure(result, side)
            if failure:
                return finish(Verdict(failure[0], failure[1], compiled=True, correct=False, served=tuple(served),
                                      flags=tuple(flags), compiler_output=built.compiler_output, **base))
            (native_runs if side == "native" else candidate_runs).append(report["times_ms"])
            measurements.append(_measurement(side, session.counter[side] - 1, report, artifacts, iterations))
        return None

    order = timing.balanced_order(PAIRS)
    order.remove("candidate")
    if (failed := time_sides(order)) is not None:
        return failed
    summary = timing.summarise(native_runs, candidate_runs)
    if summary.speedup > timing.IMPLAUSIBLE_SPEEDUP:
        # Re-measure with as many pairs again before believing it; it stays flagged for review.
        first_figure = summary.speedup
        if (failed := time_sides(timing.balanced_order(PAIRS))) is not None:
            return failed
        summary = timing.summarise(native_runs, candidate_runs)
        flags.append(f"implausible speedup {first_figure:.1f}x, re-measured {summary.speedup:.1f}x "
                     f"(> {timing.IMPLAUSIBLE_SPEEDUP:.0f}x): review")
    if summary.unstable:
        flags.append(f"unstable timing: per-pair speedups {summary.speedup_low:.2f}-{summary.speedup_high:.2f}")
    return finish(Verdict(
        "correct", "", compiled=True, correct=True, max_abs_error=max_abs, max_rel_error=max_rel,
        native_median_ms=summary.native_median_ms, candidate_median_ms=summary.candidate_median_ms,
        speedup=summary.speedup, speedup_low=summary.speedup_low, speedup_high=summary.speedup_high,
        timing_reportable=True,
        served=tuple(served), flags=tuple(flags), compiler_output=built.compiler_output,
        **base), measurements)


def _measurement(side: str, round_index: int, report: dict, artifacts, iterations: int) -> dict:
    return {"side": side, "round": round_index, "input_shapes": artifacts.input_shapes, "iterations": iterations,
            "median_ms": statistics.median(report["times_ms"]), "times_ms": report["times_ms"],
            "device_state": report.get("device_state")}


def record(db, task: Task, candidate: str, device: Device, verdict: Verdict, config: dict, measurements, run_id) -> Verdict:
    """Store the verdict, its timings and the device's fingerprint; returns it with its row id."""
    device_id = store_device(db, device)  # the fingerprint, stored once; its state goes with the measurements
    row = {
        "run_id": run_id, "task": task.name, "task_sha256": task.sha256, "kind": kind_of(task).name,
        "device_id": device_id, "candidate_sha256": hashlib.sha256(candidate.encode()).hexdigest(), "candidate": candidate,
        "verdict": verdict.verdict, "reason": verdict.reason, "compiler_output": verdict.compiler_output,
        "max_abs_error": verdict.max_abs_error, "max_rel_error": verdict.max_rel_error,
        "native_median_ms": verdict.native_median_ms, "candidate_median_ms": verdict.candidate_median_ms,
        "speedup": verdict.speedup, "speedup_low": verdict.speedup_low, "speedup_high": verdict.speedup_high,
        "timing_reportable": int(verdict.timing_reportable), "served_by": list(verdict.served),
        "judge_settings": config, "stage_seconds": verdict.stage_seconds, "flags": list(verdict.flags),
    }
    evaluation_id = rows.record_evaluation(db, row, measurements)
    return replace(verdict, evaluation_id=evaluation_id)
