"""Write tasks/paper/<Category>/<name>.toml from the paper's task table (PAPER-TASKS.md).

Run by a developer when the table changes; the spec files it writes are the suite's
source of truth and are committed. Rows whose published graph is a plain chain are wired
automatically; the few whose nodes take several runtime inputs are wired by GRAPH_OVERRIDES,
each with the published graph in mind. Weight tensors are drawn with PyTorch's default
initialisation bounds (the paper's values came from torch's RNG, which we do not replay).

    python tasks/tools/from_paper_tasks.py ../shared/PAPER-TASKS.md
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import onnx.defs

OPSET = 20
DTYPES = {"f32": "float32", "f16": "float16", "i64": "int64", "i32": "int32", "bool": "bool"}
OUT_ROOT = Path(__file__).resolve().parents[1] / "paper"


# ------------------------------------------------------------------ parsing the table
def parse_rows(text: str) -> list[dict]:
    rows, category = [], None
    for line in text.splitlines():
        header = re.match(r"^## (\w+) \((\d+)\)", line)
        if header:
            category = header.group(1)
            continue
        if category and line.startswith("| ") and not line.startswith("| task") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            name, graph, inputs, init_args, outputs = cells
            rows.append(dict(category=category, name=name, graph=graph, inputs=inputs,
                             init_args=init_args, outputs=outputs))
    return rows


def parse_value(text: str):
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        body = text[1:-1].split()
        shape = [] if body[0] == "" else [int(d) for d in body[0].split("x")]
        fill = float(body[3]) if len(body) >= 4 and body[2] == "all" else None
        return {"tensor": shape, "dtype": DTYPES[body[1]], "all": fill}
    if text.startswith("["):
        inner = text[1:-1].strip()
        if not inner:
            return []
        return [parse_value(v) for v in inner.split(",")]
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def split_args(text: str) -> list[tuple[str, str]]:
    if not text.strip():
        return []
    parts = re.split(r",\s*(?=[A-Za-z_][A-Za-z_0-9]*=)", text)
    out = []
    for part in parts:
        key, _, value = part.partition("=")
        out.append((key.strip(), value.strip()))
    return out


def parse_node(text: str) -> dict:
    text = text.replace("‡", "").strip().strip("`").strip()
    match = re.match(r"^(\w+)\((.*)\)$", text)
    op, body = match.group(1), match.group(2)
    attr_text, _, const_text = body.partition(";")
    schema = onnx.defs.get_schema(op, OPSET)
    input_names = [i.name for i in schema.inputs]
    attributes, constants = {}, {}
    for key, value in split_args(attr_text) + split_args(const_text):
        if key in schema.attributes:
            attributes[key] = coerce_attribute(schema.attributes[key], parse_value(value))
        else:
            constants[key] = parse_value(value)
    variadic = bool(schema.inputs) and schema.inputs[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic
    return {"op": op, "attributes": attributes, "constants": constants, "schema_inputs": input_names,
            "variadic": variadic}


def coerce_attribute(attribute, value):
    """Write FLOAT attributes as floats even where the table prints `alpha=1`."""
    kind = attribute.type
    if kind == onnx.defs.OpSchema.AttrType.FLOAT:
        return float(value)
    if kind == onnx.defs.OpSchema.AttrType.FLOATS:
        return [float(v) for v in value]
    return value


def slot_is_integer(op: str, slot: str) -> bool:
    """Whether the schema's input slot takes only integer tensors (axes, shapes, K)."""
    schema = onnx.defs.get_schema(op, OPSET)
    formal = next((i for i in schema.inputs if i.name == slot), None)
    if formal is None:
        return False
    allowed = next((c.allowed_type_strs for c in schema.type_constraints if c.type_param_str == formal.type_str),
                   [formal.type_str])
    return not any("float" in t for t in allowed)


def parse_inputs(text: str) -> list[dict]:
    inputs = []
    for part in text.split("<br>"):
        shape_text, rest = part.strip().split(" ", 1)
        dtype_text, _, draw = rest.partition(" · ")
        seed = re.search(r"\(seed (\d+)\)", draw)
        draw = re.sub(r"\s*\(seed \d+\)", "", draw).strip()
        inputs.append({
            "shape": [int(d) for d in shape_text.strip("[]").split(",") if d],
            "dtype": DTYPES[dtype_text.strip()],
            "draw": normalise_draw(draw),
            "seed": int(seed.group(1)) if seed else None,
        })
    return inputs


