"""A task spec: one TOML file per task, loaded into frozen dataclasses.

The loader names the file and the field at fault, and loading a folder never lets one bad
file hide the others: `load_suite` returns the good tasks and one error line per bad file.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx.defs

from . import draw as draw_module

DTYPES = ("float32", "float16", "int64", "int32", "bool", "uint8", "int8")
KINDS = ("cpu-execution", "geometry", "composite")


class TaskError(ValueError):
    """A task file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class TensorSpec:
    """A graph input (drawn per run) or constant (drawn once per task, or given)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    draw: str | None = None  # expression, see draw.py
    value: tuple | None = None  # literal values, for small constants
    # A second distribution for the "edge" correctness set, where the published draw alone
    # would let a trivial kernel pass (Relu on rand >= 0 is the identity). Timing keeps `draw`.
    check_draw: str | None = None
    # Imported tasks (see kernelbench.py): a tensor stored as a .npy file beside the spec,
    # written `file = "Name.tensor.npy"` with its `sha256`; the path here is resolved.
    file: Path | None = None
    file_sha256: str | None = None

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class NodeSpec:
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tolerance:
    """|candidate - reference| <= atol' + rtol * |reference| elementwise, where atol' is
    atol, or atol * max(1, max|reference|) for accumulating ops whose rounding error grows with
    the output's magnitude. Integer and boolean outputs are compared exactly."""

    atol: float
    rtol: float
    scale_atol_by_output: bool = False


@dataclass(frozen=True)
class MnnTarget:
    """What a kernel for this task replaces in MNN, found by converting the task's model."""

    kind: str  # cpu-execution | geometry | composite
    targets: tuple[tuple[str, str | None], ...]  # (MNN op type, sub-type) pairs
    converted_ops: tuple[str, ...]  # every op of the converted graph, "Type" or "Type:SUB"
    hints: dict[str, int] = field(default_factory=dict)  # runtime hints the judge must set


@dataclass(frozen=True)
class Status:
    runnable: bool  # the model is sound and native MNN agrees with the reference
    reason: str  # one line, with the figure, when not runnable
    judgeable: bool | None = None  # today's judge can serve it (measured by `tasks validate`)
    judge_reason: str = ""


@dataclass(frozen=True)
class Task:
    name: str
    suite: str
    category: str
    operator: str  # the ONNX operator the task is about
    opset: int
    seed: int
    inputs: tuple[TensorSpec, ...]
    constants: tuple[TensorSpec, ...]
    nodes: tuple[NodeSpec, ...]
    outputs: tuple[TensorSpec, ...]
    tolerance: Tolerance
    mnn: MnnTarget | None
    status: Status
    torch_module: str | None  # KernelBench-format source: the problem as shown to the LLM
    published_graph: str
    init_args: str
    source: str  # where the task comes from (the paper's table, or an imported file + sha256)
    path: Path
    sha256: str  # of the spec file: results name the exact task they measured

    @property
    def id(self) -> str:
        return self.name


