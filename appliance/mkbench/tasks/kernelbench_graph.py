"""The graph an imported task holds, made from PyTorch's ONNX export of a KernelBench-format file.

PyTorch often writes one operator as several nodes: casts around `And`, Identity nodes around
BatchNormalization, a Squeeze after RNN, LSTM's initial states computed from the input's shape.
The task keeps the export's nodes as its `[[nodes]]`, the way the built-in specs hold multi-node
graphs, and records in `operator` the op a kernel replaces. Exactly this is normalised, each
being the export's plumbing and not the computation:

1. Initialisers and Constant nodes become the task's constants, one per node input that reads
   one, named `<op><node index>_<the schema's name of the input>` (`lstm0_W`, `squeeze1_axes`),
   as the built-in specs name them. The exporter shares one initialiser between inputs of equal
   value (BatchNormalization's scale and running variance are both ones); the task gives each
   input its own.
2. Static computations fold into constants. Shapes are fixed, so a node that only reads a
   tensor's shape (Shape, Size) gives a constant, and so does a node whose inputs are all
   constants. A connected group of such nodes becomes the constants it hands to the rest of
   the graph, evaluated by onnx's reference on the file's own inputs: LSTM's zero initial
   states (Shape, Gather, Unsqueeze, Concat, Expand, twice over), STFT's reflect pads (seven
   nodes over constants) and its signal's shape (Shape, Gather, Unsqueeze, Concat). A group
   of one node over constants stays a node: the paper's graphs keep such a node (Tile's
   ConstantOfShape before Expand, BatchNormalization's Identity nodes), and so do the built-in
   specs.
3. An output nothing reads is left out where the operator's schema says it is optional
   (RNN's Y_h, when forward returns only Y).
4. STFT's signal is [batch, length] in PyTorch's export, where ONNX's STFT takes
   [batch, length, 1] for a real signal (onnx's reference cannot run the export as it is):
   the constant shape of the Reshape that makes the signal gets the trailing 1.

Which node a kernel replaces: the op the node list is about, ranked by what a node does. A node
that only relabels, frames or makes data (PLUMBING: Cast, Identity, Reshape, Squeeze, Transpose,
Expand, Pad, ...) is never it while another op is there; elementwise arithmetic
(Add, Sub, Mul, Div: Gemm's alpha and beta as PyTorch writes them) only when nothing else
computes. Among the ops of the highest rank there must be exactly one op type (two Conv nodes
make a Conv task); otherwise the import says the graph has no single operator. One
decomposition is known by its shape: Div, Floor, Mul, Sub computing a - floor(a / b) * b is
Mod with fmod=0 (`decomposed = true`, as in the built-in Mod spec).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPSET = 20
# Ops that relabel, frame or make data, never the operator while another op is there. Gather,
# Slice and Concat are not among them: after folding, what they still do is indexing work.
PLUMBING = frozenset({"Identity", "Cast", "CastLike", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Transpose",
                      "Expand", "ConstantOfShape", "Pad", "Shape", "Size"})
ARITHMETIC = frozenset({"Add", "Sub", "Mul", "Div"})
SHAPE_READERS = frozenset({"Shape", "Size"})
RANDOM = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                    "Bernoulli"})


class NotImported(Exception):
    """This file gives no task; the message is one line, without the file name."""


@dataclass(frozen=True)
class Node:
    """One node of the task's graph, with its attributes as the spec writes them."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: tuple[tuple[str, object], ...]


@dataclass(frozen=True)
class TaskGraph:
    """What a task holds of an export: its nodes and constants, and the op a kernel replaces."""

    nodes: tuple[Node, ...]
    constants: tuple[tuple[str, np.ndarray], ...]  # spec name, value; in the order the nodes read them
    operator: str
    decomposed: bool  # no node is the operator: the exporter wrote it as others (Mod)
    published: str  # the export's nodes as the paper's table writes them: "Op(attrs; constants) → ..."
    normalised: tuple[str, ...]  # one line per change made to the export (see the module's docstring)