def normalise_draw(draw: str) -> str:
    draw = re.sub(r"randint\[(-?\d+),(-?\d+)\)\.bool\(\)", r"randint(\1, \2) > 0", draw)
    draw = re.sub(r"randint\[(-?\d+),(-?\d+)\)", r"randint(\1, \2)", draw)
    return draw


def parse_outputs(text: str) -> list[dict]:
    outs = []
    for part in text.split("<br>"):
        shape_text, dtype_text = part.strip().split(" ")
        outs.append({"shape": [int(d) for d in shape_text.strip("[]").split(",") if d], "dtype": DTYPES[dtype_text]})
    return outs


# ------------------------------------------------------------------ weights
def weight_draw(op: str, slot: str, shape: list[int], node: dict) -> str:
    """PyTorch's default initialisation bound for this parameter, as a draw expression."""
    if op in ("Conv", "ConvTranspose"):
        w = node["constants"].get("W")
        w_shape = w["tensor"] if isinstance(w, dict) else shape
        fan_in = w_shape[1] * math.prod(w_shape[2:])
        bound = 1.0 / math.sqrt(fan_in)
    elif op == "Gemm":
        w = node["constants"].get("B")
        bound = 1.0 / math.sqrt(w["tensor"][1] if isinstance(w, dict) else shape[-1])
    elif op in ("LSTM", "RNN"):
        bound = 1.0 / math.sqrt(node["attributes"]["hidden_size"])
    elif op == "PRelu":
        return "0.5 * rand"
    elif op == "STFT":
        return "hann_window(200, 256)"
    else:
        bound = 1.0
    return f"uniform({-bound:.6g}, {bound:.6g})"


# ------------------------------------------------------------------ graph wiring
def chain_graph(nodes: list[dict], input_names: list[str]) -> tuple[list[dict], list[dict]]:
    """Wire a chain: each node's first free slot takes the previous output; the first node
    takes the graph inputs in slot order. Returns (nodes, constants)."""
    wired, constants = [], []
    previous = None
    pending_inputs = list(input_names)
    for index, node in enumerate(nodes):
        slots = []
        for slot in node["schema_inputs"]:
            if slot in node["constants"]:
                value = node["constants"][slot]
                const_name = f"{node['op'].lower()}{index}_{slot}"
                constants.append(make_constant(const_name, value, node, slot))
                slots.append(const_name)
            elif previous is not None and not any(s == previous for s in slots):
                slots.append(previous)
            elif previous is None and pending_inputs:
                slots.append(pending_inputs.pop(0))
            else:
                slots.append("")
        if node.get("variadic") and previous is None and pending_inputs:
            slots.extend(pending_inputs)
            pending_inputs.clear()
        while slots and slots[-1] == "":
            slots.pop()
        output = f"t{index}"
        wired.append({"op": node["op"], "inputs": slots, "outputs": [output], "attributes": node["attributes"]})
        previous = output
    return wired, constants


def make_constant(name: str, value, node: dict, slot: str) -> dict:
    if isinstance(value, dict):  # a tensor description
        if value["all"] is not None:
            return {"name": name, "shape": value["tensor"], "dtype": value["dtype"], "draw": f"full({value['all']:g})"}
        return {"name": name, "shape": value["tensor"], "dtype": value["dtype"],
                "draw": weight_draw(node["op"], slot, value["tensor"], node)}
    values = value if isinstance(value, list) else [value]
    dtype = "int64" if slot_is_integer(node["op"], slot) else "float32"
    dtype = CONSTANT_DTYPES.get((node["op"], slot), dtype)
    if (node["op"], slot) in CONSTANT_SHAPES:
        return {"name": name, "shape": CONSTANT_SHAPES[(node["op"], slot)], "dtype": dtype,
                "value": [float(v) if dtype == "float32" else int(v) for v in values]}
    shape = [len(values)] if isinstance(value, list) else []
    return {"name": name, "shape": shape, "dtype": dtype, "value": [float(v) if dtype == "float32" else int(v) for v in values]}


# Where the table's flat value list does not say the tensor's type or rank (as exported by torch).
CONSTANT_DTYPES = {("OneHot", "values"): "int64", ("OneHot", "depth"): "int64"}
CONSTANT_SHAPES = {("RoiAlign", "rois"): [1, 4]}


