"""`mkbench tasks import`: task files in KernelBench's format (as the paper publishes them)
become mkbench tasks.

A task file is Python: `class Model(nn.Module)`, `get_inputs()` and `get_init_inputs()`.
PATH may be such a file, a folder of them (category "Imported"), or a folder of category
folders (the category is the folder's name). Each file runs in a child process
(kernelbench_child.py) with a time limit: it is code from outside, and nothing of it runs in
mkbench's own process. The child seeds torch, builds and runs the module, and exports it to
ONNX at opset 20; here the export must be a single operator node (Constant nodes aside),
onnx's ReferenceEvaluator must agree with PyTorch on the file's own inputs within the
task's tolerance, and then `<out_dir>/<category>/<name>.toml` is written with
suite = "imported" and source = "<file> sha256:<hex>" (the file as named under PATH).

What the spec records, and how honestly:
- the node, its attributes and the shapes are the export's; the module source is kept as
  [torch] module, the problem as the LLM sees it;
- weights and other constant inputs of the node are the module's own (seeded): at most
  SMALL_CONSTANT elements as a `value`, larger ones as .npy data files beside the spec,
  `file = "<name>.<tensor>.npy"` with the file's `sha256` (spec.py's extension for imports);
- an input's distribution cannot be known from a file in general. Where get_inputs is
  plain torch.rand/randn/randint/... arithmetic (kernelbench_child.recognise_draws) the
  input gets that `draw` in mkbench's draw language, and the reading is proven by replaying
  it with torch from the same seed, which must reproduce get_inputs' tensors exactly. Any
  other input is stored as a data file: the tensor the file drew with seed 0, which every
  input set (timing and correctness) then uses.
Importing the same file again gives byte-identical spec and data files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import draw as draw_module
from .spec import DTYPES, load_task

OPSET = 20
SMALL_CONSTANT = 16  # elements: written as `value`; larger constants go to data files
DEFAULT_TIMEOUT = 120.0
DEFAULT_CATEGORY = "Imported"
TORCH_MISSING = "torch is not installed: pip install 'mkbench[torch]' (CPU build) to import task files"
CHILD_TORCH_MISSING = 3  # kernelbench_child's exit status when torch cannot be imported

# Tolerances as tasks/tools/from_paper_tasks.py gives the paper's tasks.
EXACT = {"Abs", "Neg", "Ceil", "Floor", "Round", "Sign", "Relu", "Max", "Min", "MaxPool", "ReduceMax", "ReduceMin",
         "ArgMax", "ArgMin", "Concat", "DepthToSpace", "Gather", "GatherElements", "Reshape", "ScatterElements",
         "Slice", "Tile", "TopK", "Trilu", "Where", "Clip", "Unique", "Cast", "OneHot", "GlobalMaxPool",
         "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "SpaceToDepth", "Expand", "Pad"}
ACCUMULATING = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum", "ReduceSum", "ReduceL1", "ReduceL2",
                "ReduceLogSumExp", "ReduceMean", "ReduceProd", "Det", "AveragePool", "GlobalAveragePool",
                "CumSum", "LSTM", "RNN", "GRU", "STFT", "BatchNormalization", "InstanceNormalization",
                "LayerNormalization", "Softmax", "LogSoftmax", "GridSample", "RoiAlign", "ReduceSumSquare"}


class TorchMissing(RuntimeError):
    """torch (the optional extra) is not installed; the message is one line."""


class NotImported(Exception):
    """This file gives no task; the message is one line, without the file name."""


@dataclass(frozen=True)
class Source:
    path: Path  # the file, as found under the PATH given
    category: str
    label: str  # the file as named in `source`: relative to the folder imported


@dataclass(frozen=True)
class ImportResult:
    """What importing one file gave: a task file, or a one-line reason."""

    source: Path
    ok: bool
    task_path: Path | None = None
    name: str = ""
    category: str = ""
    operator: str = ""
    inputs: str = ""  # "drawn", "stored", or "a drawn, b stored"
    exporter: str = ""
    error: str = ""

    @property
    def line(self) -> str:
        if not self.ok:
            return f"{self.source}: {self.error}"
        return f"{self.source}: {self.category}/{self.name} ({self.operator}; inputs {self.inputs}) -> {self.task_path}"


# ------------------------------------------------------------------ finding files
def find_sources(paths: list[Path]) -> tuple[list[Source], list[ImportResult]]:
    """Every task file under the paths given: files, folders of files, folders of category folders."""
    sources, errors = [], []
    for path in map(Path, paths):
        if path.is_file():
            sources.append(Source(path, DEFAULT_CATEGORY, path.name))
        elif path.is_dir():
            sources += [Source(f, DEFAULT_CATEGORY, f.name) for f in _python_files(path)]
            for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
                sources += [Source(f, folder.name, f"{folder.name}/{f.name}") for f in _python_files(folder)]
        else:
            errors.append(ImportResult(path, False, error="no such file or folder"))
    return sources, errors


def _python_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.glob("*.py") if f.is_file() and not f.name.startswith("_"))


def _identifier(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", text)
    return cleaned if cleaned and not cleaned.startswith("-") else f"_{cleaned}"


# ------------------------------------------------------------------ importing
def import_files(paths: list[Path], out_dir: Path, timeout: float = DEFAULT_TIMEOUT, workers: int = 1) -> list[ImportResult]:
    """Import every task file under the paths into out_dir/<category>/<name>.toml.

    One result per file, in order; a bad file never stops the others. Raises TorchMissing
    when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        raise TorchMissing(TORCH_MISSING)
    sources, errors = find_sources(paths)
    seen: dict[tuple[str, str], Path] = {}

    def one(source: Source) -> ImportResult:
        key = (_identifier(source.category), _identifier(source.path.stem))
        if seen[key] != source.path:
            return ImportResult(source.path, False, error=f"task {key[0]}/{key[1]} is already imported from {seen[key]}")
        return import_file(source, Path(out_dir), timeout)

    for source in sources:
        seen.setdefault((_identifier(source.category), _identifier(source.path.stem)), source.path)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return errors + list(pool.map(one, sources))


