"""evaluate(task, candidate, device, settings) -> Verdict: the one function that decides a verdict.

Build the candidate through its kind (a runner with its kernel swapped into a copy of MNN's CPU
or geometry registration, or a converter with its transform in place of MNN's, which converts the
task's model once more); draw this evaluation's input sets; push runners, the guard, models and
sets to a fresh folder on the device; then, every run in the same shape under the guard:

1. native once: the reference outputs for the fresh draws and the timed sets, native's own error
   on the seeded sets, and its time per iteration, which sizes every later run;
2. the candidate once, with a deadline scaled from native's run: it must be asked for the task's op
   (the creation-time or conversion-time record), match the reference on the seeded sets (the
   paper's rule, and the scale-aware check against native's error), and match native on the fresh
   draws and on the timed sets after their perturbed runs;
3. native and candidate in balanced pairs, each pair with its own perturbation seed, timed from
   outside by the guard; the candidate's outputs of a pair drawn at random afterwards are checked
   against native's of the same pair, so work skipped or replayed while timed is wrong-values.

A native failure is a fault of the harness (HarnessError), never the candidate's verdict; a lost
device raises DeviceLost. Every verdict is stored with its measurements.
"""

from __future__ import annotations

import hashlib
import json
import shutil
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
from ..tasks.compare import compare_all, scaled_error, strict_ok
from ..tasks.spec import Task
from . import bounds, scan, series as series_module, sets as evaluation_sets, timing
from .session import DeviceSession, HarnessError, Run, target_of
from .verdict import Verdict

PROTOCOL = "sandwich-guard-v1"  # how runs are timed (series.py): floors from another protocol are not reused
TARGET_RUN_MS = 200.0  # a timing run's loop: long beside the guard's resolution and a run's noise
TIMES_KEPT = 256  # of a run's own per-iteration times, this many (evenly spaced) are stored


def _serves_target(task: Task, stage: str, record: dict) -> bool:
    """Does a served record answer one of the task's targets (op type, and sub-type where given)?"""
    for op_type, sub_type in (task.mnn.targets if task.mnn else ()):
        if record.get("op_type") != op_type or record.get("stage", "execution") != stage:
            continue
        if sub_type is None or str(record.get("sub_type", "")).upper().endswith(sub_type.upper()):
            return True
    return False