def _const(name, shape, dtype, **kw):
    return {"name": name, "shape": shape, "dtype": dtype, **kw}


def _node(op, inputs, outputs, **attributes):
    return {"op": op, "inputs": inputs, "outputs": outputs, "attributes": attributes}


# Rows whose nodes take more than one runtime input after the first: wired by hand after the
# published graph. Each returns (nodes, constants, output names in the table's order).
GRAPH_OVERRIDES = {
    "Mod": lambda: ([
        _node("Div", ["a", "b"], ["q"]), _node("Floor", ["q"], ["fq"]),
        _node("Mul", ["fq", "b"], ["p"]), _node("Sub", ["a", "p"], ["y"])], [], ["y"]),
    "Gemm_alpha": lambda: ([
        _node("Gemm", ["a", "b"], ["ab"], alpha=1.0, beta=0.0),
        _node("Mul", ["ab", "alpha"], ["scaled"]), _node("Mul", ["c", "beta"], ["bias"]),
        _node("Add", ["scaled", "bias"], ["y"])],
        [_const("alpha", [], "float32", value=[0.5]), _const("beta", [], "float32", value=[1.0])], ["y"]),
    "Gemm_beta": lambda: ([
        _node("Mul", ["c", "beta"], ["bias"]),
        _node("Gemm", ["a", "b", "bias"], ["y"], alpha=1.0, beta=1.0)],
        [_const("beta", [], "float32", value=[0.5])], ["y"]),
    "And": lambda: ([
        _node("Cast", ["a"], ["a1"], to="bool"), _node("Cast", ["a1"], ["a2"], to="bool"),
        _node("Cast", ["b"], ["b1"], to="bool"), _node("Cast", ["b1"], ["b2"], to="bool"),
        _node("And", ["a2", "b2"], ["y"])], [], ["y"]),
    "LogicalXor": lambda: ([
        _node("Cast", ["a"], ["a1"], to="bool"), _node("Cast", ["b"], ["b1"], to="bool"),
        _node("Xor", ["a1", "b1"], ["y"])], [], ["y"]),
    "Range": lambda: ([
        _node("Cast", ["start"], ["s"], to="float"), _node("Cast", ["limit"], ["l"], to="float"),
        _node("Cast", ["delta"], ["d"], to="float"), _node("Range", ["s", "l", "d"], ["y"])], [], ["y"]),
    "BatchNormalization": lambda eps=1e-05, momentum=0.9: ([
        _node("Identity", ["var_init"], ["var"]), _node("Identity", ["mean_init"], ["mean"]),
        _node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"],
              epsilon=eps, momentum=momentum, training_mode=0)],
        [_const("var_init", [32], "float32", draw="full(1)"), _const("mean_init", [32], "float32", draw="full(0)"),
         _const("scale", [32], "float32", draw="full(1)"), _const("bias", [32], "float32", draw="full(0)")], ["y"]),
    "Tile": lambda: ([
        _node("ConstantOfShape", ["expand_rank"], ["ones"], value=[1]),  # int64 ones, as exported
        _node("Expand", ["x", "ones"], ["xe"]), _node("Tile", ["xe", "repeats"], ["y"])],
        [_const("expand_rank", [1], "int64", value=[3]), _const("repeats", [3], "int64", value=[1, 2, 3])], ["y"]),
    "RNN": lambda: ([
        _node("RNN", ["x", "w", "r", "b", "", "h0"], ["ys"], activations=["Tanh"], hidden_size=20),
        _node("Squeeze", ["ys", "squeeze_axes"], ["y"])],
        [_const("w", [1, 20, 10], "float32", draw="uniform(-0.223607, 0.223607)"),
         _const("r", [1, 20, 20], "float32", draw="uniform(-0.223607, 0.223607)"),
         _const("b", [1, 40], "float32", draw="uniform(-0.223607, 0.223607)"),
         _const("squeeze_axes", [1], "int64", value=[1])], ["y"]),
    # The published graph builds the zero initial states with Shape/Gather/Unsqueeze/Concat/
    # Expand; they are constant for the fixed input shape, so they are given as constants.
    "LSTM": lambda: ([
        _node("LSTM", ["x", "w", "r", "b", "", "h0", "c0"], ["ys", "y_h", "y_c"], hidden_size=32),
        _node("Squeeze", ["ys", "squeeze_axes"], ["y"])],
        [_const("w", [1, 128, 16], "float32", draw="uniform(-0.176777, 0.176777)"),
         _const("r", [1, 128, 32], "float32", draw="uniform(-0.176777, 0.176777)"),
         _const("b", [1, 256], "float32", draw="uniform(-0.176777, 0.176777)"),
         _const("h0", [1, 1, 32], "float32", draw="full(0)"), _const("c0", [1, 1, 32], "float32", draw="full(0)"),
         _const("squeeze_axes", [1], "int64", value=[1])], ["y", "y_h", "y_c"]),
    # Published: reflect padding of n_fft//2 built from 16 shape nodes, then STFT, Transpose.
    "Stft": lambda: ([
        _node("Reshape", ["x", "shape3"], ["x3"]),
        _node("Pad", ["x3", "pads"], ["padded"], mode="reflect"),
        _node("Reshape", ["padded", "signal_shape"], ["signal"]),
        _node("STFT", ["signal", "frame_step", "window", "frame_length"], ["spec"], onesided=1),
        _node("Transpose", ["spec"], ["y"], perm=[0, 2, 1, 3])],
        [_const("shape3", [3], "int64", value=[1, 4, 16000]), _const("pads", [6], "int64", value=[0, 0, 128, 0, 0, 128]),
         _const("signal_shape", [3], "int64", value=[4, 16256, 1]), _const("frame_step", [], "int64", value=[64]),
         _const("window", [256], "float32", draw="hann_window(200, 256)"),
         _const("frame_length", [], "int64", value=[256])], ["y"]),
}
GRAPH_OVERRIDES["LogicalXor3d"] = GRAPH_OVERRIDES["LogicalXor"]
GRAPH_OVERRIDES["LogicalXor_2d"] = GRAPH_OVERRIDES["LogicalXor"]
GRAPH_OVERRIDES["BatchNormalization_epsilon"] = lambda: GRAPH_OVERRIDES["BatchNormalization"](eps=0.001)
GRAPH_OVERRIDES["BatchNormalization_momentum"] = lambda: GRAPH_OVERRIDES["BatchNormalization"](momentum=0.8)

