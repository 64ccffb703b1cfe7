"""`mkbench tasks validate`: is every task fit to judge someone else's kernel?

For each task: the ONNX model builds and passes onnx's checker with the declared output
shapes; the reference (onnx's ReferenceEvaluator) is finite and not degenerate (it varies
with the inputs, and neither an all-zeros nor a copy-the-input kernel would pass); the
reference path reproduces onnx's own node test vectors for the operator where onnx has
them; the model converts to .mnn and the converted graph is what the spec records
(kind, targets); native MNN on the host agrees with the reference within the task's
tolerance. Then the native runner's record of what MNN asked for (CPU creators, geometry
computers) and the converter's own transforms choose the kind of kernel that serves the task
(kinds.choose). Findings are per task, so one bad task never hides the others.
"""

from __future__ import annotations

import functools
import json
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from . import kinds
from . import settings as settings_module
from .mnn import conversion
from .mnn import tree as tree_module
from .settings import JUDGE_HINTS
from .tasks import model as task_model
from .tasks.compare import compare_all
from .tasks.native import run_native
from .tasks.spec import MnnTarget, Task


@dataclass(frozen=True)
class TaskCheck:
    """What validation found for one task."""

    name: str
    problems: tuple[str, ...]  # one line each; empty when the task is sound
    node_tests: int  # onnx node test cases reproduced for this task's operator (0: none exist)
    converted_ops: tuple[str, ...] = ()
    hints: tuple[tuple[str, int], ...] = ()
    kind: str | None = None
    targets: tuple[tuple[str, str | None], ...] = ()
    native_ok: bool | None = None  # None: native MNN could not be run
    native_max_abs_error: float | None = None
    runnable: bool = False
    reason: str = ""  # why not runnable, one line, with the figure
    notes: tuple[str, ...] = field(default_factory=tuple)
    mismatch: str = ""  # the spec's recorded [mnn] differs from what conversion gives now
    judgeable: bool | None = None  # MNN asks for the chosen kind of kernel (None: no host build to tell)
    judge_reason: str = ""


# Ops that only reinterpret or read a shape: the work of a task that has other ops is elsewhere.
SHAPE_ONLY_OPS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "ExpandDims", "Flatten", "Shape", "Rank", "Size"})


def classify(ops: list[conversion.ConvertedOp]) -> tuple[str, tuple[tuple[str, str | None], ...]]:
    """The kind of kernel a converted graph suggests (kinds.first_guess), and which (op type,
    sub-type) it replaces: its compute ops, without the shape-only ones when others do the work."""
    compute = conversion.compute_ops(ops)
    if any(op.type not in SHAPE_ONLY_OPS for op in compute):
        compute = [op for op in compute if op.type not in SHAPE_ONLY_OPS]
    return kinds.first_guess(compute)


@functools.lru_cache(maxsize=None)
def node_test_cases(operator: str) -> tuple:
    """onnx's own backend test cases for an operator (model, inputs, expected outputs)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # "_expanded" cases run the operator's function body (e.g. a Loop), not the operator
        # node our task models use; they test onnx's expansion, not our reference path.
        return tuple(case for case in collect_testcases(operator)
                     if case.kind == "node" and not case.name.endswith("_expanded"))


def check_node_tests(operator: str) -> tuple[int, list[str]]:
    """Run our reference path over onnx's node tests for the operator; (count, failures)."""
    from onnx.reference import ReferenceEvaluator

    count, failures = 0, []
    for case in node_test_cases(operator):
        for inputs, expected in case.data_sets or []:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    evaluator = ReferenceEvaluator(case.model, new_ops=task_model._reference_fixes())
                    feeds = {i.name: v for i, v in zip(case.model.graph.input, inputs)}
                    got = evaluator.run(None, feeds)
            except Exception as error:  # a reference that cannot run a published vector is a finding
                failures.append(f"node test {case.name}: reference failed: {type(error).__name__}: {str(error)[:120]}")
                continue
            count += 1
            for g, e in zip(got, expected):
                g, e = np.asarray(g), np.asarray(e)
                same = g.shape == e.shape and (np.array_equal(g, e) if e.dtype.kind not in "fc"
                                               else np.allclose(g, e, rtol=case.rtol or 1e-3, atol=case.atol or 1e-7, equal_nan=True))
                if not same:
                    failures.append(f"node test {case.name}: reference disagrees with onnx's expected output")
                    break
    return count, failures


