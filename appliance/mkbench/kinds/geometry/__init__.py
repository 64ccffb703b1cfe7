"""Geometry computers: the candidate is a GeometryComputer registered with REGISTER_GEOMETRY,
run after MNN's own computers in a build copy of GeometryOPRegister.cpp, so it serves its op type
(mnn/inject.py); proof it ran: each geometry computation, by computer class.

Its scaffold frames an op that only moves elements (Reshape, Concat, DepthToSpace, ...): a
GeometryComputer asks the model's function for the output as blocks copied from the inputs (3-D
strided boxes, MNN's raster regions in plain words), checks every block against the tensors' sizes
and hands them to MNN as regions. Geometry ops that compute (CumSum, MatMul) are not framed.
"""

from __future__ import annotations


from ... import settings as settings_module
from ...mnn import inject
from ...tasks.spec import Task
from .. import probe
from ..base import BuiltCandidate, Kind, WholeFilePrompt, targets_label
from ..scaffold import (BEGIN_MARK, END_MARK, PLAIN_CPP, Function, Scaffold,
                        ScaffoldUnsupported, fill, identifier, node_shapes)

API_QUERIES = ("GeometryComputer", "GeometryComputer::registerGeometryComputer", "REGISTER_GEOMETRY",
               "TensorUtils::getDescribe", "Tensor::InsideDescribe::Region", "Tensor::length", "Tensor::dimensions",
               "GeometryComputerUtils::makeRaster")
EXAMPLE_OP = "Reshape"  # the op of the worked example: not shown for a task on that op
# Geometry op types whose output is the inputs' elements moved or repeated: framed as copy blocks.
MOVEMENT_OPS = ("Reshape", "Concat", "DepthToSpace", "SpaceToDepth", "Permute", "Transpose", "Squeeze", "Unsqueeze",
                "Flatten", "Tile", "BroadcastTo", "Slice", "StridedSlice")
METHODS = ("Methods are, for example: fewer and larger blocks (merge runs that are contiguous in both "
           "tensors), the innermost size along the contiguous axis, no block copied twice.")


def _find(symbol) -> str | None:
    if inject.REGISTRATION.search(symbol.demangled):
        return None  # a CPU creator's registration, not a geometry computer's
    match = inject.GEOMETRY_REGISTRATION.search(symbol.demangled)
    return f"{match.group(1)}/{match.group(2)}" if match else None


def _check(names: list[str], targets: tuple) -> str | None:
    # The op types a geometry computer registers are known only when it runs: the runner checks them.
    if not names:
        return ("the candidate registers no geometry computer: use REGISTER_GEOMETRY(YourName, _create) with a "
                "_create() that calls GeometryComputer::registerGeometryComputer")
    return None


REGISTRATION = inject.Registration("geometry", geometry=True, find=_find, check=_check)


class Geometry(Kind):
    name = "geometry"
    stage = "geometry"

    def build(self, task: Task, source: str, target: str, worker: str, settings: settings_module.Settings) -> BuiltCandidate:
        if any(sub for _, sub in task.mnn.targets):
            raise ValueError("a geometry computer serves a whole op type: geometry targets have no sub-type")
        built = inject.build_candidate(source, task.mnn.targets, target, worker, settings, REGISTRATION)
        return BuiltCandidate(built.ok, built.reason, built.compiler_output, built.runner,
                              native_references=built.native_references, build_id=built.build_id,
                              forbidden=built.forbidden, undefined=built.undefined, flags=built.flags)

    def fits(self, task, targets, record, tree_root, settings):
        """Each target the CPU creators never see is computed by a geometry computer."""
        rest = [(op, sub) for op, sub in targets if not probe.asked(record, "execution", op, sub)]
        if rest and all(probe.asked(record, "geometry", op) for op, _ in rest):
            return 3, tuple(dict.fromkeys((op, None) for op, _ in rest))
        return None

    def guesses(self, compute):
        return len(compute) == 1

    def judgeable(self, task, runner, settings):
        return probe.runner_asks(task, runner, settings, "geometry", "a geometry computer")

    def task_line(self, task: Task) -> str:
        served = targets_label(task.mnn.targets)
        return (f"Your geometry computer serves: {served} (MNN's geometry stage, before the CPU backend runs); "
                f"register it with GeometryComputer::registerGeometryComputer(computer, {{{served}}})")

    def whole_file(self, task: Task, parameter_table) -> WholeFilePrompt:
        own = EXAMPLE_OP in {op for op, _ in task.mnn.targets}
        return WholeFilePrompt(self.text("system.whole-file"), "" if own else self.text("example"), API_QUERIES)

    def scaffold(self, task: Task, settings: settings_module.Settings) -> Scaffold:
        op_types = list(dict.fromkeys(op for op, _ in task.mnn.targets))
        if len(op_types) == 1 and op_types[0] in MOVEMENT_OPS:
            return _movement(self, task, op_types[0])
        raise ScaffoldUnsupported(f"{task.name} needs a geometry kernel for {', '.join(op_types)}: the scaffold frames "
                                  f"geometry only for one op type that moves elements ({', '.join(MOVEMENT_OPS[:3])}, ...)")


def _movement(kind: Kind, task: Task, op_type: str) -> Scaffold:
    """A geometry computer for an op that only moves elements, around the model's list of copy blocks."""
    node = next((n for n in task.nodes if n.op == task.operator), task.nodes[0])
    shapes = node_shapes(task)
    inputs = [name for name in node.inputs if name and name not in {c.name for c in task.constants}]
    output = next((o for o in node.outputs if o), "")

    def described(name: str) -> str:
        dtype, shape = shapes.get(name, ("?", "?"))
        return f"{dtype} {shape}"

    lines = [f"{op_type} (ONNX {node.op}): the output holds the inputs' elements, moved or repeated; nothing is computed.",
             "Every tensor is a plain row-major array (element index = its flat position).",
             *(f"input {k} {identifier(name)}: {described(name)}" for k, name in enumerate(inputs)),
             f"output: {described(output)}"]
    if node.attributes:
        lines.append("attributes (fixed for this task): " + ", ".join(f"{k}={v}" for k, v in sorted(node.attributes.items())))
    lines += ["Append to blocks the copies that make the output (MkBlock is declared above: input, src_offset,",
              "src_stride[3], dst_offset, dst_stride[3], size[3]), e.g. blocks.push_back({0, 0, {0, 0, 1}, 0, {0, 0, 1}, {1, 1, n}})",
              "copies n contiguous elements of input 0 to the start of the output. Every output element must",
              "be written by exactly one block; fewer, larger blocks are faster."]
    name = f"mk_geometry_{op_type.lower()}"
    function = Function(name, f"void {name}(std::vector<MkBlock>& blocks)", "\n".join(lines), ())
    head = fill(kind.template("head.cpp"), task=task.name, op=op_type, begin=BEGIN_MARK)
    tail = f"{END_MARK}\n" + fill(kind.template("tail.cpp"), function=name, count=len(inputs), op=op_type)
    return Scaffold(task.name, ("movement",), (function,), head, tail, kind.text("system.scaffolded"), METHODS,
                    PLAIN_CPP)


GEOMETRY = Geometry()