def import_file(source: Source, out_dir: Path, timeout: float = DEFAULT_TIMEOUT) -> ImportResult:
    """Import one file (see the module's docstring); raises TorchMissing."""
    name, category = _identifier(source.path.stem), _identifier(source.category)
    try:
        text = source.path.read_bytes()
    except OSError as error:
        return ImportResult(source.path, False, error=f"cannot read it: {error.strerror}")
    with tempfile.TemporaryDirectory(prefix="mkbench-import-") as tmp:
        work = Path(tmp)
        try:
            result = run_child(source.path, work / "child", timeout)
            spec_text, data, operator = build_spec(work / "child", result, name, category, source, text)
            staged = work / "spec"
            staged.mkdir()
            spec_path = staged / f"{name}.toml"
            for file_name, raw in data.items():
                (staged / file_name).write_bytes(raw)
            spec_path.write_text(spec_text)
            check_agreement(spec_path, work / "child")
        except NotImported as error:
            return ImportResult(source.path, False, name=name, category=category, error=str(error))
        except TorchMissing:
            raise
        except Exception as error:  # noqa: BLE001 - one file's surprise never stops the others
            return ImportResult(source.path, False, name=name, category=category,
                                error=f"import failed: {type(error).__name__}: {' '.join(str(error).split())[:300]}")
        target = out_dir / category
        target.mkdir(parents=True, exist_ok=True)
        for old in target.glob(f"{name}.*.npy"):
            old.unlink()
        for file_name in data:
            shutil.copyfile(staged / file_name, target / file_name)
        shutil.copyfile(spec_path, target / f"{name}.toml")
    kinds = ["drawn" if d else "stored" for d in result["draws"]]
    inputs = kinds[0] if len(set(kinds)) == 1 else ", ".join(f"{n} {k}" for n, k in zip(result["inputs"], kinds))
    return ImportResult(source.path, True, target / f"{name}.toml", name, category, operator, inputs,
                        result["exporter"])


