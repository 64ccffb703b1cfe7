"""The kinds of kernel a candidate can be, one module each behind one interface (base.Kind).

    kind = kind_of(task)                       # from the task spec's [mnn] kind
    built = kind.build(task, source, target, worker, settings)
    side = kind.candidate_side(task, artifacts, built, folder, settings)
    kind.stage                                 # where the runner records that MNN asked for it
    kind.scaffold(task, settings), kind.whole_file(task, ...), kind.task_line(task)

| kind          | the candidate is                                 | swapped in                                   |
|---------------|--------------------------------------------------|----------------------------------------------|
| cpu-execution | an Execution + Creator, REGISTER_CPU_OP_CREATOR  | the dispatcher in a CPUOPRegister.cpp copy   |
| geometry      | a GeometryComputer, REGISTER_GEOMETRY            | registered after MNN's own computers         |
| composite     | an OnnxExtraManager::Transform (Express API)     | a converter without MNN's transform for the op |

A fourth kind is one more package here (its module, prompt texts and C++ templates) and one more
entry in KINDS; nothing outside kinds/ names a kind.
"""

from __future__ import annotations

from pathlib import Path

from .. import settings as settings_module
from ..tasks.spec import Task
from .base import BuiltCandidate, CandidateSide, Kind, WholeFilePrompt
from .composite import COMPOSITE
from .cpu_execution import CPU_EXECUTION
from .geometry import GEOMETRY
from .scaffold import Scaffold, ScaffoldUnsupported

KINDS: dict[str, Kind] = {kind.name: kind for kind in (CPU_EXECUTION, GEOMETRY, COMPOSITE)}

__all__ = ["KINDS", "BuiltCandidate", "CandidateSide", "Kind", "Scaffold", "ScaffoldUnsupported", "WholeFilePrompt",
           "choose", "first_guess", "kind_of"]


class UnknownKind(ValueError):
    """A task names a kind of kernel mkbench does not have."""


def kind_of(task: Task) -> Kind:
    """The kind of kernel a task's spec records; UnknownKind for a task without one or with another."""
    if task.mnn is None:
        raise UnknownKind(f"{task.name} records no kind of kernel: run `mkbench tasks validate {task.name} --write`")
    try:
        return KINDS[task.mnn.kind]
    except KeyError:
        raise UnknownKind(f"{task.name}: unknown kind of kernel {task.mnn.kind!r} (known: {', '.join(KINDS)})") from None


def first_guess(compute: list) -> tuple[str, tuple]:
    """The kind a converted graph's compute ops suggest before MNN is asked (validation without a
    native runner), and the targets they make."""
    targets = tuple(dict.fromkeys((op.type, op.sub_type) for op in compute))
    name = next((kind.name for kind in KINDS.values() if kind.guesses(compute)), next(iter(KINDS)))
    return name, targets


def choose(task: Task, targets: tuple, record: dict, tree_root: Path | None,
           settings: settings_module.Settings) -> tuple[str, tuple, bool, str]:
    """(kind, targets, judgeable, reason): the kind whose kernel MNN asks for when it runs the task
    (`record`: the native runner's report), the most preferred when several fit (one CPU op, then
    the converter's own transform, then several CPU ops, then geometry computers)."""
    fitting = [(found[0], kind.name, found[1]) for kind in KINDS.values()
               if (found := kind.fits(task, targets, record, tree_root, settings)) is not None]
    if fitting:
        _, name, chosen = min(fitting)
        return name, chosen, True, ""
    from .probe import asked, executed

    rest = [f"{op}:{sub}" if sub else op for op, sub in targets if not asked(record, "execution", op, sub)]
    return task.mnn.kind if task.mnn else next(iter(KINDS)), targets, False, (
        f"MNN asks for no kernel of any kind for {', '.join(rest)}: it runs {executed(record)}")
