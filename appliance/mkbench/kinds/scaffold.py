"""What every scaffold shares: a generated kernel file with a hole for the model's functions.

    scaffold = kind.scaffold(task, settings)   # raises ScaffoldUnsupported for targets it cannot frame
    scaffold.stubs()                           # what the model sees: signatures, index formulas, steps
    source, region = scaffold.splice(code)     # the candidate file, and the lines of the model's code

Each kind writes its own scaffold from C++ templates beside its module (placeholders `@NAME@`,
filled by `fill`), and says what the model may not write there (`forbidden`, read by the lint
pass), which system text frames the model's part, and which methods the Accelerator may propose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..tasks.spec import Task

BEGIN_MARK = "// ---- mkbench: model code begins"
END_MARK = "// ---- mkbench: model code ends"

# What no scaffold lets the model write, whatever the kind: (pattern, one-line reason).
INCLUDE = re.compile(r"^\s*#\s*include\b", re.MULTILINE)
MACROS = (re.compile(r"^\s*#\s*(define|undef)\b", re.MULTILINE), "do not define macros: write plain functions (constexpr values are fine)")
SCAFFOLD_NAMES = (re.compile(r"\b(MkScaffold\w*|mkscaffold|mkuser)\b"), "do not redefine or call the scaffold's own names")
MAIN = (re.compile(r"\bint\s+main\s*\("), "do not write main(): write only the requested functions")
# The rules of scaffolds whose functions are plain C++ over raw pointers (CPU executions, geometry blocks).
PLAIN_CPP = (
    (INCLUDE, "do not write #include: the scaffold already includes the C++ standard headers and SIMD intrinsics"),
    MACROS,
    (re.compile(r"\bnamespace\s+MNN\b|\bMNN::|\busing\s+namespace\s+MNN\b"), "do not use MNN: the functions work on raw pointers only"),
    (re.compile(r"\bREGISTER_CPU_OP_CREATOR\b"), "do not register anything: the scaffold registers the kernel"),
    (re.compile(r"\b(Execution|Creator|Tensor|Backend|CPUBackend)\b"), "do not use MNN's classes: the functions work on raw pointers only"),
    SCAFFOLD_NAMES,
    MAIN,
    (re.compile(r"\bconst_cast\b"), "do not cast const away: the inputs are read-only"),
)


class ScaffoldUnsupported(ValueError):
    """The scaffold cannot frame this task's targets (the message says which and why)."""


@dataclass(frozen=True)
class Function:
    """One function the model writes."""

    name: str
    signature: str  # without the trailing semicolon
    comment: str  # what it computes: the index formula and the algorithm's steps
    read_only: tuple[str, ...]  # parameters that point at inputs (never written)

    def stub(self) -> str:
        return "\n".join(f"// {line}" if line else "//" for line in self.comment.splitlines()) + f"\n{self.signature};"


@dataclass(frozen=True)
class Scaffold:
    """A generated kernel file with a hole for the model's functions."""

    task: str
    kinds: tuple[str, ...]  # what frames each function: unary, binary, reduction, softmax, generic, composite, movement
    functions: tuple[Function, ...]
    head: str  # the file before the model's code
    tail: str  # the file after it
    system: str  # the system text for the model's part
    methods: str  # what the Accelerator may propose for it
    forbidden: tuple = ()  # (pattern, reason) pairs the lint pass refuses in the model's code
    api: str = ""  # declarations the functions may call (a composite's Express functions), as comments

    def stubs(self) -> str:
        """What the model must write: one commented signature per function (and what it may call)."""
        return "\n\n".join([*(f.stub() for f in self.functions), *([self.api] if self.api else [])])

    def splice(self, code: str) -> tuple[str, tuple[int, int]]:
        """The candidate file with the model's code in the hole, and its (first, last) line numbers."""
        code = code.strip("\n")
        first = self.head.count("\n") + 1
        last = first + max(0, code.count("\n"))
        return f"{self.head}{code}\n{self.tail}", (first, last)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.functions)


_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def fill(template: str, **values) -> str:
    """A C++ template with every @NAME@ replaced by values["name"]; a placeholder without a value raises."""
    def value(match: re.Match) -> str:
        key = match.group(1).lower()
        if key not in values:
            raise KeyError(f"the scaffold template needs a value for @{match.group(1)}@")
        return str(values[key])

    return _PLACEHOLDER.sub(value, template)


def identifier(name: str) -> str:
    """A tensor's name as a C++ identifier."""
    name = re.sub(r"\W", "_", name)
    return name if re.match(r"[A-Za-z_]", name) else f"t_{name}"


def node_shapes(task: Task) -> dict[str, tuple[str, list]]:
    """name -> (dtype, shape) of every tensor of the task's graph, intermediates by onnx shape inference."""
    import onnx

    from ..tasks.model import build_model

    known = {t.name: (t.dtype, list(t.shape)) for t in task.inputs + task.constants + task.outputs}
    try:
        inferred = onnx.shape_inference.infer_shapes(build_model(task))
    except Exception:  # onnx raises several kinds; the stub then just lacks a shape
        return known
    for info in inferred.graph.value_info:
        dims = [d.dim_value for d in info.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type).name
        known.setdefault(info.name, (dtype, dims))
    return known


def attributes_line(node, fixed: str = "attributes") -> list[str]:
    """The node's attributes as one stub line ([] when it has none)."""
    if not node.attributes:
        return []
    return [f"{fixed}: " + ", ".join(f"{k}={v}" for k, v in sorted(node.attributes.items()))]
