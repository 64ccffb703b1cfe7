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
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from .. import settings as settings_module
from .. import store
from ..devices import Device, DeviceLost, RunResult, store_device
from ..mnn import build as mnn_build
from ..mnn import convert as mnn_convert
from ..mnn import converter as mnn_converter
from ..mnn import inject
from ..tasks.spec import Task
from . import artifacts as task_artifacts
from . import scan, timing
from .compare import compare_all
from .verdict import Verdict

TARGET_RUN_MS = 300.0  # work per timed run on a real device: more narrows the noise
MIN_RUN_TIMEOUT = 60.0  # seconds a run may take before the kernel is judged never to return
CONVERT_TIMEOUT = 300.0  # seconds a candidate converter may take to convert the task's model
HOT_CELSIUS = 50.0  # above this (any thermal zone) a phone cools down before the next timed run
COOL_DOWN_SECONDS = 120.0  # the longest wait for it
PAIRS = 3  # native/candidate pairs, balanced order


def target_of(device: Device) -> str:
    """The build target that runs on a device."""
    return "host" if device.abi == "x86_64" else "arm64"


def judge_settings(task: Task) -> dict:
    """Runtime settings, the same for native and candidate, recorded with the verdict."""
    hints = dict(settings_module.JUDGE_HINTS)
    if task.mnn:
        hints.update(task.mnn.hints)
    return {"threads": settings_module.JUDGE_THREADS, "precision": settings_module.JUDGE_PRECISION, "hints": hints}


def _runner_argv(runner: str, model: str, inputs: str, out: str, warmup: int, iterations: int,
                 config: dict) -> list[str]:
    argv = [runner, "--model", model, "--inputs", inputs, "--out", out,
            "--warmup", str(warmup), "--iterations", str(iterations), "--threads", str(config["threads"]),
            "--precision", config["precision"]]
    for name, value in sorted(config["hints"].items()):
        argv += ["--hint", f"{name}={value}"]
    return argv


def _failure(result: RunResult, side: str) -> tuple[str, str] | None:
    """(verdict, reason) for a run that did not finish cleanly, else None."""
    if result.timed_out:
        return "timeout", f"the {side} run did not return within {result.seconds:.0f} s"
    if result.signal:
        return "crash", f"the {side} run was killed by signal {result.signal}"
    if result.exit_code != 0:
        last = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or [""])[-1]
        return "crash", f"the {side} runner exited with {result.exit_code}: {last[:200]}"
    return None


# Where each kind of kernel is asked for: a CPU creator at session creation, a geometry computer
# when the session is resized, a converter transform while the model is converted.
STAGES = {"cpu-execution": "execution", "geometry": "geometry", "composite": "converter"}


def served_by_candidate(task: Task, served: list[dict]) -> tuple[str, str]:
    """("ok" | "not-exercised" | "delegated", reason) from the runner's creation-time record.

    Each record says which creator served an op (`served`: candidate | native) and where the
    execution class it returned is defined (`class_defined_in`): a candidate creator that
    returns MNN's own execution has delegated the work.
    """
    stage = STAGES.get(task.mnn.kind if task.mnn else "", "execution")

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


