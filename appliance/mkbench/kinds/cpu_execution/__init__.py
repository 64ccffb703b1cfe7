"""CPU executions: the candidate is an Execution and its Creator, registered with
REGISTER_CPU_OP_CREATOR, served the task's (op type, sub-type) targets by mkbench's dispatcher
in a build copy of CPUOPRegister.cpp (mnn/inject.py); proof it ran: each creation, by creator
and execution class.

Its scaffold: the model writes only plain functions over raw pointers; the scaffold writes the
includes, the Execution (constructor, onResize, onExecute), the Creator that reads the op's
parameters (UnaryOp/BinaryOp sub-type, ReductionParam::dim, Axis::axis), the layout handling
(NC4HW4 tensors are unpacked to plain NCHW with the backend's pack and packed back; elementwise
kernels use the backend's padded size), the threading over MNN's pool, and the registration.
Elementwise unary (UnaryOp sub-types), binary over same-shape inputs or one single value
(BinaryOp), reduction over an [outside, axis, inside] view (Reduction sub-types), softmax over an
axis, and a generic fallback for one other op type (its tensors plain, shapes as the task states).
A task whose targets span several of the first four (LogSoftmax: Reduction, BinaryOp, UnaryOp)
gets one Execution per op type and one function per sub-type.
"""

from __future__ import annotations


from ... import settings as settings_module
from ...mnn import inject
from ...mnn.conversion import CPU_OP_TYPES
from ...tasks.spec import Task
from .. import probe
from ..base import BuiltCandidate, Kind, WholeFilePrompt, targets_label
from ..scaffold import (BEGIN_MARK, END_MARK, PLAIN_CPP, Function, Scaffold,
                        ScaffoldUnsupported, attributes_line, fill, identifier)

# What every whole-file kernel needs from MNN, shown as compact declarations from the pinned tree.
API_QUERIES = ("Execution", "CPUBackend::Creator", "REGISTER_CPU_OP_CREATOR", "Tensor::host", "Tensor::length",
               "Tensor::dimensions", "Tensor::elementSize", "Tensor::getType", "CPUBackend::getTensorSize",
               "CPUBackend::threadNumber")
# The flatbuffers table that holds each op type's parameters, when the converted model cannot say.
PARAMETER_TABLES = {"UnaryOp": "UnaryOp", "BinaryOp": "BinaryOp", "Reduction": "ReductionParam", "Softmax": "Axis"}
# GEOMETRCOMPUTEMASK_ALL - GEOMETRCOMPUTEMASK_USELOOP (include/MNN/Interpreter.hpp): with the
# loop lowering off, a broadcast BinaryOp runs as Raster + BinaryOp and asks the creator.
NO_LOOP_GEOMETRY = 0xFFFF - (1 << 2)
# What the Accelerator may propose for the model's functions.
METHODS = ("Methods are, for example: SIMD vectorisation, loop unrolling, fusing passes, a multiplication "
           "instead of a division, fewer passes over memory. The caller already splits the work across threads.")