def _require(data: dict, key: str, kind, where: str):
    if key not in data:
        raise TaskError(f"{where}: missing field '{key}'")
    value = data[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind):
        raise TaskError(f"{where}: field '{key}' must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _tensor(entry: dict, where: str, needs_source: bool, folder: Path | None = None) -> TensorSpec:
    name = _require(entry, "name", str, where)
    where = f"{where} '{name}'"
    shape = _require(entry, "shape", list, where)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise TaskError(f"{where}: field 'shape' must list positive integers, got {shape}")
    dtype = _require(entry, "dtype", str, where)
    if dtype not in DTYPES:
        raise TaskError(f"{where}: field 'dtype' {dtype!r} is not one of {', '.join(DTYPES)}")
    draw, value, check_draw = entry.get("draw"), entry.get("value"), entry.get("check_draw")
    for key, expression in (("draw", draw), ("check_draw", check_draw)):
        if expression is not None:
            try:
                draw_module.check_expression(expression)
            except ValueError as error:
                raise TaskError(f"{where}: field '{key}': {error}") from None
    if value is not None:
        size = 1
        for d in shape:
            size *= d
        if len(value) != size:
            raise TaskError(f"{where}: field 'value' has {len(value)} values for shape {shape}")
    file, file_sha256 = entry.get("file"), entry.get("sha256")
    if file is not None:
        if not isinstance(file, str) or Path(file).name != file or not file.endswith(".npy"):
            raise TaskError(f"{where}: field 'file' must name a .npy file beside the spec, got {file!r}")
        if not (isinstance(file_sha256, str) and len(file_sha256) == 64):
            raise TaskError(f"{where}: field 'file' needs the file's 'sha256'")
        if draw is not None or value is not None:
            raise TaskError(f"{where}: give one of 'draw', 'value' or 'file'")
        if folder is not None and not (folder / file).is_file():
            raise TaskError(f"{where}: field 'file': {folder / file} does not exist")
    if needs_source and draw is None and value is None and file is None:
        raise TaskError(f"{where}: needs a 'draw' or a 'value'")
    return TensorSpec(name, tuple(shape), dtype, draw, tuple(value) if value is not None else None, check_draw,
                      (folder or Path(".")) / file if file is not None else None, file_sha256 if file is not None else None)


def parse_task(data: dict, path: Path, sha256: str = "") -> Task:
    """Build a Task from parsed TOML, checking every field; raises TaskError."""
    where = str(path)
    name = _require(data, "name", str, where)
    opset = _require(data, "opset", int, where)
    operator = _require(data, "operator", str, where)
    inputs = tuple(_tensor(e, f"{where}: inputs", True, path.parent) for e in _require(data, "inputs", list, where))
    constants = tuple(_tensor(e, f"{where}: constants", True, path.parent) for e in data.get("constants", []))
    outputs = tuple(_tensor(e, f"{where}: outputs", False) for e in _require(data, "outputs", list, where))
    nodes = []
    known = {t.name for t in inputs + constants} | {""}
    for entry in _require(data, "nodes", list, where):
        op = _require(entry, "op", str, f"{where}: nodes")
        try:
            onnx.defs.get_schema(op, opset)
        except Exception:
            raise TaskError(f"{where}: nodes: field 'op': unknown ONNX operator {op!r} at opset {opset}") from None
        node_inputs = tuple(_require(entry, "inputs", list, f"{where}: node {op}"))
        for name_in in node_inputs:
            if name_in not in known:
                raise TaskError(f"{where}: node {op}: input {name_in!r} is neither a graph input, a constant nor an earlier output")
        node_outputs = tuple(_require(entry, "outputs", list, f"{where}: node {op}"))
        known |= set(node_outputs)
        nodes.append(NodeSpec(op, node_inputs, node_outputs, dict(entry.get("attributes", {}))))
    for out in outputs:
        if out.name not in known:
            raise TaskError(f"{where}: outputs '{out.name}': no node produces it")
    # `decomposed = true`: the exporter wrote the operator as several other nodes (Mod).
    if not data.get("decomposed", False) and not any(n.op == operator for n in nodes):
        raise TaskError(f"{where}: field 'operator' {operator!r} is not the op of any node")
    tol = _require(data, "tolerance", dict, where)
    tolerance = Tolerance(_require(tol, "atol", float, f"{where}: tolerance"), _require(tol, "rtol", float, f"{where}: tolerance"),
                          bool(tol.get("scale_atol_by_output", False)))
    mnn = None
    if "mnn" in data:
        m = data["mnn"]
        kind = _require(m, "kind", str, f"{where}: mnn")
        if kind not in KINDS:
            raise TaskError(f"{where}: mnn: field 'kind' {kind!r} is not one of {', '.join(KINDS)}")
        mnn = MnnTarget(kind, tuple((t[0], t[1] if len(t) > 1 and t[1] else None) for t in m.get("targets", [])),
                        tuple(m.get("converted_ops", [])), dict(m.get("hints", {})))
    status_data = data.get("status", {"runnable": True, "reason": ""})
    status = Status(bool(status_data.get("runnable", True)), str(status_data.get("reason", "")),
                    status_data.get("judgeable"), str(status_data.get("judge_reason", "")))
    return Task(
        name=name, suite=data.get("suite", "paper"), category=_require(data, "category", str, where),
        operator=operator, opset=opset, seed=int(data.get("seed", 0)), inputs=inputs, constants=constants,
        nodes=tuple(nodes), outputs=outputs, tolerance=tolerance, mnn=mnn, status=status,
        torch_module=data.get("torch", {}).get("module"), published_graph=data.get("published_graph", ""),
        init_args=data.get("init_args", ""), source=data.get("source", ""), path=path, sha256=sha256,
    )


def load_task(path: Path) -> Task:
    """Load one spec file; raises TaskError naming the file and the field at fault."""
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TaskError(f"{path}: not valid TOML: {error}") from None
    return parse_task(data, path, hashlib.sha256(raw).hexdigest())


# A folder of the tasks tree that holds `mkbench run-all --config` files, not task specs.
RUN_CONFIGS = "runs"


def load_suite(root: Path | Sequence[Path], suite: str | None = None) -> tuple[list[Task], list[str]]:
    """Every task under root, or under each of several roots in turn (optionally one suite), and
    one error line per bad file. A root that does not exist holds no task."""
    tasks, errors, seen = [], [], {}
    roots = [root] if isinstance(root, Path) else [Path(r) for r in root]
    for base, path in ((base, path) for base in roots for path in sorted(base.rglob("*.toml"))):
        if path.relative_to(base).parts[0] == RUN_CONFIGS:
            continue
        try:
            task = load_task(path)
        except TaskError as error:
            errors.append(str(error))
            continue
        if suite and task.suite != suite:
            continue
        key = (task.suite, task.name)  # names are unique within a suite
        if key in seen:
            errors.append(f"{path}: field 'name': {task.name!r} is already used by {seen[key]}")
            continue
        seen[key] = path
        tasks.append(task)
    return tasks, errors


def suite_hash(tasks: list[Task]) -> str:
    """One hash for the exact suite a run used (names and spec contents)."""
    digest = hashlib.sha256()
    for task in sorted(tasks, key=lambda t: t.name):
        digest.update(f"{task.name}:{task.sha256}\n".encode())
    return digest.hexdigest()


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str) and "\n" in value and "'''" not in value:
        return "'''\n" + value + "'''"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_section(path: Path, section: str, values: dict) -> None:
    """Replace (or add) one top-level [section] of a spec file, keeping the rest as is.

    Used to record what validation found ([mnn], [status]); the hand-written parts of the
    file are untouched, and [torch] (a long multi-line module) stays last.
    """
    blocks: list[tuple[str, list[str]]] = [("", [])]  # (top-level table name, lines)
    open_quote = None  # the delimiter of the multi-line string we are in (''' or """), if any
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if open_quote is None and stripped.startswith("[") and not stripped.startswith("[["):
            blocks.append((stripped.strip("[]"), [line]))
        elif open_quote is None and stripped.startswith("[["):
            blocks.append(("", [line]))
        else:
            blocks[-1][1].append(line)
        if open_quote is not None:
            if line.count(open_quote) % 2 == 1:
                open_quote = None
        else:
            opened = [(line.find(q), q) for q in ('"""', "'''") if line.count(q) % 2 == 1]
            open_quote = min(opened)[1] if opened else None
    body = [f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
    kept = [b for b in blocks if b[0] not in (section, "torch")]
    torch = [b for b in blocks if b[0] == "torch" and section != "torch"]
    parts = ["\n".join(lines).strip("\n") for _, lines in kept + [(section, body)] + torch]
    path.write_text("\n\n".join(p for p in parts if p) + "\n")