def run_child(path: Path, out: Path, timeout: float) -> dict:
    """Run kernelbench_child on the file with a time limit; its checked result.json."""
    out.mkdir(parents=True)
    command = [sys.executable, "-m", "mkbench.tasks.kernelbench_child", str(path.resolve()), str(out)]
    log = out.parent / "child.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL,
                                   start_new_session=True, cwd=str(out))
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the child and anything it started
            process.wait()
            raise NotImported(f"module did not return within {timeout:g} s") from None
    if process.returncode == CHILD_TORCH_MISSING:
        raise TorchMissing(TORCH_MISSING)
    result_path = out / "result.json"
    if process.returncode != 0 or not result_path.is_file():
        last = log.read_bytes()[-2000:].decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise NotImported(f"the import process died (exit status {process.returncode}): {' '.join(last[0].split())[:200]}")
    try:
        result = json.loads(result_path.read_text())
    except ValueError:
        raise NotImported("the import process gave a malformed result") from None
    if not isinstance(result, dict) or not result.get("ok"):
        error = result.get("error") if isinstance(result, dict) else None
        raise NotImported(" ".join(str(error or "unknown error").split())[:400])
    return _checked(result)


def _checked(result: dict) -> dict:
    """The child ran code from outside: take nothing of its answer on trust."""
    names, outputs, draws = result.get("inputs"), result.get("outputs"), result.get("draws")
    ident = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
    if not (isinstance(names, list) and all(isinstance(n, str) and ident.match(n) for n in names)
            and isinstance(outputs, list) and all(isinstance(n, str) and ident.match(n) for n in outputs)
            and isinstance(draws, list) and len(draws) == len(names)
            and isinstance(result.get("seed"), int) and isinstance(result.get("init_args"), str)
            and result.get("exporter") in ("torchscript", "torch.export")):
        raise NotImported("the import process gave a malformed result")
    checked = []
    for draw in draws:
        try:
            draw_module.check_expression(draw) if draw is not None else None
            checked.append(draw)
        except (ValueError, TypeError):
            checked.append(None)
    return dict(result, draws=checked)