# Input names for the overrides (in the table's input order).
OVERRIDE_INPUT_NAMES = {
    "Mod": ["a", "b"], "Gemm_alpha": ["a", "b", "c"], "Gemm_beta": ["a", "b", "c"], "And": ["a", "b"],
    "LogicalXor": ["a", "b"], "LogicalXor3d": ["a", "b"], "LogicalXor_2d": ["a", "b"],
    "Range": ["start", "limit", "delta"], "RNN": ["x", "h0"],
}

# Which node output feeds each table output, where a node has several outputs.
MULTI_OUTPUT = {
    "TopK": {"float32": 0, "int64": 1},
    "Unique": None,  # Y, then inverse_indices, then counts (torch.unique's order)
}

ACCUMULATING = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum", "ReduceSum", "ReduceL1", "ReduceL2",
                "ReduceLogSumExp", "ReduceMean", "ReduceProd", "Det", "AveragePool", "GlobalAveragePool",
                "CumSum", "LSTM", "RNN", "STFT", "BatchNormalization", "InstanceNormalization",
                "LayerNormalization", "Softmax", "LogSoftmax", "GridSample", "RoiAlign"}


# Tasks whose operator appears in no node of the export (the exporter decomposed it).
DECOMPOSED_OPERATOR = {"Mod": "Mod"}


def target_operator(name: str, nodes: list[dict]) -> str:
    """The node the task is about: the one whose op the table's row is named after, else the
    last non-trivial node."""
    if name in DECOMPOSED_OPERATOR:
        return DECOMPOSED_OPERATOR[name]
    trivial = {"Identity", "Cast", "Reshape", "Unsqueeze", "Squeeze", "Mul", "ConstantOfShape", "Expand",
               "Transpose", "Pad", "Div", "Floor", "Sub"}
    ops = [n["op"] for n in nodes]
    for op in ops:
        if name.lower().startswith(op.lower()):
            return op
    meaningful = [op for op in ops if op not in trivial]
    return meaningful[-1] if meaningful else ops[-1]


