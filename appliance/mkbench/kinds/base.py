"""The interface every kind of kernel implements, and the values that cross it.

A kind answers, for one task, every question whose answer depends on how MNN is asked for the
task's work: how a candidate is built and swapped in, where the runner records that it was asked
(its stage), whether MNN asks for it at all on this task, and what the agents are told and may
write (prompts, worked example, scaffold, lint). Nothing outside kinds/ branches on a kind's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable

from .. import settings as settings_module
from ..tasks.spec import Task


@dataclass(frozen=True)
class BuiltCandidate:
    """A candidate built for one device target; a compile error is ok=False, never an exception."""

    ok: bool
    reason: str  # one line: why not ok ("" when ok)
    compiler_output: str  # the compiler's and linker's output, plus mkbench's own findings
    runner: Path | None  # the runner that runs the candidate side (None: the native runner, with candidate_side's model)
    converter: Path | None = None  # a candidate converter (composite kernels)
    native_references: tuple[str, ...] = ()  # evidence of delegation to MNN's own implementation of the task's op
    helpers: tuple[str, ...] = ()  # MNN functions it calls that implement other things (allowed, recorded)
    build_id: int | None = None
    forbidden: tuple[str, ...] = ()  # what its object may not hold (mnn/object_rules.py): verdict `forbidden`
    undefined: tuple[str, ...] = ()  # what its object uses from elsewhere (demangled): delegation is read from it
    flags: tuple[str, ...] = ()  # review flags its object raised (threads of its own)


@dataclass(frozen=True)
class CandidateSide:
    """What the candidate side of the timing pairs runs, besides its runner: a model of its own
    (a composite's converter makes one), the proof that the candidate was asked while making it,
    and a failure or review flags found on the way."""

    model: Path | None = None
    served: tuple[dict, ...] = ()
    failure: tuple[str, str] | None = None  # (verdict, reason)
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class WholeFilePrompt:
    """What a whole-file prompt shows of a kind: its system text, a worked example of another op
    ("" when the example is of the task's own op), and the MNN declarations to look up."""

    system: str
    example: str
    api_queries: tuple[str, ...]


class Kind:
    """One kind of kernel. Subclasses set the class attributes and implement the methods."""

    name: str = ""  # as task specs record it: cpu-execution | geometry | composite
    stage: str = ""  # where the runner's record says MNN asked: execution | geometry | converter
    shows_converted_graph: bool = True  # False when the converted graph is MNN's own rewrite of the op

    @property
    def folder(self) -> Path:
        """The kind's own files: its prompt texts (.md) and scaffold templates (.cpp)."""
        return Path(__file__).parent / self.name.replace("-", "_")

    def text(self, name: str) -> str:
        """One of the kind's prompt texts (kinds/<kind>/<name>.md)."""
        return _read(self.folder / f"{name}.md").strip("\n")

    def template(self, name: str) -> str:
        """One of the kind's C++ templates (kinds/<kind>/<name>)."""
        return _read(self.folder / name)

    # ------------------------------------------------------------ the judge

    def build(self, task: Task, source: str, target: str, worker: str, settings: settings_module.Settings) -> BuiltCandidate:
        """Build the candidate for a device target ("host" or "arm64")."""
        raise NotImplementedError

    def candidate_side(self, task: Task, artifacts, built: BuiltCandidate, folder: Path,
                       settings: settings_module.Settings) -> CandidateSide:
        """What the candidate side runs besides its runner (by default: the task's own model)."""
        return CandidateSide()

    # ------------------------------------------------------------ which tasks it serves

    def fits(self, task: Task, targets: tuple, record: dict, tree_root: Path | None,
             settings: settings_module.Settings) -> tuple[int, tuple] | None:
        """(preference, targets) when MNN, running the task natively (`record`: the native runner's
        report), asks for what this kind replaces; lower preference wins. None when it does not fit."""
        raise NotImplementedError

    def runtime_hints(self, task: Task, targets: tuple) -> dict[str, int]:
        """MNN runtime hints this kind needs so that MNN asks its kernel at all (the judge sets them
        for native and candidate alike, and records them). None by default."""
        return {}

    def guesses(self, compute: list) -> bool:
        """Before MNN is asked (no native runner yet): does a converted graph's list of compute ops
        (mnn.conversion.ConvertedOp) look like this kind's? The first kind in the registry that says so wins."""
        raise NotImplementedError

    def judgeable(self, task: Task, runner: Path, settings: settings_module.Settings) -> tuple[bool, str]:
        """(judgeable, reason) for the targets the task records: does MNN ask for them?"""
        raise NotImplementedError

    # ------------------------------------------------------------ what the agents see and write

    def task_line(self, task: Task) -> str:
        """What the kernel serves and how it registers, for a whole-file prompt's task block."""
        raise NotImplementedError

    def whole_file(self, task: Task, parameter_table: Callable[[str], str | None]) -> WholeFilePrompt:
        """The system text, worked example and API lookups of a whole-file prompt; parameter_table
        names the flatbuffers table of an op type's parameters, when the converted model says."""
        raise NotImplementedError

    def scaffold(self, task: Task, settings: settings_module.Settings):
        """The scaffold that frames the task (kinds.scaffold.Scaffold); ScaffoldUnsupported when it cannot."""
        raise NotImplementedError


@cache
def _read(path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} is missing from {path.parent}")
    return path.read_text(encoding="utf-8")


def targets_label(targets) -> str:
    """"OpType_X (SUB), OpType_Y" as the prompts name a task's targets."""
    return ", ".join(f"OpType_{op} ({sub})" if sub else f"OpType_{op}" for op, sub in targets) or "(unknown)"
