"""Composites: MNN's converter rewrites the task's ONNX operator into other MNN ops with a
transform of its own (tools/converter/source/optimizer/onnxextra), so the candidate is an
`OnnxExtraManager::Transform` in the Express API, registered with insert("<ONNX op>", ...), built
into a converter without MNN's transform for that op (mnn/converter_build.py). The candidate's
converter converts the task's model once more, and that model is run and timed against the one
MNN's own converter makes, with the native runner; proof it ran: each call of the transform.

A composite's converted graph is the output of MNN's own transform for the operator, i.e. its
native implementation, so the agents are never shown it; a candidate whose graph has exactly the
same ops is judged as usual and flagged for review (a copy, or the obvious formula).

Its scaffold writes the transform and its registration; the model writes one function from the
node's inputs (VARPs) to its output with MNN's Express functions, whose declarations the stub
lists, read from the pinned tree's headers.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from ... import settings as settings_module
from ...mnn import conversion, converter_build
from ...mnn import tree as mnn_tree
from ...tasks import artifacts as task_artifacts
from ...tasks.spec import Task
from ..base import BuiltCandidate, CandidateSide, Kind, WholeFilePrompt
from ..scaffold import (BEGIN_MARK, END_MARK, INCLUDE, MACROS, MAIN, SCAFFOLD_NAMES, Function, Scaffold,
                        ScaffoldUnsupported, fill, identifier, node_shapes)

CONVERT_TIMEOUT = 300.0  # seconds a candidate converter may take to convert the task's model
API_QUERIES = ("OnnxExtraManager", "OnnxExtraManager::Transform", "Expr", "_Exp", "_Log", "_Add", "_Subtract",
               "_Multiply", "_ReduceMax", "_ReduceSum", "_Scalar")
EXAMPLE_OP = "Softplus"  # the op of the worked example: not shown for a task on that op
METHODS = ("Methods are, for example: fewer ops in the graph, one op that does the work of several, "
           "no transposes or copies that can be avoided, a multiplication instead of a division.")
# The function builds a graph with MNN's Express API, so MNN's names are its vocabulary; what stays
# the scaffold's is the transform, its registration and the headers.
FORBIDDEN = (
    (INCLUDE, "do not write #include: the scaffold already includes MNN's Express API and the C++ standard headers"),
    MACROS,
    (re.compile(r"\b(OnnxExtraManager|Transform)\b"), "do not write a transform or register it: the scaffold does, and calls your function"),
    SCAFFOLD_NAMES,
    MAIN,
)
# The Express functions a composite's function may call: declarations read from the tree's headers.
EXPRESS_FUNCTIONS = (
    "_Add", "_Subtract", "_Multiply", "_Divide", "_Pow", "_Minimum", "_Maximum", "_Greater", "_GreaterEqual",
    "_Less", "_LessEqual", "_Equal", "_Abs", "_Negative", "_Sign", "_Floor", "_Square", "_Sqrt", "_Rsqrt",
    "_Reciprocal", "_Exp", "_Log", "_Log1p", "_Sin", "_Cos", "_Tanh", "_Sigmoid", "_Erf", "_ReduceSum",
    "_ReduceMean", "_ReduceMax", "_ReduceMin", "_ReduceProd", "_MatMul", "_Relu", "_Softmax", "_Conv",
    "_Reshape", "_Transpose", "_Squeeze", "_Unsqueeze", "_Concat", "_Slice", "_StridedSlice", "_Gather",
    "_GatherV2", "_GatherElements", "_ScatterElements", "_OneHot", "_Select", "_Tile", "_Fill", "_Shape",
    "_Range", "_Cast", "_Const",
)
EXPRESS_HEADERS = ("include/MNN/expr/MathOp.hpp", "include/MNN/expr/NeuralNetWorkOp.hpp")
EXPRESS_ENUM_HEADER = "include/MNN/expr/Expr.hpp"  # Dimensionformat


class Composite(Kind):
    name = "composite"
    stage = "converter"
    shows_converted_graph = False

    def build(self, task: Task, source: str, target: str, worker: str, settings: settings_module.Settings) -> BuiltCandidate:
        # The converter runs on the host whatever the device; the device runs the model it makes.
        built = converter_build.build_composite_candidate(source, task.mnn.targets[0][0], settings, worker)
        # Handing the node to a transform MNN registered (find) is handing it MNN's own rewrite.
        references = tuple(name for name in built.undefined if name.startswith("MNN::Express::OnnxExtraManager::find("))
        return BuiltCandidate(built.ok, built.reason, built.compiler_output, None, converter=built.converter,
                              build_id=built.build_id, forbidden=built.forbidden, undefined=built.undefined,
                              flags=built.flags, native_references=references)

    def candidate_side(self, task, artifacts, built, folder, settings) -> CandidateSide:
        model, served, failure = _convert_with_candidate(task, artifacts, built, folder, settings)
        if failure:
            return CandidateSide(model, tuple(served), failure)
        return CandidateSide(model, tuple(served), None, tuple(_same_graph_as_native(task, model, settings)))

    def fits(self, task, targets, record, tree_root, settings):
        if tree_root is not None and converter_build.native_transform_files(tree_root, task.operator) \
                and converter_asks(task, task.operator, settings)[0]:
            return 1, ((task.operator, None),)
        return None

    def guesses(self, compute):
        return len(compute) > 1

    def judgeable(self, task, runner, settings):
        return converter_asks(task, task.mnn.targets[0][0], settings)

    def task_line(self, task: Task) -> str:
        op = task.mnn.targets[0][0] if task.mnn.targets else "?"
        return (f"Your converter transform replaces MNN's rewrite of the ONNX operator {op}; "
                f"register it with OnnxExtraManager::get()->insert(\"{op}\", ...)")

    def whole_file(self, task: Task, parameter_table) -> WholeFilePrompt:
        own = EXAMPLE_OP in {op for op, _ in task.mnn.targets}
        return WholeFilePrompt(self.text("system.whole-file"), "" if own else self.text("example"), API_QUERIES)

    def scaffold(self, task: Task, settings: settings_module.Settings) -> Scaffold:
        return _composite(self, task, mnn_tree.locate(settings))


def _convert_with_candidate(task: Task, artifacts, built, local: Path, settings: settings_module.Settings
                            ) -> tuple[Path, list[dict], tuple[str, str] | None]:
    """Convert the task's ONNX model with the candidate's converter: (model, the conversion's
    served records, (verdict, reason) if it failed or never asked the candidate's transform)."""
    model, served_log = local / "candidate.mnn", local / "transforms.log"
    onnx_op = task.mnn.targets[0][0]
    try:
        conversion.convert(artifacts.onnx_model, model, settings, converter=built.converter, timeout=CONVERT_TIMEOUT,
                           env={converter_build.SERVED_LOG_ENV: str(served_log)})
    except subprocess.TimeoutExpired:
        return model, [], ("timeout", f"converting the task with the candidate's converter took over {CONVERT_TIMEOUT:.0f} s")
    except conversion.ConversionError as error:
        return model, [], ("crash", f"converting the task with the candidate's converter failed: {str(error)[:200]}")
    converted = [{"op_type": op, "sub_type": None, "served": "candidate", "stage": "converter",
                  "execution_class": "", "class_defined_in": "candidate"} for op in converter_build.served_transforms(served_log)]
    if not converted:
        asked = converter_build.served_transforms(served_log, declined=True)
        why = ("the candidate's transform declined every node it was asked for (returned nothing or the node itself)"
               if asked else f"MNN's converter never asked the candidate's transform for {onnx_op}")
        return model, [], ("not-exercised", why)
    return model, converted, None


def _same_graph_as_native(task: Task, model: Path, settings: settings_module.Settings) -> list[str]:
    """A review flag when the candidate's transform makes exactly the compute ops MNN's own
    transform makes (the task's converted graph, which the agents are never shown): a copy or
    a delegation to MNN's rewrite rather than a kernel of its own. [] otherwise."""
    try:
        labels = [op.label for op in conversion.compute_ops(conversion.converted_ops(model, settings))]
    except (conversion.ConversionError, OSError, ValueError, subprocess.SubprocessError) as error:
        return [f"graph: the candidate's model could not be read ({str(error)[:80]})"]
    if labels and tuple(labels) == tuple(task.mnn.converted_ops):
        return [f"graph: the same {len(labels)} ops as MNN's own transform ({', '.join(labels)})"]
    return []



def converter_asks(task: Task, onnx_op: str, settings: settings_module.Settings) -> tuple[bool, str]:
    """(asked, reason): does MNN's converter hand the task's `onnx_op` nodes to a transform at all?
    Measured with a probe transform in a candidate converter: an ONNX op the converter's front end
    turns into an MNN op directly never reaches a transform, so no composite kernel could serve it."""
    # A workspace per process: validation's workers probe at once, and a build clears its workspace.
    probe = fill(COMPOSITE.template("probe.cpp"), op=onnx_op)  # records being asked, and declines
    built = converter_build.build_composite_candidate(probe, onnx_op, settings, worker=f"probe-{os.getpid()}")
    if not built.ok:
        return False, f"the probe converter does not build: {built.reason}"
    artifacts = task_artifacts.prepare(task, settings)
    with tempfile.TemporaryDirectory(prefix="mkbench-probe-") as tmp:
        log = Path(tmp) / "transforms.log"
        try:
            conversion.convert(artifacts.onnx_model, Path(tmp) / "probe.mnn", settings, converter=built.converter,
                               env={converter_build.SERVED_LOG_ENV: str(log)})
        except conversion.ConversionError:
            pass  # declining may fail the conversion; the record says whether the transform was asked
        asked = onnx_op in converter_build.served_transforms(log, declined=True)
    return (True, "") if asked else (False, f"MNN's converter never hands {onnx_op} to a transform (its front end converts it)")


def express_declarations(root: Path) -> str:
    """EXPRESS_FUNCTIONS as the pinned tree (at root) declares them (quantized overloads left out), as comments."""
    text = "\n".join((root / header).read_text(errors="replace") for header in EXPRESS_HEADERS)
    declarations = {}
    for match in re.finditer(r"^MNN_PUBLIC\s+(VARP\s+(_\w+)\s*\([^;]*?\))\s*;", text, re.MULTILINE):
        line, name = re.sub(r"\s+", " ", match.group(1)), match.group(2)
        if name in EXPRESS_FUNCTIONS and "int8_t" not in line and "&&" not in line:
            declarations.setdefault(name, []).append(line)
    lines = ["MNN Express functions to build it with (namespace MNN::Express; VARP is a tensor value,",
             "INTS is std::vector<int>; operators + - * / on VARPs work too):",
             "template <typename T> VARP _Scalar(T value)  // a constant, e.g. _Scalar<float>(1.0f)"]
    lines += [f"{line};" for name in EXPRESS_FUNCTIONS for line in declarations.get(name, [])]
    # The enums those declarations take (PaddingMode, Dimensionformat), as the tree declares them.
    enums_text = text + "\n" + (root / EXPRESS_ENUM_HEADER).read_text(errors="replace")
    for match in re.finditer(r"^enum\s+(\w+)\s*\{([^}]*)\}\s*;", enums_text, re.MULTILINE):
        if any(re.search(rf"\b{match.group(1)}\b", line) for line in lines):
            values = re.sub(r"\s+", " ", match.group(2)).strip()
            lines.append(f"enum {match.group(1)} {{{values}}};")
    return "\n".join(f"// {line}" for line in lines)


def _composite(kind: Kind, task: Task, tree_root: Path) -> Scaffold:
    """A converter transform for the task's ONNX operator that calls the model's Express function."""
    op = task.mnn.targets[0][0]
    node = next((n for n in task.nodes if n.op == op), None)
    if node is None:
        raise ScaffoldUnsupported(f"{task.name}: no ONNX {op} node to rewrite")
    outputs = [o for o in node.outputs if o]
    if len(outputs) != 1:
        raise ScaffoldUnsupported(f"{task.name}: ONNX {op} here has {len(outputs)} outputs; the scaffold frames one")
    shapes = node_shapes(task)
    constants = {c.name: c for c in task.constants}
    params, arguments = [], []
    lines = [f"ONNX {op} (opset {task.opset}), rewritten at model conversion time: return its output built",
             "from its inputs with the Express functions listed below. The device runs the graph you return."]
    for k, name in enumerate(node.inputs):
        if not name:
            lines.append(f"input {k}: absent (optional, not given)")
            continue
        variable = identifier(name)
        params.append(f"VARP {variable}")
        arguments.append(f"inputs[{k}]")
        dtype, shape = shapes.get(name, ("?", "?"))
        where = "constant" if name in constants else "input"
        c = constants.get(name)
        value = f" = {list(c.value)}" if c is not None and c.value is not None and len(c.value) <= 16 else ""
        lines.append(f"{where} {k} {variable}: {dtype} {shape}{value}")
    dtype, shape = shapes.get(outputs[0], ("?", "?"))
    lines.append(f"return: {dtype} {shape}")
    if node.attributes:
        lines.append("attributes (fixed for this task: use the values): "
                     + ", ".join(f"{k}={v}" for k, v in sorted(node.attributes.items())))
    name = f"mk_composite_{identifier(op).lower()}"
    function = Function(name, f"VARP {name}({', '.join(params)})", "\n".join(lines), ())
    head = fill(kind.template("head.cpp"), task=task.name, op=op, begin=BEGIN_MARK)
    tail = f"{END_MARK}\n" + fill(kind.template("tail.cpp"), op=op, count=len(node.inputs), function=name,
                                 arguments=", ".join(arguments))
    return Scaffold(task.name, ("composite",), (function,), head, tail, kind.text("system.scaffolded"), METHODS,
                    FORBIDDEN, express_declarations(tree_root))


COMPOSITE = Composite()