# ------------------------------------------------------------------ the spec
def build_spec(child: Path, result: dict, name: str, category: str, source: Source,
               text: bytes) -> tuple[str, dict[str, bytes], str]:
    """The spec file's text, its data files (name -> bytes) and its operator, from the child's export."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(child / "model.onnx"))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset != OPSET:
        raise NotImported(f"the export is at opset {opset}, not {OPSET}")
    graph = model.graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = _constant_node_value(node)
    compute = [n for n in graph.node if n.op_type != "Constant"]
    if len(compute) != 1:
        ops = ", ".join(n.op_type for n in compute[:8]) + (", ..." if len(compute) > 8 else "")
        raise NotImported(f"the export is {len(compute)} nodes ({ops}), not a single operator node")
    node = compute[0]
    if node.domain not in ("", "ai.onnx"):
        raise NotImported(f"the export's node {node.op_type} is in domain {node.domain!r}, not ONNX's")
    op = node.op_type
    if op == "Identity":
        raise NotImported("the export is a single Identity node: the module computes nothing")
    graph_inputs = [i.name for i in graph.input if i.name not in constants]
    if graph_inputs != result["inputs"]:
        unused = [n for n in result["inputs"] if n not in graph_inputs]
        raise NotImported(f"forward's input {', '.join(unused) or graph_inputs} is not used by the export"
                          if unused else f"the export's inputs {graph_inputs} are not forward's {result['inputs']}")
    if [o.name for o in graph.output] != result["outputs"] or not set(result["outputs"]) <= set(node.output):
        raise NotImported("an output of forward is not computed by the node (the module returns an input or a constant)")

    inputs = np.load(child / "inputs.npz", allow_pickle=False)
    outputs = np.load(child / "outputs.npz", allow_pickle=False)
    schema = onnx.defs.get_schema(op, OPSET)
    data: dict[str, bytes] = {}
    constant_specs, renamed = [], {}
    for slot, tensor_name in enumerate(node.input):
        if tensor_name == "" or tensor_name in graph_inputs or tensor_name in renamed:
            continue
        if tensor_name not in constants:
            raise NotImported(f"node input {tensor_name!r} is neither a graph input nor a constant")
        spec_name = f"{op.lower()}0_{_slot_name(schema, slot)}"
        renamed[tensor_name] = spec_name
        constant_specs.append(_tensor_entry(spec_name, constants[tensor_name], name, data, drawn=None))
    out_names = []
    for k, tensor_name in enumerate(node.output):
        out_names.append(tensor_name if tensor_name in result["outputs"] or tensor_name == "" else f"{op.lower()}0_out{k}")
    input_specs = [_tensor_entry(n, inputs[n], name, data, drawn=d) for n, d in zip(result["inputs"], result["draws"])]
    output_specs = [{"name": n, "shape": list(outputs[n].shape), "dtype": str(outputs[n].dtype)} for n in result["outputs"]]
    attributes = {a.name: _attribute(helper.get_attribute_value(a), a) for a in node.attribute}
    exact = op in EXACT or all(o["dtype"] in ("int64", "int32", "bool", "uint8", "int8") for o in output_specs)
    tolerance = {"atol": 0.0, "rtol": 0.0} if exact else {"atol": 1e-4, "rtol": 1e-4}
    if op in ACCUMULATING:
        tolerance["scale_atol_by_output"] = True

    lines = [f"# mkbench task {category}/{name}, imported from a KernelBench-format file by `mkbench tasks import`.",
             "# Inputs with a `draw` were read from get_inputs() and replayed exactly with torch; inputs and",
             "# constants with a `file` are the file's own tensors (seed 0), stored beside this spec.",
             f"name = {_str(name)}", 'suite = "imported"', f"category = {_str(category)}", f"operator = {_str(op)}",
             f"opset = {OPSET}", f"seed = {result['seed']}",
             f"source = {_str(source.label + ' sha256:' + hashlib.sha256(text).hexdigest())}",
             f"published_graph = {_str(_published(op, attributes, node, renamed, constants))}",
             f"init_args = {_str(result['init_args'])}", f"exporter = {_str(result['exporter'])}", "", "[tolerance]"]
    lines += [f"{k} = {_value(v)}" for k, v in tolerance.items()]
    for table, entries in (("inputs", input_specs), ("constants", constant_specs)):
        for entry in entries:
            lines += ["", f"[[{table}]]"] + [f"{k} = {_value(v)}" for k, v in entry.items()]
    node_inputs = [renamed.get(n, n) for n in node.input]
    lines += ["", "[[nodes]]", f"op = {_str(op)}", f"inputs = {_value(node_inputs)}", f"outputs = {_value(out_names)}",
              "attributes = { " + ", ".join(f"{k} = {_value(v)}" for k, v in attributes.items()) + " }"]
    for entry in output_specs:
        lines += ["", "[[outputs]]"] + [f"{k} = {_value(v)}" for k, v in entry.items()]
    lines += ["", "[torch]", f"module = {_module_text(text)}"]
    return "\n".join(lines) + "\n", data, op


def _slot_name(schema, slot: int) -> str:
    formal = schema.inputs
    if slot < len(formal) and not (slot == len(formal) - 1 and _variadic(formal[-1])):
        return formal[slot].name
    return f"{formal[-1].name}_{slot - len(formal) + 1}" if formal else f"input{slot}"


def _variadic(formal) -> bool:
    import onnx.defs

    return formal.option == onnx.defs.OpSchema.FormalParameterOption.Variadic


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


def _tensor_entry(spec_name: str, array: np.ndarray, task_name: str, data: dict, drawn: str | None) -> dict:
    array = np.asarray(array)
    dtype = str(array.dtype)
    if dtype not in DTYPES:
        raise NotImported(f"tensor {spec_name} is {dtype}; mkbench tasks take {', '.join(DTYPES)}")
    entry = {"name": spec_name, "shape": list(array.shape), "dtype": dtype}
    if not all(d > 0 for d in array.shape):
        raise NotImported(f"tensor {spec_name} has an empty dimension ({list(array.shape)})")
    if drawn is not None:
        entry["draw"] = drawn
    elif array.size <= SMALL_CONSTANT and not ("float" in dtype and not np.isfinite(array).all()):
        entry["value"] = [bool(v) if dtype == "bool" else (float(v) if "float" in dtype else int(v)) for v in array.reshape(-1)]
    else:
        entry.update(_data_file(spec_name, array, task_name, data))
    return entry


def _data_file(spec_name: str, array: np.ndarray, task_name: str, data: dict) -> dict:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    file_name = f"{task_name}.{spec_name}.npy"
    data[file_name] = buffer.getvalue()
    return {"file": file_name, "sha256": hashlib.sha256(data[file_name]).hexdigest()}


def _attribute(value, attribute):
    from onnx import AttributeProto, numpy_helper

    if isinstance(value, bytes):
        return value.decode()
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


def _published(op: str, attributes: dict, node, renamed: dict, constants: dict) -> str:
    """The node as the paper's table writes it: Op(attributes; constant inputs)."""
    def show(value) -> str:
        if isinstance(value, list):
            return "[" + ",".join(show(v) for v in value) + "]"
        return f"{value:g}" if isinstance(value, float) else str(value)

    attrs = ", ".join(f"{k}={show(v)}" for k, v in sorted(attributes.items()))
    parts = []
    for tensor_name in node.input:
        if tensor_name in renamed:
            array = constants[tensor_name]
            slot = renamed[tensor_name].split("_", 1)[1]
            if array.size <= 8:
                parts.append(f"{slot}={show(array.reshape(-1).tolist())}")
            else:
                short = {"float32": "f32", "float16": "f16", "int64": "i64", "int32": "i32"}.get(str(array.dtype), str(array.dtype))
                parts.append(f"{slot}=<{'x'.join(map(str, array.shape))} {short}>")
    return f"{op}({attrs}{'; ' if attrs and parts else ''}{', '.join(parts)})"


