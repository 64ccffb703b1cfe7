"""The two modes a generator writes in, behind one small interface.

    mode = make_mode("scaffolded", task, settings, index)    # or "whole-file"
    mode.draft()                                              # template values for the Coder's first prompt
    candidate = mode.candidate(answer_text)         # extract, lint, splice: what the judge gets

whole-file: the model writes the whole kernel file (Execution, Creator, registration), as the
paper's MoKA does; the prompt carries MNN's API excerpts and a worked example of another op.
scaffolded: the scaffolding tool writes everything MNN-specific and the model writes only plain
functions over raw pointers; the lint pass rejects what it must not write before compiling.
"""

from __future__ import annotations

from .. import settings as settings_module
from ..kinds import ScaffoldUnsupported, WholeFilePrompt, kind_of
from ..kinds.scaffold import Scaffold
from ..llm.chat import code_blocks, extract_code
from ..llm.identifiers import Identifiers
from ..tasks.spec import Task
from . import prompts
from .attempt import Candidate
from .tools import lint, model_parser, unit_test
from .tools.tree import TreeIndex


class WholeFile:
    name = "whole-file"
    max_tokens = 1800  # a whole kernel file

    def __init__(self, task: Task, settings: settings_module.Settings, index=None, definition: bool = True,
                 api_names: bool = True):
        self.task, self.index, self.settings, self.definition = task, index, settings, definition
        self.api_names = api_names
        self._prompt: WholeFilePrompt | None = None
        self._api: str | None = None
        self._identifiers: Identifiers | None = None

    @property
    def identifiers(self) -> Identifiers | None:
        """What the Coder's decoding may write after OpType_, DataType_, main_as_ and MNN::, and
        after `.` or `->` on a variable of an MNN type (the names of the pinned tree's index), or
        None with the ablation."""
        if not self.api_names:
            return None
        if self._identifiers is None:
            self._identifiers = api_identifiers(self.index, self.task, self.settings, prefixes=True)
        return self._identifiers

    def prompt(self) -> WholeFilePrompt:
        """The kind's system text, worked example and MNN lookups for this task (made once)."""
        if self._prompt is None:
            tables = lambda op_type: model_parser.parameter_tables(self.task, self.settings).get(op_type)  # noqa: E731
            self._prompt = kind_of(self.task).whole_file(self.task, tables)
        return self._prompt

    def base(self) -> dict:
        """Template values every prompt of this task starts with (one shared prefix)."""
        if self._api is None:
            index = self.index or TreeIndex.load(self.settings).for_targets(self.task.mnn.targets if self.task.mnn else ())
            self._api = "\n\n".join(index.describe(q, max_lines=24) for q in self.prompt().api_queries)
        return {"system": self.prompt().system, "task": prompts.task_block(self.task, framework=True, definition=self.definition),
                "api": self._api}

    def draft(self) -> dict:
        """Values for the first request: the base, and a worked example of the same kind for another op."""
        return {**self.base(), "example": self.prompt().example}

    def candidate(self, answer: str) -> Candidate:
        code = extract_code(answer)
        if code is None and any(mark in answer for mark in ("REGISTER_CPU_OP_CREATOR", "REGISTER_GEOMETRY", "OnnxExtraManager")):
            code = answer  # an answer without fences
        if not code or not code.strip():
            return Candidate(None, None, "no C++ code block in the answer: answer with the whole file in one ```cpp block")
        return Candidate(code, code)


def api_identifiers(index, task: Task, settings, prefixes: bool) -> Identifiers:
    """The names of the tree's index a Coder's decoding is kept to: members after `.` and `->` on
    variables of MNN types (a VARP's `->` reaches its Variable), and with `prefixes` the names after
    OpType_, DataType_, main_as_ and MNN::."""
    index = index or TreeIndex.load(settings).for_targets(task.mnn.targets if task.mnn else ())
    return Identifiers(index.api_names() if prefixes else {}, index.api_members(), {"VARP": "Variable"})