def _degenerate(task: Task, sets: list[tuple[dict, dict]]) -> list[str]:
    """Trivial kernels that would pass every correctness set: such a task judges nothing.

    `sets` holds (inputs, reference) per correctness set; a trivial kernel fails the task
    as soon as it fails one set, so it is a finding only if it passes them all.
    """
    problems = []
    drawn = any(i.draw and not i.draw.startswith(("const", "full")) for i in task.inputs)
    for spec in task.outputs:
        refs = [ref[spec.name] for _, ref in sets]
        first = refs[0]
        if first.size <= 1 and not drawn:
            continue
        if drawn and all(r.shape == first.shape and np.array_equal(r, first) for r in refs[1:]):
            problems.append(f"{spec.name}: reference does not change with the inputs ({float(first.flat[0]):.6g})")
        if all(compare_all({spec.name: r}, {spec.name: np.zeros_like(r)}, task.tolerance).ok for r in refs):
            problems.append(f"{spec.name}: an all-zeros output passes the tolerance")
        elif first.dtype.kind != "f" and first.size > 1 and all(r.size and (r == r.flat[0]).all() and r.flat[0] == first.flat[0]
                                                                 for r in refs):
            problems.append(f"{spec.name}: a constant output ({first.flat[0]}) passes every set")
        for name in (i.name for i in task.inputs):
            if all(inputs[name].shape == ref[spec.name].shape and inputs[name].dtype.kind == "f"
                   and compare_all({spec.name: ref[spec.name]}, {spec.name: inputs[name]}, task.tolerance).ok
                   for inputs, ref in sets):
                problems.append(f"{spec.name}: copying input {name} passes the tolerance")
    return problems