def _str(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; DEL must be escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if np.isfinite(value) else ("nan" if np.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return _str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _module_text(raw: bytes) -> str:
    """The module source: a ''' literal where it can be, else an escaped basic string."""
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
    literal_ok = "'''" not in text and text.endswith("\n") and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)
    return "'''\n" + text + "'''" if literal_ok else _str(text)


# ------------------------------------------------------------------ agreement
def check_agreement(spec_path: Path, child: Path) -> None:
    """Load the written spec back; its ONNX reference must agree with PyTorch's outputs."""
    from ..tasks.compare import compare
    from .model import build_model, reference_outputs

    try:
        task = load_task(spec_path)
        model = build_model(task)
    except Exception as error:  # noqa: BLE001 - the loader's TaskError and onnx.checker's errors alike
        raise NotImported(f"the task built from the export is not valid: {' '.join(str(error).split())[:300]}") from None
    inputs = np.load(child / "inputs.npz", allow_pickle=False)
    outputs = np.load(child / "outputs.npz", allow_pickle=False)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):  # overflow shows in the comparison, not on stderr
            warnings.simplefilter("ignore")
            reference = reference_outputs(task, {s.name: inputs[s.name] for s in task.inputs}, model)
    except Exception as error:  # noqa: BLE001
        raise NotImported(f"the ONNX reference cannot run it: {type(error).__name__}: {' '.join(str(error).split())[:200]}") from None
    for spec in task.outputs:
        expected, actual = reference[spec.name], outputs[spec.name]
        if expected.shape != actual.shape or expected.dtype != actual.dtype:
            raise NotImported(f"PyTorch gives {spec.name} as {list(actual.shape)} {actual.dtype}, "
                              f"the ONNX reference as {list(expected.shape)} {expected.dtype}")
        result = compare(spec.name, expected, actual, task.tolerance)
        if not result.ok:
            raise NotImported(f"PyTorch and the ONNX reference disagree: {result.reason}")