def task_graph(model, inputs: dict[str, np.ndarray], input_names: list[str], output_names: list[str]) -> TaskGraph:
    """The task's graph from an ONNX export at opset 20; raises NotImported saying why there is none."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset != OPSET:
        raise NotImported(f"the export is at opset {opset}, not {OPSET}")
    constants = _constants(model.graph)
    compute = [n for n in model.graph.node if n.op_type != "Constant"]
    if not compute:
        raise NotImported("the export has no operator node: the module computes nothing")
    for node in compute:
        if node.domain not in ("", "ai.onnx"):
            raise NotImported(f"the export's node {node.op_type} is in domain {node.domain!r}, not ONNX's")
    published = " → ".join(_describe(node, constants) for node in compute)

    kept, folded = _fold(model, compute, constants, inputs)
    folded_ops = ", ".join(n.op_type for n in folded)
    normalised = [f"folded into constants: {len(folded)} nodes computing from constants and fixed shapes ({folded_ops})"
                  ] if folded else []
    nodes, spec_constants, dropped = _rename(kept, constants, input_names, output_names)
    normalised += [f"left out: {text}" for text in dropped]
    nodes, spec_constants, fixed = _stft_signal(nodes, spec_constants)
    normalised += fixed

    graph_inputs = {n for node in nodes for n in node.inputs}
    if unused := [n for n in input_names if n not in graph_inputs]:
        raise NotImported(f"forward's input {', '.join(unused)} is not used by the export")
    produced = {o for node in nodes for o in node.outputs}
    if not set(output_names) <= produced:
        raise NotImported("an output of forward is not computed by a node (the module returns an input or a constant)")
    operator, decomposed = choose_operator(nodes)
    return TaskGraph(tuple(nodes), tuple(spec_constants), operator, decomposed, published, tuple(normalised))


# ------------------------------------------------------------------ which node a kernel replaces
def choose_operator(nodes: list[Node]) -> tuple[str, bool]:
    """(operator, decomposed): see the module's docstring."""
    if _is_mod(nodes):
        return "Mod", True
    ops = [n.op for n in nodes]
    if set(ops) == {"Identity"}:
        raise NotImported("the export is Identity nodes only: the module computes nothing")
    rank = {op: 0 if op in PLUMBING else 1 if op in ARITHMETIC else 2 for op in ops}
    top = max(rank.values())
    chosen = list(dict.fromkeys(op for op in ops if rank[op] == top))
    if len(chosen) != 1:
        shown = ", ".join(ops[:8]) + (", ..." if len(ops) > 8 else "")
        raise NotImported(f"the export has {len(ops)} nodes computing on the inputs ({shown}) and no single operator doing the work "
                          f"({', '.join(chosen[:6])}{', ...' if len(chosen) > 6 else ''}): a kernel would not know what it replaces")
    return chosen[0], False


def _is_mod(nodes: list[Node]) -> bool:
    """a - floor(a / b) * b: Div, Floor, Mul, Sub wired as PyTorch writes remainder."""
    if [n.op for n in nodes] != ["Div", "Floor", "Mul", "Sub"]:
        return False
    div, floor, mul, sub = nodes
    a, b = div.inputs
    return (floor.inputs == div.outputs and set(mul.inputs) == {floor.outputs[0], b}
            and sub.inputs == (a, mul.outputs[0]))


