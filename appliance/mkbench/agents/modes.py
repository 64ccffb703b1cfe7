"""The two modes a generator writes in, behind one small interface.

    mode = make_mode("scaffolded", task, index)    # or "whole-file"
    mode.context()                                  # template values for the Coder's first prompt
    candidate = mode.candidate(answer_text)         # extract, lint, splice: what the judge gets

whole-file: the model writes the whole kernel file (Execution, Creator, registration), as the
paper's MoKA does; the prompt carries MNN's API excerpts and a worked example of another op.
scaffolded: the scaffolding tool writes everything MNN-specific and the model writes only plain
functions over raw pointers; the lint pass rejects what it must not write before compiling.
"""

from __future__ import annotations

from ..llm.chat import code_blocks, extract_code
from ..tasks.spec import Task
from . import prompts
from .attempt import Candidate
from .tools import lint, model_parser
from .tools.scaffold import Scaffold, ScaffoldUnsupported, scaffold_for
from .tools.tree import TreeIndex

# What every whole-file kernel needs from MNN, shown as compact declarations from the pinned tree.
API_QUERIES = ("Execution", "CPUBackend::Creator", "REGISTER_CPU_OP_CREATOR", "Tensor::host", "Tensor::length",
               "Tensor::dimensions", "Tensor::elementSize", "Tensor::getType", "CPUBackend::getTensorSize",
               "CPUBackend::threadNumber")
# The same for the other kinds of kernel: a geometry computer, a converter transform.
KIND_API_QUERIES = {
    "geometry": ("GeometryComputer", "GeometryComputer::registerGeometryComputer", "REGISTER_GEOMETRY",
                 "TensorUtils::getDescribe", "Tensor::InsideDescribe::Region", "Tensor::length", "Tensor::dimensions",
                 "GeometryComputerUtils::makeRaster"),
    "composite": ("OnnxExtraManager", "OnnxExtraManager::Transform", "Expr", "_Exp", "_Log", "_Add", "_Subtract",
                  "_Multiply", "_ReduceMax", "_ReduceSum", "_Scalar"),
}
# The worked example of each kind, and the op it is written for (not shown for a task on that op).
KIND_EXAMPLES = {"geometry": ("example.geometry", "Reshape"), "composite": ("example.composite", "Softplus")}
# The flatbuffers table that holds each op type's parameters, when the converted model cannot say.
PARAMETER_TABLES = {"UnaryOp": "UnaryOp", "BinaryOp": "BinaryOp", "Reduction": "ReductionParam", "Softmax": "Axis"}


def api_excerpts(task: Task, index: TreeIndex | None = None, settings=None) -> str:
    """MNN's declarations a kernel for this task needs: the fixed API, and its op's parameter accessors."""
    targets = task.mnn.targets if task.mnn else ()
    index = index or TreeIndex.load(settings).for_targets(targets)
    kind = task.mnn.kind if task.mnn else "cpu-execution"
    if kind in KIND_API_QUERIES:
        return "\n\n".join(index.describe(q, max_lines=24) for q in KIND_API_QUERIES[kind])
    tables = model_parser.parameter_tables(task, settings)
    queries = list(API_QUERIES)
    for op_type in dict.fromkeys(op for op, _ in targets):
        table = tables.get(op_type) or PARAMETER_TABLES.get(op_type)
        if table:
            queries += [f"Op::main_as_{table}", table]
    return "\n\n".join(index.describe(q, max_lines=24) for q in queries)