def check_task(task: Task, settings: settings_module.Settings, host_runner: Path | None = None) -> TaskCheck:
    """Every check for one task (runs converters and native MNN in child processes); with the
    native host runner, also which kind of kernel serves it and whether MNN asks for it (kinds.choose)."""
    problems = []
    try:
        built = task_model.build_model(task)
        inferred = onnx.shape_inference.infer_shapes(built, strict_mode=True)
        del inferred
    except Exception as error:
        return TaskCheck(task.name, (f"model does not build: {type(error).__name__}: {str(error).splitlines()[0][:200]}",), 0,
                         reason="model does not build")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inputs = task_model.draw_inputs(task, "timing")
        reference = task_model.reference_outputs(task, inputs, built)
        check_sets = []
        for set_name in task_model.correctness_sets(task):
            set_inputs = task_model.draw_inputs(task, set_name)
            check_sets.append((set_inputs, task_model.reference_outputs(task, set_inputs, built)))
    nonfinite = [f"{n}: {int((~np.isfinite(v)).sum())} of {v.size} reference values are not finite (max |finite| "
                 f"{float(np.abs(v[np.isfinite(v)]).max()) if np.isfinite(v).any() else 0:.3g})"
                 for n, v in reference.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    degenerate = [] if nonfinite else _degenerate(task, check_sets)
    node_count, node_failures = check_node_tests(task.operator)
    problems += node_failures

    with tempfile.TemporaryDirectory(prefix=f"mkbench-validate-{task.name}-") as tmp:
        onnx_path, mnn_path = Path(tmp) / "task.onnx", Path(tmp) / "task.mnn"
        onnx.save(built, onnx_path)
        try:
            conversion.convert(onnx_path, mnn_path, settings)
            ops = conversion.converted_ops(mnn_path, settings)
        except conversion.ConversionError as error:
            reason = f"MNN's converter refuses the model: {error}"
            return TaskCheck(task.name, tuple(problems), node_count, reason=reason, notes=tuple(nonfinite))
        kind, targets = classify(ops)
        hints = kinds.KINDS[kind].runtime_hints(task, targets)
        labels = tuple(op.label for op in conversion.compute_ops(ops))
        native_ok, native_error, native_reason = None, None, ""
        try:
            actual = run_native(mnn_path, inputs, [o.name for o in task.outputs], Path(tmp) / "native",
                                hints={**JUDGE_HINTS, **hints})
            result = compare_all(reference, actual, task.tolerance)
            native_ok, native_error = result.ok, result.max_abs_error
            native_reason = result.reason
        except Exception as error:
            native_reason = str(error)[:200]
    mismatch = _mismatch(task, kind, targets, hints)
    reason = ""
    if nonfinite:
        reason = "reference not finite in fp32: " + nonfinite[0]
    elif degenerate:
        reason = "degenerate as published: " + "; ".join(degenerate)
    elif native_ok is None:
        reason = f"native MNN cannot run it: {native_reason}"
    elif not native_ok:
        reason = f"native MNN disagrees with the reference: {native_reason}"
    runnable = not reason and not problems
    judgeable, judge_reason = None, ""
    if runnable and host_runner is not None:
        kind, targets, hints, judgeable, judge_reason = _measured_kind(task, kind, targets, labels, hints, host_runner, settings)
        mismatch = _mismatch(task, kind, targets, hints)
    return TaskCheck(task.name, tuple(problems), node_count, labels, tuple(sorted(hints.items())), kind, targets,
                     native_ok, native_error, runnable, reason, tuple(nonfinite), mismatch, judgeable, judge_reason)


def _mismatch(task: Task, kind: str, targets: tuple, hints: dict) -> str:
    if task.mnn is None or task.mnn.kind != kind or tuple(task.mnn.targets) != targets or task.mnn.hints != hints:
        recorded = f"{task.mnn.kind} {list(task.mnn.targets)} {task.mnn.hints}" if task.mnn else "nothing"
        return f"spec records {recorded}, conversion gives {kind} {list(targets)} {hints} (run with --write)"
    return ""


def _measured_kind(task: Task, kind: str, targets: tuple, labels: tuple, hints: dict, host_runner: Path,
                   settings: settings_module.Settings):
    """(kind, targets, hints, judgeable, reason): the kind of kernel the native runner's record
    shows MNN asking for (kinds.choose), with the runtime hints that kind needs."""
    from dataclasses import replace as replace_field

    from .kinds.probe import native_record

    try:
        root = tree_module.open_tree(settings).path
    except tree_module.TreeError:
        root = None
    probe = replace_field(task, mnn=MnnTarget(kind, targets, labels, hints))
    try:
        record = native_record(probe, host_runner, settings)
    except RuntimeError as error:
        return kind, targets, hints, False, str(error)
    kind, chosen, judgeable, reason = kinds.choose(probe, targets, record, root, settings)
    return kind, chosen, kinds.KINDS[kind].runtime_hints(task, chosen), judgeable, reason


def validate(tasks: list[Task], settings: settings_module.Settings, workers: int = 2) -> list[TaskCheck]:
    """Check every task, in parallel worker processes; results in the tasks' order."""
    from .kinds.probe import host_runner

    runner = host_runner(settings)
    if workers <= 1:
        return [check_task(t, settings, runner) for t in tasks]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(check_task, tasks, [settings] * len(tasks), [runner] * len(tasks)))


def to_json(check: TaskCheck) -> dict:
    return json.loads(json.dumps(asdict(check)))