def served_by_candidate(task: Task, stage: str, served: list[dict]) -> tuple[str, str]:
    """("ok" | "not-exercised" | "delegated", reason) from the runner's creation-time record.

    Each record says where MNN asked (`stage`: the kind's, see kinds/), which creator served an op
    (`served`: candidate | native) and where the execution class it returned is defined
    (`class_defined_in`): a candidate creator that returns MNN's own execution has delegated the work.
    """

    for op_type, sub_type in (task.mnn.targets if task.mnn else ()):
        label = f"{op_type}{':' + sub_type if sub_type else ''}"
        one = replace(task, mnn=replace(task.mnn, targets=((op_type, sub_type),)))
        records = [r for r in served if _serves_target(one, stage, r)]
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

    Raises DeviceLost when the device goes away and HarnessError when native MNN fails (the caller
    retries the work); every fault of the candidate becomes a verdict instead.
    """
    stages: dict[str, float] = {}
    config = judge_config(task, settings)
    target = target_of(device)
    kind = kind_of(task)
    seed = evaluation_sets.new_seed()
    base = dict(task=task.name, device=device.serial, draw_seed=seed)

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
    review = (*review, *built.flags)
    if built.forbidden:
        return finish(Verdict("forbidden", f"the kernel {built.forbidden[0]}"[:300], compiled=True, correct=False, flags=review,
                              compiler_output=built.compiler_output, stage_seconds=stages, **base))
    if not built.ok:
        return finish(Verdict("compile-error", built.reason, compiled=False, correct=False, flags=review,
                              compiler_output=built.compiler_output, stage_seconds=stages, **base))
    if built.native_references:
        return finish(Verdict("delegated", f"calls MNN's own implementation of the op: {', '.join(built.native_references)[:200]}",
                              compiled=True, correct=False, flags=review, compiler_output=built.compiler_output,
                              stage_seconds=stages, **base))
    review = (*review, *(f"note: uses MNN's {helper}" for helper in built.helpers[:5]))

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
        drawn = evaluation_sets.prepare(task, artifacts, local / "sets", seed)
        session = DeviceSession(device, native.guard,
                                {"native": native.runner, "candidate": built.runner or native.runner, "twin": native.runner},
                                {"native": artifacts.mnn_model, "candidate": side.model or artifacts.mnn_model,
                                 "twin": artifacts.mnn_model}, drawn, config, name, local)
        stages["deploy"] = time.monotonic() - started
        own = ((lambda classes: (mnn_build.op_functions(native, classes), mnn_build.kernel_helpers(native)))
               if built.runner is not None else None)
        judged = Judging(task, kind.stage, session, artifacts, drawn, built, review, base, side.served, stages, finish,
                         settings.timing_budget, own)
        if db is not None:
            judged.floor = lambda warmup, iterations: noise_floor(db, task, device, config, judged, warmup, iterations)
        judged.bound = lambda: bounds.bound_ms(bounds.curve(device, native.bandwidth, db), bounds.task_bytes(task))
        return judged.verdict()
    finally:
        shutil.rmtree(local, ignore_errors=True)
        if session is not None:
            session.close()


class Judging:
    """The runs of one evaluation, from native's first run to the verdict."""

    def __init__(self, task, stage, session: DeviceSession, artifacts, drawn, built, review, base, converted, stages, finish,
                 budget: float, own_functions=None):
        self.task, self.stage, self.session, self.artifacts, self.drawn = task, stage, session, artifacts, drawn
        self.own_functions = own_functions  # classes -> (MNN's kernel functions for their ops, every kernel helper)
        self.floor = None  # (warmup, iterations) -> (low, high): the device's noise floor for the task (noise_floor)
        self.bound = None  # () -> ms: the time to move the task's bytes at the device's bandwidth (bounds.py)
        self.floor_runs: set[tuple] = set()  # (label, index) of the runs that measured it
        self.budget = budget  # seconds a timed series may run on beyond MIN_RUNS for precision
        self.correct: dict = {}  # the verdict's fields once the candidate is judged correct
        self.built, self.flags, self.base, self.converted = built, list(review), base, list(converted)
        self.stages, self.finish = stages, finish
        self.runs: list[Run] = []
        self.read: dict[tuple, dict] = {}  # outputs read, by (side, run, set)
        self.checked: dict[tuple, tuple] = {}  # comparisons made, by (side, run, set, native run)
        self.counted: dict[tuple, float] = {}  # ms per iteration the judge counted, by (side, run index)
        self.correctness_outs: set[str] = set()
        self.started = time.monotonic()

    def verdict(self) -> Verdict:
        """Native once, the candidate once (correctness), then timed pairs."""
        session, drawn = self.session, self.drawn
        first_seed = drawn.seed
        try:
            native = series_module.native_run(session, self.runs, 1, first_seed, len(drawn.timed), every_set=True)
        except HarnessError as error:
            raise HarnessError(f"{self.task.name}: {error}") from None
        native_error = self.seeded_error(native, native)
        delegation = self.calls_own_functions(native)
        if delegation:
            return self.end("delegated", delegation)
        candidate = session.run("candidate", 1, first_seed, self.deadline(native), iterations=len(drawn.timed))
        self.runs.append(candidate)
        self.correctness_outs.update({native.out, candidate.out})
        failure = candidate.failure()
        if failure:
            return self.end(failure[0], failure[1])
        self.note_leftovers(candidate)
        served = [*self.converted, *(candidate.report or {}).get("served", [])]
        exercised, why = served_by_candidate(self.task, self.stage, served)
        if exercised != "ok":
            return self.end(exercised, why, served=served)
        compare_started = time.monotonic()
        wrong = self.wrong(candidate, native, drawn.names)
        if wrong:
            return self.end(wrong[0], wrong[1], served=served, errors=wrong[2])
        errors = self.errors(candidate, native)
        candidate_error = self.seeded_error(candidate, native)
        self.stages["compare"] = time.monotonic() - compare_started
        strict = strict_ok(candidate_error, native_error)
        if not strict:
            self.flags.append(f"strict: error {candidate_error:.3g} of the output's magnitude, native MNN's "
                              f"{native_error:.3g} (the paper's rule passes it)")
        threads = (candidate.report or {}).get("threads_after", 0) - (candidate.report or {}).get("threads_before", 0)
        if threads > 0:
            self.flags.append(f"threads: {threads} left running after the kernel")
        self.correct = correct = dict(compiled=True, correct=True, served=tuple(served), max_abs_error=errors[0],
                                      max_rel_error=errors[1], strict_ok=strict, scaled_error=candidate_error,
                                      native_scaled_error=native_error)
        if session.device.emulated:  # correctness only: no timing is taken where none could be reported
            return self.end("correct", "", **correct)
        return self.timed(native, candidate, correct)

    def calls_own_functions(self, native: Run) -> str:
        """Why the candidate is delegating, if it calls MNN's own kernel functions for the task's
        op: those of the classes that served the op in native's run (mnn.build.op_functions)."""
        if self.own_functions is None:
            return ""
        classes = {r.get("execution_class") for r in (native.report or {}).get("served", [])
                   if r.get("execution_class") and _serves_target(self.task, self.stage, r)}
        own, helpers = self.own_functions(classes) if classes else (frozenset(), frozenset())
        used = {name.split("(")[0] for name in self.built.undefined}
        called = sorted(used & own)
        self.flags.extend(f"note: uses MNN's {name}" for name in sorted((used & helpers) - own)[:5])
        if called:
            return (f"calls {', '.join(called[:3])}, MNN's own kernel function for {self.task.operator} "
                    f"(called by {', '.join(sorted(classes))[:80]})")
        return ""

    # ------------------------------------------------------------ runs

    def deadline(self, native: Run) -> float:
        """How long a candidate's correctness run may take: twice native's whole run (loading,
        sets, outputs) and SLOWER times native's kernel time in it (every execution of the model:
        the untimed first one, warm-up, timed, every other set, the recording run), at least
        MIN_DEADLINE: a slow kernel is judged, a hung one stopped soon."""
        times = native.times_ms
        per_run_s = (sorted(times)[len(times) // 2] if times else native.loop_ms) / 1000.0
        executions = 2 + native.warmup + native.iterations + len(self.drawn.names) - len(self.drawn.timed)
        seconds = 2.0 * native.result.seconds + series_module.SLOWER * executions * per_run_s
        return min(series_module.NATIVE_DEADLINE, max(series_module.MIN_DEADLINE, seconds))

    def measurements(self) -> list[dict]:
        """Every run as a measurements row: its time per iteration as the judge counted it (native's
        median, a candidate's as timing.candidate_ms charged it; the guard's wall time for a
        correctness run), up to TIMES_KEPT of the runner's own times, and what the guard saw."""
        rows = []
        for run in self.runs:
            counted = self.counted.get((run.label, run.index))
            times = run.times_ms
            step = max(1, -(-len(times) // TIMES_KEPT))
            rows.append({"side": run.label, "round": run.index, "input_shapes": self.artifacts.input_shapes,
                         "iterations": run.iterations, "median_ms": counted if counted is not None else run.wall_ms,
                         "times_ms": times[::step],
                         "device_state": {**run.device_state, "wall_ms": round(run.wall_ms, 3), "loop_ms": round(run.loop_ms, 3),
                                          "seed": run.seed, "warmup": run.warmup, "leftover": run.leftover,
                                          "timed": counted is not None, "every_set": run.out in self.correctness_outs,
                                          "series": "noise floor" if (run.label, run.index) in self.floor_runs else "candidate",
                                          "timed_inputs": (run.report or {}).get("timed_inputs")}})
        return rows

    def note_leftovers(self, run: Run) -> None:
        if run.leftover:
            self.flags.append(f"sandbox: {run.leftover} process(es) left behind by a run were killed")

    # ------------------------------------------------------------ correctness

    def outputs(self, run: Run, set_name: str) -> dict:
        key = (run.label, run.index, set_name)
        if key not in self.read:
            self.read[key] = task_artifacts.read_outputs(self.session.outputs(run, set_name))
        return self.read[key]

    def check(self, run: Run, name: str, native: Run):
        """(comparison, scaled error, what it was held against) for one set of a run, computed once:
        a seeded set against the reference, a fresh draw or a timed set against native's outputs."""
        key = (run.label, run.index, name, native.index)
        if key not in self.checked:
            if name in self.drawn.seeded:
                expected, what = self.artifacts.references[self.drawn.seeded[name]], self.drawn.seeded[name]
            else:
                expected = self.outputs(native, name)
                what = "a fresh draw" if name in self.drawn.fresh else "the timed inputs, after its runs"
            actual = self.outputs(run, name)
            result = compare_all(expected, actual, self.task.tolerance)
            self.checked[key] = (result, result.scaled_error if result.ok else scaled_error(expected, actual), what)
        return self.checked[key]

    def wrong(self, candidate: Run, native: Run, names) -> tuple[str, str, tuple] | None:
        """(verdict, reason, (max abs, max rel)) for the first set whose outputs are wrong, else None."""
        for name in names:
            result, _, what = self.check(candidate, name, native)
            if not result.ok:
                verdict = "wrong-shape" if "shape" in result.reason or "missing" in result.reason else "wrong-values"
                return verdict, f"{what}: {result.reason}", (result.max_abs_error, result.max_rel_error)
        return None

    def errors(self, run: Run, native: Run) -> tuple[float, float]:
        """The largest absolute and relative errors against the reference over the seeded sets."""
        results = [self.check(run, name, native)[0] for name in self.drawn.seeded]
        return (max((r.max_abs_error or 0.0 for r in results), default=0.0),
                max((r.max_rel_error or 0.0 for r in results), default=0.0))

    def seeded_error(self, run: Run, native: Run) -> float:
        """The scaled error (tasks.compare.scaled_error) against the reference, over the seeded sets."""
        return max((self.check(run, name, native)[1] for name in self.drawn.seeded), default=0.0)

    # ------------------------------------------------------------ timing

    def timed(self, first_native: Run, first_candidate: Run, correct: dict) -> Verdict:
        """A timed series (series.py) until the speedup's interval is within timing.PRECISION or
        the budget is spent; a speedup above timing.IMPLAUSIBLE_SPEEDUP is measured again in fresh
        processes and flagged; then the device's noise floor for the task (measured now if the
        store has none for these settings) says whether the figure is parity."""
        warmup, iterations = series_module.sizing(first_native, TARGET_RUN_MS)

        def check(run: Run, native: Run):
            wrong = self.wrong(run, native, self.drawn.timed)
            if wrong:
                return wrong[0], f"while timed: {wrong[1]} (work skipped, replayed or miscounted)", wrong[2]
            return None

        def one_series() -> series_module.Series | Verdict:
            done = series_module.run_series(self.session, self.runs, warmup, iterations, first_candidate.result.seconds,
                                            self.budget, check)
            self.counted.update(done.counted)
            self.flags.extend(n for n in done.notes if n not in self.flags)
            for run in done.challengers:
                self.note_leftovers(run)
            if done.failure:
                verdict, reason = done.failure
                fields = dict(correct)
                if verdict in ("wrong-values", "wrong-shape"):
                    fields.update(correct=False, max_abs_error=done.wrong_errors[0], max_rel_error=done.wrong_errors[1])
                return self.end(verdict, reason, **fields)
            return done

        done = one_series()
        if isinstance(done, Verdict):
            return done
        if done.figure is not None and done.figure.speedup > timing.IMPLAUSIBLE_SPEEDUP:
            first_figure = done.figure.speedup
            done = one_series()
            if isinstance(done, Verdict):
                return done
            again = f"{done.figure.speedup:.1f}x" if done.figure else "no figure"
            self.flags.append(f"implausible speedup {first_figure:.1f}x, re-measured {again} in fresh processes "
                              f"(> {timing.IMPLAUSIBLE_SPEEDUP:.0f}x): review")
        figure = done.figure
        if figure is None:
            return self.end("correct", "", **correct)
        bound = self.bound() if self.bound is not None else 0.0
        if bound and figure.native_median_ms < bounds.SLACK * bound:
            self.flags.append(f"note: native MNN ran below the bandwidth bound ({figure.native_median_ms:.4g} ms < "
                              f"{bounds.SLACK} x {bound:.4g} ms): the bound is not applied")
            bound = 0.0
        if bound and figure.candidate_median_ms < bounds.SLACK * bound:
            first_ms = figure.candidate_median_ms
            done = one_series()  # fresh processes, once more, before anyone believes it
            if isinstance(done, Verdict):
                return done
            if done.figure is None:
                return self.end("correct", "", **correct)
            figure = done.figure
            self.flags.append(f"implausible: {first_ms:.4g} ms, re-measured {figure.candidate_median_ms:.4g} ms, where "
                              f"reading the inputs and writing the outputs takes this device at least {bound:.4g} ms")
        if not figure.precise:
            # Within ±UNSTABLE the interval's lower bound is what fast_p counts; wider, the device was
            # too unsteady to trust the figure at all: blocked until measured again.
            spread = timing.spread(figure.speedup, figure.speedup_low, figure.speedup_high)
            what, limit = (("unstable timing", timing.UNSTABLE) if spread > timing.UNSTABLE
                           else ("note: imprecise timing", timing.PRECISION))
            self.flags.append(f"{what}: the speedup's interval {figure.speedup_low:.3f}-{figure.speedup_high:.3f} "
                              f"is wider than ±{limit:.0%} after {figure.runs} runs ({done.stopped_by})")
        floor = self.floor(warmup, iterations) if self.floor is not None else None
        return self.end("correct", "", native_median_ms=figure.native_median_ms, candidate_median_ms=figure.candidate_median_ms,
                        speedup=figure.speedup, speedup_low=figure.speedup_low, speedup_high=figure.speedup_high,
                        timing_reportable=True, timing_runs=figure.runs, timing_stopped_by=done.stopped_by,
                        bound_ms=bound or None, bound_fraction=bound / figure.candidate_median_ms if bound else None,
                        **({"noise_floor_low": floor[0], "noise_floor_high": floor[1]} if floor else {}), **correct)

    def end(self, verdict: str, reason: str, served=(), errors=(None, None), **fields) -> Verdict:
        self.stages["run"] = time.monotonic() - self.started - self.stages.get("compare", 0.0)
        fields.setdefault("compiled", True)
        fields.setdefault("correct", False)
        fields.setdefault("served", tuple(served))
        if errors != (None, None):
            fields.setdefault("max_abs_error", errors[0])
            fields.setdefault("max_rel_error", errors[1])
        return self.finish(Verdict(verdict, reason, flags=tuple(self.flags), compiler_output=self.built.compiler_output,
                                   **fields, **self.base), self.measurements())


def _pair_orders(count: int) -> list[tuple[str, str]]:
    """Pairs in a balanced order: each side first equally often."""
    order = timing.balanced_order(count)
    return [tuple(order[i:i + 2]) for i in range(0, len(order), 2)]


def judge_config(task: Task, settings: settings_module.Settings) -> dict:
    """The settings both sides run with (threads, precision, MNN hints) and whether the jail was on:
    recorded with every verdict, and the key a noise floor is reused under."""
    return {**task_artifacts.run_settings(task, settings.threads), "sandbox": "bwrap" if settings.sandbox else "off"}


def settings_key(config: dict) -> str:
    """The judge settings a timing depends on, as one key: a noise floor is reused only under the same."""
    return hashlib.sha256(json.dumps({**config, "protocol": PROTOCOL}, sort_keys=True).encode()).hexdigest()[:16]


def noise_floor(db, task: Task, device: Device, config: dict, judged: Judging, warmup: int, iterations: int
                ) -> tuple[float, float] | None:
    """The device's native/native band for the task under these settings: from the store, or
    measured now with the same series (native against its twin) and stored for the next evaluation."""
    device_id = store_device(db, device)
    key = settings_key(config)
    cached = rows.noise_floor_for(db, device_id, task.name, task.sha256, key)
    if cached:
        return cached
    before = len(judged.runs)
    done = series_module.run_series(judged.session, judged.runs, warmup, iterations, judged.runs[0].result.seconds,
                                    judged.budget, None, challenger="twin")
    judged.floor_runs.update((run.label, run.index) for run in judged.runs[before:])
    judged.counted.update(done.counted)
    if done.failure or done.figure is None:
        raise HarnessError(f"native MNN against itself failed on {task.name}: {done.failure or 'no figure'}")
    low, high = min(done.figure.speedup_low, 1.0), max(done.figure.speedup_high, 1.0)
    rows.record_noise_floor(db, device_id, task.name, low, high, settings_key=key, task_sha256=task.sha256,
                            speedup=done.figure.speedup, ratios=done.figure.ratios)
    return low, high


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
        "draw_seed": verdict.draw_seed, "strict_ok": None if verdict.strict_ok is None else int(verdict.strict_ok),
        "scaled_error": verdict.scaled_error, "native_scaled_error": verdict.native_scaled_error,
        "blocked": int(verdict.blocked), "timing_runs": verdict.timing_runs, "timing_stopped_by": verdict.timing_stopped_by,
        "noise_floor_low": verdict.noise_floor_low, "noise_floor_high": verdict.noise_floor_high,
        "bound_ms": verdict.bound_ms, "bound_fraction": verdict.bound_fraction,
    }
    evaluation_id = rows.record_evaluation(db, row, measurements)
    return replace(verdict, evaluation_id=evaluation_id)