def build_spec(row: dict) -> dict:
    inputs = parse_inputs(row["inputs"])
    outputs = parse_outputs(row["outputs"])
    name = row["name"]
    if name in GRAPH_OVERRIDES:
        nodes, constants, out_names = GRAPH_OVERRIDES[name]()
        input_names = OVERRIDE_INPUT_NAMES.get(name, ["x"][: len(inputs)] or ["x"])
        if len(input_names) < len(inputs):
            input_names = [f"x{i}" for i in range(len(inputs))]
    else:
        parsed = [parse_node(n) for n in row["graph"].split(" → ")]
        input_names = ["x"] if len(inputs) == 1 else [f"x{i}" for i in range(len(inputs))]
        nodes, constants = chain_graph(parsed, input_names)
        last = nodes[-1]
        if last["op"] == "TopK":
            last["outputs"] = ["values", "indices"]
            out_names = [last["outputs"][MULTI_OUTPUT["TopK"][o["dtype"]]] for o in outputs]
        elif last["op"] == "Unique":
            last["outputs"] = ["y", "", "inverse_indices", "counts"]
            out_names = ["y", "inverse_indices", "counts"][: len(outputs)]
        else:
            out_names = [last["outputs"][0]]
    for spec_input, input_name in zip(inputs, input_names):
        spec_input["name"] = input_name
    for out, out_name in zip(outputs, out_names):
        out["name"] = out_name
    operator = target_operator(name, nodes)
    exact = all(o["dtype"] in ("int64", "int32", "bool") for o in outputs) or operator in (
        "Abs", "Neg", "Ceil", "Floor", "Round", "Sign", "Relu", "Max", "Min", "MaxPool", "ReduceMax", "ReduceMin",
        "ArgMax", "ArgMin", "Concat", "DepthToSpace", "Gather", "GatherElements", "Reshape", "ScatterElements",
        "Slice", "Tile", "TopK", "Trilu", "Where", "Clip", "Unique", "Cast", "OneHot", "GlobalMaxPool")
    tolerance = {"atol": 0.0, "rtol": 0.0} if exact else {"atol": 1e-4, "rtol": 1e-4}
    if operator in ACCUMULATING:
        tolerance["scale_atol_by_output"] = True
    return {
        "name": name, "suite": "paper", "category": row["category"], "operator": operator, "opset": OPSET,
        "source": "PAPER-TASKS.md", "published_graph": row["graph"].replace("`", ""),
        "init_args": "" if row["init_args"] == "—" else row["init_args"],
        "seed": next((i["seed"] for i in inputs if i["seed"] is not None), 0),
        "tolerance": tolerance, "inputs": inputs, "constants": constants, "nodes": nodes, "outputs": outputs,
    }


# ------------------------------------------------------------------ TOML writing
def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def to_toml(spec: dict) -> str:
    lines = [f"# MobileKernelBench task {spec['category']}/{spec['name']} (from the paper's table)"]
    for key in ("name", "suite", "category", "operator", "opset", "seed", "source", "published_graph", "init_args"):
        lines.append(f"{key} = {toml_value(spec[key])}")
    if spec["operator"] in DECOMPOSED_OPERATOR.values():
        lines.append("decomposed = true  # the export has no node of this op: the exporter wrote it as others")
    lines.append("")
    lines.append("[tolerance]")
    for k, v in spec["tolerance"].items():
        lines.append(f"{k} = {toml_value(v)}")
    for table in ("inputs", "constants", "nodes", "outputs"):
        for entry in spec[table]:
            lines.append("")
            lines.append(f"[[{table}]]")
            for k, v in entry.items():
                if v is None:
                    continue
                lines.append(f"{k} = {toml_value(v)}")
    return "\n".join(lines) + "\n"


def main(table_path: str) -> None:
    rows = parse_rows(Path(table_path).read_text())
    for row in rows:
        spec = build_spec(row)
        for entry in spec["inputs"]:
            entry.pop("seed", None)
        path = OUT_ROOT / row["category"] / f"{row['name']}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        existing = path.read_text() if path.exists() else ""
        # Hand-written sections (the PyTorch module, the MNN target, the status) survive regeneration.
        marks = [existing.index(m) for m in ("\n[mnn]", "\n[status]", "\n[torch]") if m in existing]
        keep = existing[min(marks):] if marks else ""
        path.write_text(to_toml(spec) + keep)
    print(f"wrote {len(rows)} task specs under {OUT_ROOT}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[3] / "shared" / "PAPER-TASKS.md"))