@dataclass(frozen=True)
class Summary:
    """What `tasks validate` prints at the end."""

    tasks: int
    runnable: int
    runnable_by_kind: dict
    node_test_tasks: int  # tasks whose operator's onnx node tests the reference reproduced
    native_checked: int  # tasks native MNN ran on
    native_agrees: int
    failures: tuple[str, ...]  # one line each: what is wrong with the suite as written
    not_runnable: tuple[str, ...]  # one line each: task and reason (declared in its spec)
    judgeable_by_kind: dict = field(default_factory=dict)  # runnable tasks today's judge serves
    not_judgeable: tuple[str, ...] = ()  # runnable, but MNN never asks any kind of kernel for a target


def write_refusal(tasks: list[Task]) -> str:
    """Why `--write` may not record findings in these specs ("" when it may). Specs anywhere may be
    written (a checkout's tasks/, MKBENCH_TASKS, the data folder's imported tasks) except the
    built-in ones an installed mkbench carries (the appliance image's): those are read-only to
    mkbench, and are changed in a source checkout, where `--write` records them for the next build."""
    packaged = [t for t in tasks if settings_module.in_package(t.path)]
    if not packaged:
        return ""
    names = ", ".join(t.name for t in packaged[:3]) + (f" and {len(packaged) - 3} more" if len(packaged) > 3 else "")
    return (f"--write would change built-in task specs of this installed mkbench ({names}, under "
            f"{settings_module.PACKAGED / 'tasks'}): change them in a source checkout (its tasks/ folder) "
            "and rebuild; validate without --write to see the findings")


def findings_to_spec(task: Task, check: TaskCheck) -> None:
    """Record what conversion and native MNN showed in the task's spec file (never a built-in
    spec of an installed mkbench: see write_refusal)."""
    from .tasks.spec import write_section

    if settings_module.in_package(task.path):
        raise ValueError(write_refusal([task]))
    if check.kind:
        write_section(task.path, "mnn", {"kind": check.kind, "targets": [list(t) if t[1] else [t[0]] for t in check.targets],
                                         "converted_ops": list(check.converted_ops),
                                         "hints": dict(check.hints) or None})
    reason = check.reason or "; ".join(check.problems)
    write_section(task.path, "status", {"runnable": check.runnable, "reason": reason,
                                        "judgeable": check.judgeable, "judge_reason": check.judge_reason or None})


def summarise(tasks: list[Task], checks: list[TaskCheck], written: bool = False) -> Summary:
    """Failures are what is wrong with the suite as written; with written=True the findings
    were just recorded in the specs, so recorded-vs-found differences are gone."""
    failures, not_runnable, by_kind, judgeable_by_kind, not_judgeable = [], [], {}, {}, []
    for task, check in zip(tasks, checks):
        for problem in check.problems:
            failures.append(f"{task.name}: {problem}")
        if check.mismatch and not written:
            failures.append(f"{task.name}: {check.mismatch}")
        if not written and task.status.runnable and not check.runnable and not check.problems:
            failures.append(f"{task.name}: declared runnable, but {check.reason}")
        if not written and not task.status.runnable and check.runnable:
            failures.append(f"{task.name}: declared not runnable ({task.status.reason}), but it passes every check now")
        if check.runnable:
            by_kind[check.kind] = by_kind.get(check.kind, 0) + 1
        if check.judgeable:
            judgeable_by_kind[check.kind] = judgeable_by_kind.get(check.kind, 0) + 1
        elif check.runnable and check.judgeable is False:
            not_judgeable.append(f"{task.name}: {check.judge_reason}")
        elif not check.runnable:
            not_runnable.append(f"{task.name}: {check.reason or '; '.join(check.problems)}")
    return Summary(len(tasks), sum(c.runnable for c in checks), by_kind,
                   sum(c.node_tests > 0 and not any(p.startswith("node test") for p in c.problems) for c in checks),
                   sum(c.native_ok is not None for c in checks), sum(bool(c.native_ok) for c in checks),
                   tuple(failures), tuple(not_runnable), judgeable_by_kind, tuple(not_judgeable))