class WholeFile:
    name = "whole-file"
    max_tokens = 1800  # a whole kernel file

    def __init__(self, task: Task, index=None, settings=None):
        self.task, self.index, self.settings = task, index, settings
        self._api: str | None = None

    def base(self) -> dict:
        """Template values every prompt of this task starts with (one shared prefix)."""
        if self._api is None:
            self._api = api_excerpts(self.task, self.index, self.settings)
        kind = self.task.mnn.kind if self.task.mnn else "cpu-execution"
        system = "system.whole-file" if kind == "cpu-execution" else f"system.whole-file.{kind}"
        return {"system": prompts.text(system), "task": prompts.task_block(self.task, framework=True), "api": self._api}

    def draft(self) -> dict:
        """Values for the first request: the base, and a worked example of the same kind for another op."""
        op_types = {op for op, _ in (self.task.mnn.targets if self.task.mnn else ())}
        kind = self.task.mnn.kind if self.task.mnn else "cpu-execution"
        if kind in KIND_EXAMPLES:
            example, example_op = KIND_EXAMPLES[kind]
            text = "" if example_op in op_types else prompts.text(example)
            return {**self.base(), "example": text}
        return {**self.base(), "example": prompts.text("example.binary" if "UnaryOp" in op_types else "example.unary")}

    def candidate(self, answer: str) -> Candidate:
        code = extract_code(answer)
        if code is None and any(mark in answer for mark in ("REGISTER_CPU_OP_CREATOR", "REGISTER_GEOMETRY", "OnnxExtraManager")):
            code = answer  # an answer without fences
        if not code or not code.strip():
            return Candidate(None, None, "no C++ code block in the answer: answer with the whole file in one ```cpp block")
        return Candidate(code, code)


# What the Accelerator may propose for the model's functions: loops over raw pointers, or a graph.
FUNCTION_METHODS = ("Methods are, for example: SIMD vectorisation, loop unrolling, fusing passes, a multiplication "
                    "instead of a division, fewer passes over memory. The caller already splits the work across threads.")
COMPOSITE_METHODS = ("Methods are, for example: fewer ops in the graph, one op that does the work of several, "
                     "no transposes or copies that can be avoided, a multiplication instead of a division.")
MOVEMENT_METHODS = ("Methods are, for example: fewer and larger blocks (merge runs that are contiguous in both "
                    "tensors), the innermost size along the contiguous axis, no block copied twice.")
# The system prompt and the Accelerator's methods of the scaffold kinds that do not write loops.
SCAFFOLD_PROMPTS = {"composite": ("system.scaffolded.composite", COMPOSITE_METHODS),
                    "movement": ("system.scaffolded.movement", MOVEMENT_METHODS)}


class Scaffolded:
    name = "scaffolded"
    max_tokens = 800  # a few short functions

    def __init__(self, task: Task, index=None, settings=None):
        self.task, self.index, self.settings = task, index, settings
        self.scaffold: Scaffold = scaffold_for(task)

    def base(self) -> dict:
        kind = next((k for k in self.scaffold.kinds if k in SCAFFOLD_PROMPTS), None)
        system, methods = SCAFFOLD_PROMPTS.get(kind, ("system.scaffolded", FUNCTION_METHODS))
        return {"system": prompts.text(system), "methods": methods,
                "task": prompts.task_block(self.task, framework=False),
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
        code = self.extract(answer)
        problem = lint.check(code, self.scaffold)
        if problem is not None:
            return Candidate(code, None, problem)
        source, region = self.scaffold.splice(code)
        return Candidate(code, source, None, region)


def make_mode(name: str, task: Task, index=None, settings=None):
    """The mode object for "whole-file" or "scaffolded" (ScaffoldUnsupported when it cannot frame the task)."""
    if name == "whole-file":
        return WholeFile(task, index, settings)
    if name == "scaffolded":
        return Scaffolded(task, index, settings)
    raise ValueError(f"unknown mode {name!r}: use whole-file or scaffolded")


def open_mode(attempt, name: str, index=None):
    """The mode for an attempt, or None (recorded as a step) when the scaffold cannot frame the task."""
    try:
        return make_mode(name, attempt.task, index, attempt.settings)
    except ScaffoldUnsupported as error:
        attempt.step("scaffold", {"error": str(error)})
        return None