class DeviceSession:
    """One task's files on one device: runners, model and inputs pushed once, runs numbered.

    Shared by evaluate() (native vs candidate) and selftest (native vs native).
    """

    def __init__(self, device: Device, artifacts, runners: dict[str, Path], config: dict, name: str, local: Path,
                 models: dict[str, Path] | None = None):
        """models: a .mnn per label where the sides run different models (a composite candidate's
        converter makes its own); by default every side runs the task's model."""
        self.device, self.artifacts, self.config, self.local = device, artifacts, config, local
        self.workdir = device.workdir(name)
        self.counter: dict[str, int] = {}
        self.models = {label: "task.mnn" for label in runners}
        for label, path in runners.items():
            device.push(path, f"{self.workdir}/{label}_runner")
        device.push(artifacts.mnn_model, f"{self.workdir}/task.mnn")
        for label, path in (models or {}).items():
            self.models[label] = f"{label}.mnn"
            device.push(path, f"{self.workdir}/{label}.mnn")
        for path in sorted(artifacts.inputs.rglob("*.npy")):
            device.push(path, f"{self.workdir}/inputs/{path.relative_to(artifacts.inputs).as_posix()}")
        # The same timing inputs without the correctness sets, for runs that are only timed.
        for path in sorted((artifacts.inputs / "timing").glob("*.npy")):
            device.push(path, f"{self.workdir}/timing_inputs/timing/{path.name}")

    def run(self, label: str, warmup: int, iterations: int, timeout: float,
            check: bool = False) -> tuple[RunResult, dict | None, Path]:
        """Run one runner (with the correctness sets when check=True); on success pull its
        outputs and report into a local folder."""
        index = self.counter.get(label, 0)
        self.counter[label] = index + 1
        out = f"{self.workdir}/out-{label}-{index}"
        inputs = f"{self.workdir}/{'inputs' if check else 'timing_inputs'}"
        argv = _runner_argv(f"{self.workdir}/{label}_runner", f"{self.workdir}/{self.models[label]}", inputs, out, warmup,
                            iterations, self.config)
        before = self.cool_down()
        result = self.device.run(argv, cwd=self.workdir, timeout=timeout)
        after = self.device.read_state()
        target = self.local / f"{label}-{index}"
        report = None
        if result.exit_code == 0 and not result.timed_out:
            self.device.pull(out, target)
            report_path = target / "report.json"
            report = json.loads(report_path.read_text()) if report_path.exists() else None
            if report is not None:
                report["device_state"] = {"before": before, "after": after}
        return result, report, target

    def cool_down(self) -> dict:
        """Wait while the device is hot (TVM's habit: phones throttle near 90 °C); returns
        the state the run starts from."""
        waited = 0.0
        state = self.device.read_state()
        while _hottest(state) >= HOT_CELSIUS and waited < COOL_DOWN_SECONDS and not self.device.emulated:
            time.sleep(5.0)
            waited += 5.0
            state = self.device.read_state()
        if waited:
            state = {**state, "cooled_down_seconds": waited}
        return state

    def calibrate(self, label: str = "native") -> tuple[int, int, float]:
        """(warmup, iterations, timeout) so one timed run does about TARGET_RUN_MS of work.

        Emulated devices run once, untimed: their timings are never reported."""
        if self.device.emulated:
            return 0, 1, 3600.0
        probe, report, _ = self.run(label, 1, 3, timeout=600)
        failure = _failure(probe, label)
        if failure or report is None:
            raise RuntimeError(f"native MNN failed: {failure[1] if failure else 'the runner wrote no report'}")
        per_iteration = max(min(report["times_ms"]), 1e-3)
        iterations = timing.iterations_for(per_iteration, TARGET_RUN_MS)
        warmup = max(2, iterations // 10)
        return warmup, iterations, max(MIN_RUN_TIMEOUT, 20 * probe.seconds * max(1, iterations / 3))

    def close(self) -> None:
        try:
            self.device.remove(self.workdir)
        except DeviceLost:
            raise
        except Exception:
            pass


def _hottest(state: dict) -> float:
    temperatures = [t for t in (state.get("temperatures_c") or {}).values() if isinstance(t, (int, float))]
    return max(temperatures, default=0.0)


def evaluate(task: Task, candidate: str, device: Device, db=None, worker: str = "0", run_id: str | None = None,
             settings: settings_module.Settings | None = None) -> Verdict:
    """Judge one candidate kernel (C++ source) for one task on one device, and store the verdict.

    Raises DeviceLost when the device goes away (the caller requeues the work); every fault
    of the candidate becomes a verdict instead.
    """
    s = settings or settings_module.load()
    stages: dict[str, float] = {}
    config = judge_settings(task)
    target = target_of(device)
    base = dict(task=task.name, device=device.serial)

    def finish(verdict: Verdict, measurements: list[dict] = ()) -> Verdict:
        verdict = replace(verdict, stage_seconds={k: round(v, 3) for k, v in stages.items()})
        if db is not None:
            verdict = record(db, task, candidate, device, verdict, config, measurements, run_id)
        return verdict

    started = time.monotonic()
    artifacts = task_artifacts.prepare(task, settings=s)
    native = mnn_build.build_native(target, s)
    kind = task.mnn.kind if task.mnn else "cpu-execution"
    review = tuple(scan.flags(candidate))
    if kind == "composite":
        built = mnn_converter.build_composite_candidate(candidate, task.mnn.targets[0][0], s, worker)
        candidate_runner = native.runner
    else:
        built = inject.build_candidate(candidate, task.mnn.targets if task.mnn else (), target, worker, s, kind=kind)
        candidate_runner = built.runner
    stages["build"] = time.monotonic() - started
    if not built.ok:
        return finish(Verdict("compile-error", built.reason, compiled=False, correct=False, flags=review,
                              compiler_output=built.compiler_output, stage_seconds=stages, **base))
    if getattr(built, "native_references", ()):
        return finish(Verdict("delegated", f"calls MNN's own kernel: {', '.join(built.native_references)[:200]}",
                              compiled=True, correct=False, flags=review, compiler_output=built.compiler_output,
                              stage_seconds=stages, **base))

    local = Path(tempfile.mkdtemp(prefix="mkbench-eval-", dir=s.cache_dir if s.cache_dir.exists() else None))
    name = f"{task.name}-{hashlib.sha256(candidate.encode()).hexdigest()[:8]}-{worker}"
    session = None
    try:
        models: dict[str, Path] = {}
        converted: list[dict] = []
        if kind == "composite":  # the candidate's converter makes the candidate side's model
            started = time.monotonic()
            models["candidate"], converted, failure = _convert_with_candidate(task, artifacts, built, local)
            stages["convert"] = time.monotonic() - started
            if failure:
                return finish(Verdict(failure[0], failure[1], compiled=True, correct=False, served=tuple(converted),
                                      flags=review, compiler_output=built.compiler_output, stage_seconds=stages, **base))
            review = (*review, *_same_graph_as_native(task, models["candidate"]))
        started = time.monotonic()
        session = DeviceSession(device, artifacts, {"native": native.runner, "candidate": candidate_runner}, config, name,
                                local, models=models)
        stages["deploy"] = time.monotonic() - started
        run_started = time.monotonic()

        def conclude(verdict: Verdict, measurements: list[dict] = ()) -> Verdict:
            stages["run"] = time.monotonic() - run_started - stages.get("compare", 0.0)
            return finish(verdict, measurements)

        return _run_and_judge(task, session, stages, review, built, base, conclude, converted)
    finally:
        shutil.rmtree(local, ignore_errors=True)
        if session is not None:
            session.close()


def _convert_with_candidate(task: Task, artifacts, built, local: Path) -> tuple[Path, list[dict], tuple[str, str] | None]:
    """Convert the task's ONNX model with the candidate's converter: (model, the conversion's
    served records, (verdict, reason) if it failed or never asked the candidate's transform)."""
    model, served_log = local / "candidate.mnn", local / "transforms.log"
    onnx_op = task.mnn.targets[0][0]
    try:
        mnn_convert.convert(artifacts.onnx_model, model, converter=built.converter, timeout=CONVERT_TIMEOUT,
                            env={mnn_converter.SERVED_LOG_ENV: str(served_log)})
    except subprocess.TimeoutExpired:
        return model, [], ("timeout", f"converting the task with the candidate's converter took over {CONVERT_TIMEOUT:.0f} s")
    except mnn_convert.ConversionError as error:
        return model, [], ("crash", f"converting the task with the candidate's converter failed: {str(error)[:200]}")
    converted = [{"op_type": op, "sub_type": None, "served": "candidate", "stage": "converter",
                  "execution_class": "", "class_defined_in": "candidate"} for op in mnn_converter.served_transforms(served_log)]
    if not converted:
        return model, [], ("not-exercised", f"MNN's converter never asked the candidate's transform for {onnx_op}")
    return model, converted, None


def _same_graph_as_native(task: Task, model: Path) -> list[str]:
    """A review flag when the candidate's transform makes exactly the compute ops MNN's own
    transform makes (the task's converted graph, which the agents are never shown): a copy or
    a delegation to MNN's rewrite rather than a kernel of its own. [] otherwise."""
    try:
        labels = [op.label for op in mnn_convert.compute_ops(mnn_convert.converted_ops(model))]
    except (mnn_convert.ConversionError, OSError, ValueError, subprocess.SubprocessError) as error:
        return [f"graph: the candidate's model could not be read ({str(error)[:80]})"]
    if labels and task.mnn and tuple(labels) == tuple(task.mnn.converted_ops):
        return [f"graph: the same {len(labels)} ops as MNN's own transform ({', '.join(labels)})"]
    return []


def _run_and_judge(task, session: DeviceSession, stages, review, built, base, finish, converted=()) -> Verdict:
    """Calibrate, run the candidate (correctness first), then time native against candidate."""
    artifacts, emulated = session.artifacts, session.device.emulated
    warmup, iterations, timeout = session.calibrate("native")

    # Correctness first, on the candidate's first run (fresh inputs after its timed loop).
    first, first_report, first_dir = session.run("candidate", warmup, iterations, timeout, check=True)
    failure = _failure(first, "candidate")
    if failure:
        return finish(Verdict(failure[0], failure[1], compiled=True, correct=False, flags=review,
                              compiler_output=built.compiler_output, **base))
    served = [*converted, *(first_report or {}).get("served", [])]
    exercised, why = served_by_candidate(task, served)
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
            failure = _failure(result, side)
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
    with store.transaction(db):
        row = {
            "created_at": time.time(), "run_id": run_id, "task": task.name, "task_sha256": task.sha256,
            "kind": task.mnn.kind if task.mnn else "cpu-execution", "device_id": device_id,
            "candidate_sha256": hashlib.sha256(candidate.encode()).hexdigest(), "candidate": candidate,
            "verdict": verdict.verdict, "reason": verdict.reason, "compiler_output": verdict.compiler_output,
            "max_abs_error": verdict.max_abs_error, "max_rel_error": verdict.max_rel_error,
            "native_median_ms": verdict.native_median_ms, "candidate_median_ms": verdict.candidate_median_ms,
            "speedup": verdict.speedup, "speedup_low": verdict.speedup_low, "speedup_high": verdict.speedup_high,
            "timing_reportable": int(verdict.timing_reportable), "served_by": json.dumps(list(verdict.served)),
            "judge_settings": json.dumps(config, sort_keys=True), "stage_seconds": json.dumps(verdict.stage_seconds),
            "flags": json.dumps(list(verdict.flags)),
        }
        cursor = db.conn.execute(f"INSERT INTO evaluations ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                                 list(row.values()))
        evaluation_id = cursor.lastrowid
        for m in measurements:
            db.conn.execute(
                "INSERT INTO measurements (evaluation_id, side, round, input_shapes, iterations, median_ms, times_ms, device_state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (evaluation_id, m["side"], m["round"], json.dumps(m["input_shapes"]), m["iterations"], m["median_ms"],
                 json.dumps(m["times_ms"]), json.dumps(m.get("device_state"))))
    return replace(verdict, evaluation_id=evaluation_id)