# What each sub-type computes, as the ONNX reference does (x: input value).
UNARY = {
    "ABS": "|x|", "NEG": "-x", "FLOOR": "floor(x)", "CEIL": "ceil(x)", "SQUARE": "x * x", "SQRT": "sqrt(x)",
    "RSQRT": "1 / sqrt(x)", "EXP": "exp(x)", "LOG": "log(x) (natural)", "SIN": "sin(x)", "COS": "cos(x)",
    "TAN": "tan(x)", "ASIN": "asin(x)", "ACOS": "acos(x)", "ATAN": "atan(x)", "RECIPROCAL": "1 / x",
    "LOG1P": "log(1 + x)", "BNLL": "log(1 + exp(x))", "ACOSH": "acosh(x)", "SINH": "sinh(x)", "ASINH": "asinh(x)",
    "ATANH": "atanh(x)", "SIGN": "-1 if x < 0, 0 if x == 0, 1 if x > 0",
    "ROUND": "x rounded to the nearest integer, halves to even (std::nearbyint)", "COSH": "cosh(x)",
    "ERF": "erf(x)", "ERFC": "erfc(x)", "EXPM1": "exp(x) - 1", "SIGMOID": "1 / (1 + exp(-x))", "TANH": "tanh(x)",
    "HARDSWISH": "x * min(max(x + 3, 0), 6) / 6", "GELU": "0.5 * x * (1 + tanh(0.7978845608 * (x + 0.044715 * x^3)))",
    "GELU_STANDARD": "0.5 * x * (1 + erf(x / sqrt(2)))", "SILU": "x / (1 + exp(-x))",
}
BINARY = {
    "ADD": "a + b", "SUB": "a - b", "MUL": "a * b", "REALDIV": "a / b", "DIV": "a / b", "MINIMUM": "min(a, b)",
    "MAXIMUM": "max(a, b)", "POW": "pow(a, b)", "FLOORDIV": "floor(a / b)", "FLOORMOD": "a - floor(a / b) * b",
    "MOD": "fmod(a, b)", "ATAN2": "atan2(a, b)", "SquaredDifference": "(a - b) * (a - b)",
    "GREATER": "1 if a > b else 0", "GREATER_EQUAL": "1 if a >= b else 0", "LESS": "1 if a < b else 0",
    "LESS_EQUAL": "1 if a <= b else 0", "EQUAL": "1 if a == b else 0", "NOTEQUAL": "1 if a != b else 0",
    "LOGICALOR": "1 if (a != 0 or b != 0) else 0", "LOGICALXOR": "1 if ((a != 0) != (b != 0)) else 0",
}
COMPARISONS = {"GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "EQUAL", "NOTEQUAL", "LOGICALOR", "LOGICALXOR"}
# Reductions: (what y holds, Y's start value, how a value v joins Y, the last step or ""), Y = y[o * inside + i].
REDUCTIONS = {
    "SUM": ("the sum", "0", "Y += v", ""), "MEAN": ("the mean", "0", "Y += v", "Y /= axis"),
    "MAXIMUM": ("the maximum", "x[o * axis * inside + i]", "Y = max(Y, v)", ""),
    "MINIMUM": ("the minimum", "x[o * axis * inside + i]", "Y = min(Y, v)", ""),
    "PROD": ("the product", "1", "Y *= v", ""), "ASUM": ("the sum of |v|", "0", "Y += |v|", ""),
    "SUMSQ": ("the sum of v * v", "0", "Y += v * v", ""),
}
_FRAME_OF_OP = {"UnaryOp": "unary", "BinaryOp": "binary", "Reduction": "reduction", "Softmax": "softmax"}
_CTYPE = {"float32": "float", "float16": "float", "int64": "int32_t", "int32": "int32_t", "bool": "int32_t",
          "uint8": "int32_t", "int8": "int32_t"}


def _unary(sub: str) -> Function:
    math = UNARY.get(sub, sub.lower())
    name = f"mk_unary_{sub.lower()}"
    return Function(name, f"void {name}(const float* x, float* y, size_t n)",
                    f"UnaryOp {sub}: y[i] = {math}, for every i in [0, n).\n"
                    f"Steps: loop i from 0 to n - 1; read x[i]; write y[i]. x and y do not overlap.", ("x",))


def _binary(sub: str) -> Function:
    math = BINARY.get(sub, sub.lower())
    name = f"mk_binary_{sub.lower()}"
    out = "int32_t" if sub in COMPARISONS else "float"
    return Function(name, f"void {name}(const float* a, const float* b, {out}* y, size_t n)",
                    f"BinaryOp {sub}: y[i] = {math}, with a = a[i], b = b[i], for every i in [0, n).\n"
                    f"Steps: loop i from 0 to n - 1; read a[i] and b[i]; write y[i] ({out}).", ("a", "b"))


def _reduction(sub: str) -> Function:
    what, start, join, last = REDUCTIONS.get(sub, (sub.lower(), "x[o * axis * inside + i]", f"Y = {sub}(Y, v)", ""))
    name = f"mk_reduce_{sub.lower()}"
    first = 1 if start.startswith("x[") else 0  # started from the a = 0 value
    steps = ("Loops (this order reads x contiguously), Y meaning y[o * inside + i]:\n"
             "  for o in [0, outside):\n"
             f"    for i in [0, inside): Y = {start}\n"
             f"    for a in [{first}, axis): for i in [0, inside): v = x[(o * axis + a) * inside + i]; {join}\n"
             + (f"    for i in [0, inside): {last}\n" if last else ""))
    return Function(name, f"void {name}(const float* x, float* y, int outside, int axis, int inside)",
                    f"Reduction {sub}: x is [outside, axis, inside] (row-major), y is [outside, inside].\n"
                    f"y[o * inside + i] = {what} of x[(o * axis + a) * inside + i] over a in [0, axis).\n{steps}".rstrip(),
                    ("x",))


def _softmax() -> Function:
    # One row per call: the scaffold walks the rows (and threads over them); reductions over an
    # [outside, axis, inside] view are where small models break.
    return Function("mk_softmax", "void mk_softmax(const float* x, float* y, int n, int stride)",
                    "Softmax of one row of n values: v(a) = x[a * stride] for a in [0, n);\n"
                    "write y[a * stride] for the same a (stride is 1 when the row is contiguous).\n"
                    "  1. m = max over a of v(a)   (subtract it so exp never overflows)\n"
                    "  2. s = sum over a of exp(v(a) - m)\n"
                    "  3. y[a * stride] = exp(v(a) - m) / s, for every a in [0, n)", ("x",))


def _generic(task: Task, op_type: str) -> tuple[Function, str]:
    """The function and the Execution for one op type the scaffold knows nothing special about."""
    node = next((n for n in task.nodes if n.op == task.operator), task.nodes[0])
    constants = {c.name: c for c in task.constants}
    graph_inputs = [i for i in task.inputs]
    params, arguments, read_only = [], [], []
    lines = [f"{op_type} (ONNX {node.op}): compute the task's outputs from its inputs.",
             "Every tensor is a plain row-major array (NCHW order for images); integer outputs are int32_t."]
    for k, tensor in enumerate(graph_inputs):
        name = identifier(tensor.name)
        params.append(f"const float* {name}")
        arguments.append(f"static_cast<const float*>(plain[{k}])")
        read_only.append(name)
        lines.append(f"input  {name}: float32 {list(tensor.shape)}")
    for k, tensor in enumerate(task.outputs):
        name = identifier(tensor.name)
        ctype = _CTYPE.get(tensor.dtype, "float")
        params.append(f"{ctype}* {name}")
        arguments.append(f"static_cast<{ctype}*>(plain[{len(graph_inputs) + k}])")
        lines.append(f"output {name}: {tensor.dtype} {list(tensor.shape)}" + (" (stored as int32_t)" if ctype == "int32_t" and tensor.dtype != "int32" else ""))
    lines += attributes_line(node)
    for name in node.inputs:
        if name in constants:
            c = constants[name]
            value = list(c.value) if c.value is not None and len(c.value) <= 16 else f"drawn ({c.draw})"
            lines.append(f"constant {name}: {c.dtype} {list(c.shape)} = {value} (fixed: use the value)")
    function_name = f"mk_{op_type.lower()}"
    function = Function(function_name, f"void {function_name}({', '.join(params)})", "\n".join(lines), tuple(read_only))
    sizes_in = ", ".join(str(max(1, t.size)) for t in graph_inputs) or "0"
    sizes_out = ", ".join(str(max(1, t.size)) for t in task.outputs) or "0"
    execution = fill(CPU_EXECUTION.template("generic.cpp"), op=op_type, input_sizes=sizes_in, output_sizes=sizes_out,
                     input_count=len(graph_inputs), output_count=len(task.outputs), function=function_name,
                     arguments=", ".join(arguments))
    return function, execution


def _cases(pairs: list[tuple[str, str]]) -> str:
    return "\n".join(f"            case {enum}: {call}; break;" for enum, call in pairs)


def _find(symbol) -> str | None:
    match = inject.REGISTRATION.search(symbol.demangled)
    return f"{match.group(1)}/OpType_{match.group(2)}" if match else None


def _check(names: list[str], targets: tuple) -> str | None:
    if not names:
        return "the candidate registers no creator: use REGISTER_CPU_OP_CREATOR(YourCreator, OpType_X)"
    target_ops = {op for op, _ in targets}
    registered = [name.split("/OpType_")[1] for name in names]
    if stray := sorted(set(registered) - target_ops):
        return f"the candidate registers OpType_{stray[0]}, but the task targets {', '.join('OpType_' + t for t in sorted(target_ops))}"
    if missing := sorted(target_ops - set(registered)):
        return f"the candidate registers no creator for OpType_{missing[0]}"
    if duplicated := sorted({op for op in registered if registered.count(op) > 1}):
        return f"the candidate registers OpType_{duplicated[0]} twice"
    return None


REGISTRATION = inject.Registration("cpu-execution", geometry=False, find=_find, check=_check)


class CpuExecution(Kind):
    name = "cpu-execution"
    stage = "execution"

    def build(self, task: Task, source: str, target: str, worker: str, settings: settings_module.Settings) -> BuiltCandidate:
        built = inject.build_candidate(source, task.mnn.targets, target, worker, settings, REGISTRATION)
        return BuiltCandidate(built.ok, built.reason, built.compiler_output, built.runner,
                              native_references=built.native_references, build_id=built.build_id,
                              forbidden=built.forbidden, undefined=built.undefined, flags=built.flags)

    def fits(self, task, targets, record, tree_root, settings):
        if all(op in CPU_OP_TYPES and probe.asked(record, "execution", op, sub) for op, sub in targets):
            return (0 if len(targets) == 1 else 2), targets  # several CPU ops: after a composite (ReduceL1 = ABS + SUM)
        return None

    def runtime_hints(self, task: Task, targets: tuple) -> dict[str, int]:
        """By default MNN's geometry stage lowers a float BinaryOp with a broadcast input into a
        While op run by CPULoop, which calls MNN's math directly and never the creator
        (MNN-NOTES). The judge turns that lowering off for such tasks, for native and candidate."""
        shapes = {i.shape for i in task.inputs} | {c.shape for c in task.constants if c.shape}
        if any(op_type == "BinaryOp" for op_type, _ in targets) and len(shapes) > 1:
            return {"GEOMETRY_COMPUTE_MASK": NO_LOOP_GEOMETRY}
        return {}

    def guesses(self, compute):
        return len(compute) == 1 and compute[0].type in CPU_OP_TYPES

    def judgeable(self, task, runner, settings):
        return probe.runner_asks(task, runner, settings, "execution", "a CPU creator")

    def task_line(self, task: Task) -> str:
        return f"Your kernel serves: {targets_label(task.mnn.targets)}, on the fp32 CPU backend"

    def whole_file(self, task: Task, parameter_table) -> WholeFilePrompt:
        op_types = list(dict.fromkeys(op for op, _ in task.mnn.targets))
        queries = list(API_QUERIES)
        for op_type in op_types:
            table = parameter_table(op_type) or PARAMETER_TABLES.get(op_type)
            if table:
                queries += [f"Op::main_as_{table}", table]
        # A worked example of another op: binary for a unary task, unary for the rest.
        example = self.text("example.binary" if "UnaryOp" in op_types else "example.unary")
        return WholeFilePrompt(self.text("system.whole-file"), example, tuple(queries))

    def scaffold(self, task: Task, settings: settings_module.Settings) -> Scaffold:
        """One Execution per op type, one function per sub-type, from the targets."""
        targets = list(task.mnn.targets)
        if not targets:
            raise ScaffoldUnsupported(f"{task.name} has no MNN target (validate the task first)")
        by_type: dict[str, list[str | None]] = {}
        for op_type, sub in targets:
            subs = by_type.setdefault(op_type, [])
            if sub not in subs:
                subs.append(sub)
        unknown = [t for t in by_type if t not in _FRAME_OF_OP]
        if unknown and len(by_type) > 1:
            raise ScaffoldUnsupported(f"{task.name} targets {', '.join(sorted(by_type))}: the scaffold frames several op types "
                                      f"only when all are UnaryOp, BinaryOp, Reduction or Softmax")
        functions: list[Function] = []
        executions: list[str] = []
        frames: list[str] = []
        for op_type, subs in by_type.items():
            frame = _FRAME_OF_OP.get(op_type, "generic")
            frames.append(frame)
            if frame in ("unary", "binary", "reduction") and None in subs:
                raise ScaffoldUnsupported(f"{task.name}: target {op_type} without a sub-type")
            if frame == "unary":
                made = [_unary(s) for s in subs]
                cases = _cases([(f"UnaryOpOperation_{s}", f"mkuser::{f.name}(x, y, n)") for s, f in zip(subs, made)])
                executions.append(fill(self.template("unary.cpp"), cases=cases, accepted=" || ".join(f"type == UnaryOpOperation_{s}" for s in subs)))
            elif frame == "binary":
                made = [_binary(s) for s in subs]
                cases = _cases([(f"BinaryOpOperation_{s}",
                                 f"mkuser::{f.name}(a, b, {'yi' if s in COMPARISONS else 'y'}, n)") for s, f in zip(subs, made)])
                executions.append(fill(self.template("binary.cpp"), cases=cases, accepted=" || ".join(f"type == BinaryOpOperation_{s}" for s in subs)))
            elif frame == "reduction":
                made = [_reduction(s) for s in subs]
                cases = _cases([(f"ReductionType_{s}", f"mkuser::{f.name}(x, y, outside, axis, inside)") for s, f in zip(subs, made)])
                executions.append(fill(self.template("reduction.cpp"), cases=cases, accepted=" || ".join(f"type == ReductionType_{s}" for s in subs)))
            elif frame == "softmax":
                made = [_softmax()]
                executions.append(fill(self.template("softmax.cpp")))
            else:
                function, execution = _generic(task, op_type)
                made = [function]
                executions.append(execution)
            functions += made
        label = ", ".join(f"{op}:{sub}" if sub else op for op, sub in targets)
        head = fill(self.template("head.cpp"), task=task.name, targets=label, begin=BEGIN_MARK)
        tail = f"{END_MARK}\n" + fill(self.template("common.cpp")) + "".join(executions) + fill(self.template("tail.cpp"))
        return Scaffold(task.name, tuple(frames), tuple(functions), head, tail, self.text("system.scaffolded"), METHODS,
                        PLAIN_CPP)


CPU_EXECUTION = CpuExecution()