# ------------------------------------------------------------------ normalisation
def _constants(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = _constant_node_value(node)
    return constants


def _fold(model, compute: list, constants: dict, inputs: dict) -> tuple[list, list]:
    """(nodes kept, nodes folded); the folded groups' results are added to `constants`."""
    static_tensors, static = set(constants), []
    for node in compute:
        reads_shape = node.op_type in SHAPE_READERS
        if node.op_type not in RANDOM and node.input and (
                reads_shape or all(i == "" or i in static_tensors for i in node.input)):
            static.append(node)
            static_tensors |= set(node.output)
    groups = _connected(static)
    folded = [n for group in groups if len(group) > 1 or group[0].op_type in SHAPE_READERS for n in group]
    if not folded:
        return compute, []
    folded_ids = {id(n) for n in folded}
    kept = [n for n in compute if id(n) not in folded_ids]
    made = {o for n in folded for o in n.output}
    needed = list(dict.fromkeys(i for n in kept for i in n.input if i in made)
                  | dict.fromkeys(o.name for o in model.graph.output if o.name in made))
    constants.update(_evaluate(model, needed, inputs))
    return kept, folded


def _connected(nodes: list) -> list[list]:
    """Groups of nodes linked by a tensor one makes and another reads, in graph order."""
    group_of = {id(n): i for i, n in enumerate(nodes)}
    parent = list(range(len(nodes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    maker = {o: id(n) for n in nodes for o in n.output}
    for node in nodes:
        for name in node.input:
            if name in maker:
                parent[root(group_of[maker[name]])] = root(group_of[id(node)])
    groups: dict[int, list] = {}
    for i, node in enumerate(nodes):
        groups.setdefault(root(i), []).append(node)
    return list(groups.values())


def _evaluate(model, names: list[str], inputs: dict) -> dict[str, np.ndarray]:
    """The values of the named tensors, by onnx's reference over the nodes they need only."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    makers = {o: n for n in model.graph.node for o in n.output}
    needed, stack = set(), list(names)
    while stack:
        node = makers.get(stack.pop())
        if node is not None and id(node) not in needed:
            needed.add(id(node))
            stack += list(node.input)
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    del pruned.graph.node[:]
    pruned.graph.node.extend(n for n in model.graph.node if id(n) in needed)
    del pruned.graph.output[:]
    pruned.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    feeds = {i.name: inputs[i.name] for i in model.graph.input if i.name in inputs}
    try:
        values = ReferenceEvaluator(pruned).run(None, feeds)
    except Exception as error:  # noqa: BLE001 - the reference's own failure, in one line
        raise NotImported(f"the export's constant computations cannot be evaluated: {type(error).__name__}: "
                          f"{' '.join(str(error).split())[:200]}") from None
    return {name: np.asarray(value) for name, value in zip(names, values)}


def _rename(kept: list, constants: dict, input_names: list[str], output_names: list[str]):
    """The nodes with the spec's names (see the module's docstring); (nodes, constants, left out)."""
    import onnx.defs
    from onnx import helper

    read = {i for n in kept for i in n.input} | set(output_names)
    used_names = set(input_names) | set(output_names)
    names = {n: n for n in input_names + output_names}
    nodes, spec_constants, dropped = [], [], []

    def unique(name: str) -> str:
        candidate, k = name, 2
        while candidate in used_names:
            candidate, k = f"{name}_{k}", k + 1
        used_names.add(candidate)
        return candidate

    for index, node in enumerate(kept):
        schema = onnx.defs.get_schema(node.op_type, OPSET)
        prefix = f"{node.op_type.lower()}{index}"
        node_inputs = []
        for slot, tensor in enumerate(node.input):
            if tensor == "" or tensor in names:
                node_inputs.append(names.get(tensor, ""))
            elif tensor in constants:
                spec_name = unique(f"{prefix}_{_formal(schema.inputs, slot)}")
                spec_constants.append((spec_name, constants[tensor]))
                node_inputs.append(spec_name)
            else:
                raise NotImported(f"node input {tensor!r} is neither a graph input, a constant nor an earlier output")
        node_outputs = []
        for slot, tensor in enumerate(node.output):
            if tensor in output_names:
                node_outputs.append(tensor)
            elif tensor not in read and tensor and _optional(schema.outputs, slot):
                dropped.append(f"{node.op_type}'s output {_formal(schema.outputs, slot)} (nothing reads it)")
                node_outputs.append("")
            else:
                names[tensor] = unique(f"{prefix}_{_formal(schema.outputs, slot)}") if tensor else ""
                node_outputs.append(names[tensor])
        while node_outputs and node_outputs[-1] == "":
            node_outputs.pop()
        attributes = tuple((a.name, _attribute(helper.get_attribute_value(a), a)) for a in node.attribute)
        nodes.append(Node(node.op_type, tuple(node_inputs), tuple(node_outputs), attributes))
    return nodes, spec_constants, dropped


def _stft_signal(nodes: list[Node], spec_constants: list) -> tuple[list[Node], list, list[str]]:
    """A Reshape to [batch, length] before STFT reshapes to [batch, length, 1] (see the docstring)."""
    makers = {o: n for n in nodes for o in n.outputs}
    values = dict(spec_constants)
    fixed = []
    for node in nodes:
        maker = makers.get(node.inputs[0]) if node.op == "STFT" else None
        if maker is None or maker.op != "Reshape" or maker.inputs[1] not in values:
            continue
        shape = values[maker.inputs[1]]
        if shape.ndim == 1 and shape.size == 2:
            values[maker.inputs[1]] = np.append(shape, 1).astype(shape.dtype)
            fixed.append(f"STFT's signal reshaped to [{', '.join(map(str, shape.tolist()))}, 1], not "
                         f"[{', '.join(map(str, shape.tolist()))}]: ONNX's STFT takes a real signal as [batch, length, 1]")
    return nodes, [(name, values[name]) for name, _ in spec_constants], fixed


# ------------------------------------------------------------------ schema names and attribute values
def _formal(formals, slot: int) -> str:
    """The schema's name of input or output `slot` (variadic ones numbered)."""
    import onnx.defs

    variadic = formals and formals[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic
    if slot < len(formals) and not (variadic and slot == len(formals) - 1):
        return formals[slot].name
    return f"{formals[-1].name}_{slot - len(formals) + 1}" if formals else f"input{slot}"


def _optional(formals, slot: int) -> bool:
    import onnx.defs

    return slot < len(formals) and formals[slot].option == onnx.defs.OpSchema.FormalParameterOption.Optional


def _constant_node_value(node) -> np.ndarray:
    from onnx import helper, numpy_helper

    attribute = node.attribute[0]
    value = helper.get_attribute_value(attribute)
    if attribute.name == "value":
        return numpy_helper.to_array(value)
    if attribute.name in ("value_float", "value_int"):
        return np.array(value, dtype=np.float32 if attribute.name == "value_float" else np.int64)
    if attribute.name in ("value_floats", "value_ints"):
        return np.array(list(value), dtype=np.float32 if attribute.name == "value_floats" else np.int64)
    raise NotImported(f"a Constant node with {attribute.name}")


def _attribute(value, attribute):
    """An attribute as the spec writes it (Cast's `to` by its dtype's name, as the built-in specs do)."""
    from onnx import AttributeProto, helper, numpy_helper

    if isinstance(value, bytes):
        return value.decode()
    if attribute.name == "to" and attribute.type == AttributeProto.INT:
        try:
            return str(helper.tensor_dtype_to_np_dtype(value))
        except KeyError:
            return value
    if attribute.type == AttributeProto.TENSOR and attribute.name == "value":  # ConstantOfShape
        array = numpy_helper.to_array(value)
        if array.size == 1 and array.dtype in (np.float32, np.int64):
            return [array.reshape(-1)[0].item()]
    if attribute.type in (AttributeProto.INT, AttributeProto.FLOAT):
        return value
    if attribute.type in (AttributeProto.INTS, AttributeProto.FLOATS):
        return list(value)
    if attribute.type == AttributeProto.STRINGS:
        return [v.decode() for v in value]
    raise NotImported(f"attribute {attribute.name} of type {AttributeProto.AttributeType.Name(attribute.type)} is not supported")


def _describe(node, constants: dict) -> str:
    """One export node as the paper's table writes it: Op(attributes; constant inputs)."""
    import onnx.defs
    from onnx import helper

    def show(value) -> str:
        if isinstance(value, list):
            return "[" + ",".join(show(v) for v in value) + "]"
        return f"{value:g}" if isinstance(value, float) else str(value)

    attributes = {a.name: _attribute(helper.get_attribute_value(a), a) for a in node.attribute}
    attrs = ", ".join(f"{k}={show(v)}" for k, v in sorted(attributes.items()))
    schema = onnx.defs.get_schema(node.op_type, OPSET)
    parts = []
    for slot, tensor in enumerate(node.input):
        if tensor in constants:
            array = constants[tensor]
            if array.size <= 8:
                parts.append(f"{_formal(schema.inputs, slot)}={show(array.reshape(-1).tolist())}")
            else:
                short = {"float32": "f32", "float16": "f16", "int64": "i64", "int32": "i32"}.get(str(array.dtype), str(array.dtype))
                parts.append(f"{_formal(schema.inputs, slot)}=<{'x'.join(map(str, array.shape))} {short}>")
    return f"{node.op_type}({attrs}{'; ' if attrs and parts else ''}{', '.join(parts)})"