class Scaffolded:
    name = "scaffolded"
    max_tokens = 800  # a few short functions

    def __init__(self, task: Task, settings: settings_module.Settings, index=None, definition: bool = True,
                 api_names: bool = True):
        self.task, self.index, self.settings, self.definition = task, index, settings, definition
        self.scaffold: Scaffold = kind_of(task).scaffold(task, settings)
        self.api_names = api_names
        self._identifiers: Identifiers | None = None

    @property
    def identifiers(self) -> Identifiers | None:
        """A composite's functions use MNN's Express API: their decoding is kept to the members
        MNN's types have after `.` and `->` (a small model wrote `x->dim` on a VARP). The other
        kinds' functions are plain C++ over raw pointers: nothing to keep. None with the ablation."""
        if not self.api_names or self.task.mnn is None or self.task.mnn.kind != "composite":
            return None
        if self._identifiers is None:
            self._identifiers = api_identifiers(self.index, self.task, self.settings, prefixes=False)
        return self._identifiers

    def base(self) -> dict:
        return {"system": self.scaffold.system, "methods": self.scaffold.methods,
                "task": prompts.task_block(self.task, framework=False, definition=self.definition),
                "stubs": self.scaffold.stubs()}

    def draft(self) -> dict:
        return self.base()

    def extract(self, answer: str) -> str | None:
        """The functions in an answer: its longest C++ block if that defines them all, else all blocks joined."""
        code = extract_code(answer)
        if code is not None and all(f"{name}(" in code for name in self.scaffold.names):
            return code
        blocks = [b.code for b in code_blocks(answer) if b.language in ("cpp", "c++", "c", "cc", "") and b.code.strip()]
        unique = list(dict.fromkeys(blocks))
        if unique:
            return "\n".join(unique)
        if any(f"{name}(" in answer for name in self.scaffold.names):
            return answer  # an answer without fences
        return None

    def candidate(self, answer: str) -> Candidate:
        code, dropped = lint.without_system_includes(self.extract(answer))
        repairs = (f"dropped {dropped} #include <...> line{'s' if dropped > 1 else ''}",) if dropped else ()
        problem = lint.check(code, self.scaffold)
        if problem is not None:
            return Candidate(code, None, problem, repairs=repairs)
        source, region = self.scaffold.splice(code)
        return Candidate(code, source, None, region, repairs)


def make_mode(name: str, task: Task, settings: settings_module.Settings, index=None, definition: bool = True,
              api_names: bool = True):
    """The mode object for "whole-file" or "scaffolded" (ScaffoldUnsupported when it cannot frame the
    task); `definition`: the operator's semantics in the task block; `api_names`: decoding kept to
    the tree's names (whole-file kernels; composites' functions in scaffolded mode)."""
    if name == "whole-file":
        return WholeFile(task, settings, index, definition, api_names)
    if name == "scaffolded":
        return Scaffolded(task, settings, index, definition, api_names)
    raise ValueError(f"unknown mode {name!r}: use whole-file or scaffolded")


def open_mode(attempt, name: str, index=None, unit_tests: bool = True, definition: bool = True, api_names: bool = True):
    """The mode for an attempt, or None (recorded as a step) when the scaffold cannot frame the task.
    In scaffolded mode with `unit_tests`, the attempt gets the task's unit tests where there are
    some (tools/unit_test.py); a step says which, or why none."""
    try:
        mode = make_mode(name, attempt.task, attempt.settings, index, definition, api_names)
    except ScaffoldUnsupported as error:
        attempt.step("scaffold", {"error": str(error)})
        return None
    if unit_tests and isinstance(mode, Scaffolded):
        try:
            made = unit_test.for_task(attempt.task, mode.scaffold, attempt.settings or settings_module.load())
        except Exception as error:  # an aid, never the attempt's failure: the judge then is the test
            made = f"{attempt.task.name}: no unit test ({type(error).__name__}: {str(error)[:200]}); the judge is the test"
        attempt.unit_tests = None if isinstance(made, str) else made
        attempt.step("unit-test", {"available": attempt.unit_tests is not None,
                                   "reason": made if isinstance(made, str) else "; ".join(c.label for c in made.checks)})
    return mode
