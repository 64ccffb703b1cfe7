"""`mkbench tasks import`: task files in KernelBench's format (as the paper publishes them)
become mkbench tasks.

A task file is Python: `class Model(nn.Module)`, `get_inputs()` and `get_init_inputs()`.
PATH may be such a file, a folder of them, or a folder of category folders (the category is the
folder's name). A file's category is the folder it is in when that folder is one of the
paper's categories (`Activation/Celu.py`), else "Imported". Tasks are written into the data
folder, `MKBENCH_HOME/tasks/imported/<category>/<name>.toml` (where `mkbench tasks` finds them
beside the built-in suites), with suite = "imported" and source = "<file> sha256:<hex>".

A task file is code from outside. Each one runs in a child process (kernelbench_child.py) in
the jail candidates run in (sandbox.py): no network, nothing of the machine writable but the
child's own folder, nothing readable but a copy of the file, the Python installation and
mkbench's package; a time limit kills the whole jail. Nothing of it runs in mkbench's own
process. The child seeds torch, builds and runs the module, and exports it to ONNX at opset 20.
Here the export becomes the task's graph (kernelbench_graph.py: its nodes, the op a kernel
replaces, and exactly what is normalised), onnx's ReferenceEvaluator must agree with PyTorch on
the file's own inputs within the task's tolerance, and then the spec is written.

What the spec records, and how honestly:
- the nodes, their attributes and the shapes are the export's; the module source is kept as
  [torch] module, the problem as the LLM sees it;
- weights and other constant inputs of the nodes are the module's own (seeded): at most
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

from .. import sandbox
from .. import settings as settings_module
from . import data_tasks_dir
from . import draw as draw_module
from .kernelbench_graph import OPSET, NotImported, task_graph
from .spec import DTYPES, load_task

SMALL_CONSTANT = 16  # elements: written as `value`; larger constants go to data files
DEFAULT_TIMEOUT = 120.0
DEFAULT_CATEGORY = "Imported"
# The paper's categories (/work/shared/PAPER-TASKS.md): a file's folder named so is its category.
PAPER_CATEGORIES = ("Unary", "Binary", "Trigonometry", "Activation", "Normalization", "Pooling", "Convolution",
                    "Matrix", "Reduction", "Tensor", "Logic", "Others")
TORCH_MISSING = "torch is not installed: pip install 'mkbench[torch]' (CPU build) to import task files"
CHILD_TORCH_MISSING = 3  # kernelbench_child's exit status when torch cannot be imported
CHILD_FILES = ("result.json", "model.onnx", "inputs.npz", "outputs.npz")  # what the child writes, and we read

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
            sources.append(Source(path, _folder_category(path), path.name))
        elif path.is_dir():
            sources += [Source(f, _folder_category(f), f.name) for f in _python_files(path)]
            for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
                sources += [Source(f, folder.name, f"{folder.name}/{f.name}") for f in _python_files(folder)]
        else:
            errors.append(ImportResult(path, False, error="no such file or folder"))
    return sources, errors


def _folder_category(file: Path) -> str:
    """The folder a file is in, when it is one of the paper's categories; else "Imported"."""
    folder = file.resolve().parent.name
    return folder if folder in PAPER_CATEGORIES else DEFAULT_CATEGORY


def _python_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.glob("*.py") if f.is_file() and not f.name.startswith("_"))


def _identifier(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", text)
    return cleaned if cleaned and not cleaned.startswith("-") else f"_{cleaned}"


# ------------------------------------------------------------------ importing
def imported_dir(settings: settings_module.Settings) -> Path:
    """Where imported tasks are written by default: the data folder's tasks/imported."""
    return data_tasks_dir(settings) / "imported"


def import_files(paths: list[Path], settings: settings_module.Settings, out_dir: Path | None = None,
                 timeout: float = DEFAULT_TIMEOUT, workers: int = 1) -> list[ImportResult]:
    """Import every task file under the paths into <out_dir>/<category>/<name>.toml (default:
    imported_dir(settings)), each in the jail unless settings.sandbox is off.

    One result per file, in order; a bad file never stops the others. Raises TorchMissing
    when torch is not installed, sandbox.SandboxUnavailable when the jail cannot start."""
    if importlib.util.find_spec("torch") is None:
        raise TorchMissing(TORCH_MISSING)
    if settings.sandbox and (problem := sandbox.unavailable()):
        raise sandbox.SandboxUnavailable(problem)
    out_dir = Path(out_dir) if out_dir is not None else imported_dir(settings)
    sources, errors = find_sources(paths)
    seen: dict[tuple[str, str], Path] = {}

    def one(source: Source) -> ImportResult:
        key = (_identifier(source.category), _identifier(source.path.stem))
        if seen[key] != source.path:
            return ImportResult(source.path, False, error=f"task {key[0]}/{key[1]} is already imported from {seen[key]}")
        return import_file(source, out_dir, settings, timeout)

    for source in sources:
        seen.setdefault((_identifier(source.category), _identifier(source.path.stem)), source.path)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return errors + list(pool.map(one, sources))


def import_file(source: Source, out_dir: Path, settings: settings_module.Settings,
                timeout: float = DEFAULT_TIMEOUT) -> ImportResult:
    """Import one file (see the module's docstring); raises TorchMissing."""
    name, category = _identifier(source.path.stem), _identifier(source.category)
    try:
        text = source.path.read_bytes()
    except OSError as error:
        return ImportResult(source.path, False, error=f"cannot read it: {error.strerror}")
    with tempfile.TemporaryDirectory(prefix="mkbench-import-") as tmp:
        work = Path(tmp)
        try:
            result = run_child(source.path, work, timeout, settings)
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


def run_child(path: Path, work: Path, timeout: float, settings: settings_module.Settings) -> dict:
    """Run kernelbench_child on the file in the jail, with a time limit; its checked result.json.

    The child reads a copy of the file (work/task/) and writes work/child/; the jail's user may
    not be able to read the file's own folder (a private temporary folder, a home)."""
    staged = work / "task"
    staged.mkdir(mode=0o755)
    os.chmod(staged, 0o755)  # whatever the umask: the jail's unprivileged user reads it
    shutil.copyfile(path, staged / path.name)
    os.chmod(staged / path.name, 0o644)
    out = sandbox.give(work / "child")
    command = [sys.executable, "-m", "mkbench.tasks.kernelbench_child", str(staged / path.name), str(out)]
    wrapped = sandbox.wrap(command, child_jail(staged, out), cwd=out, enabled=settings.sandbox)
    log = work / "child.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(wrapped.argv, env=wrapped.env, stdout=subprocess.DEVNULL, stderr=stderr,
                                   stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(out))
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # bwrap and, with it (--die-with-parent), the whole jail
            process.wait()
            raise NotImported(f"module did not return within {timeout:g} s") from None
    if process.returncode == CHILD_TORCH_MISSING:
        raise TorchMissing(TORCH_MISSING)
    for made in (out / name for name in CHILD_FILES):  # read as root from here on: a link could point anywhere
        if made.is_symlink() or (made.exists() and not made.is_file()):
            raise NotImported(f"the import process left {made.name} as something other than a plain file")
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


def child_jail(task_folder: Path, out: Path) -> sandbox.Jail:
    """The jail of an import's child: it writes its own folder only and reads the task file's
    folder, the Python installation (the prefixes, the site-packages folders and the folders
    torch, numpy, onnx and onnxscript come from) and mkbench's package; no network. Its
    PYTHONPATH puts mkbench and those packages first, as they are found here."""
    import mkbench

    package = Path(mkbench.__file__).resolve().parent
    homes = []
    for name in ("torch", "numpy", "onnx", "onnxscript"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            homes.append(Path(spec.origin).resolve().parents[1])  # <home>/<name>/__init__.py
    site_folders = [Path(p) for p in sys.path if p and Path(p).name in ("site-packages", "dist-packages")]
    search = list(dict.fromkeys(str(p) for p in [package.parent, *homes]))
    readable = [task_folder, Path(sys.prefix), Path(sys.base_prefix), *site_folders, *homes, package]
    return sandbox.Jail(writable=(str(out),), readable=_outermost(readable),
                        env=(("PYTHONPATH", os.pathsep.join(search)),))


def _outermost(paths: list[Path]) -> tuple[str, ...]:
    """The existing folders among paths, without those inside another (one bind each)."""
    folders = sorted({p.resolve() for p in paths if p.is_dir()}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for folder in folders:
        if not any(folder.is_relative_to(k) for k in kept):
            kept.append(folder)
    return tuple(str(k) for k in kept)


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

    model = onnx.load(str(child / "model.onnx"))
    inputs = np.load(child / "inputs.npz", allow_pickle=False)
    outputs = np.load(child / "outputs.npz", allow_pickle=False)
    initialised = {i.name for i in model.graph.initializer}
    exported = [i.name for i in model.graph.input if i.name not in initialised]
    if unused := [n for n in result["inputs"] if n not in exported]:
        raise NotImported(f"forward's input {', '.join(unused)} is not used by the export")
    if exported != result["inputs"]:
        raise NotImported(f"the export's inputs {exported} are not forward's {result['inputs']}")
    if [o.name for o in model.graph.output] != result["outputs"]:
        raise NotImported(f"the export's outputs {[o.name for o in model.graph.output]} are not forward's")
    graph = task_graph(model, {n: inputs[n] for n in result["inputs"]}, result["inputs"], result["outputs"])

    data: dict[str, bytes] = {}
    constant_specs = [_tensor_entry(n, value, name, data, drawn=None) for n, value in graph.constants]
    input_specs = [_tensor_entry(n, inputs[n], name, data, drawn=d) for n, d in zip(result["inputs"], result["draws"])]
    output_specs = [{"name": n, "shape": list(outputs[n].shape), "dtype": str(outputs[n].dtype)} for n in result["outputs"]]
    op = graph.operator
    exact = op in EXACT or all(o["dtype"] in ("int64", "int32", "bool", "uint8", "int8") for o in output_specs)
    tolerance = {"atol": 0.0, "rtol": 0.0} if exact else {"atol": 1e-4, "rtol": 1e-4}
    if op in ACCUMULATING:
        tolerance["scale_atol_by_output"] = True

    lines = [f"# mkbench task {category}/{name}, imported from a KernelBench-format file by `mkbench tasks import`.",
             "# Inputs with a `draw` were read from get_inputs() and replayed exactly with torch; inputs and",
             "# constants with a `file` are the file's own tensors (seed 0), stored beside this spec."]
    lines += [f"# Normalised (see mkbench/tasks/kernelbench_graph.py): {line}." for line in graph.normalised]
    lines += [f"name = {_str(name)}", 'suite = "imported"', f"category = {_str(category)}", f"operator = {_str(op)}",
              f"opset = {OPSET}", f"seed = {result['seed']}",
              f"source = {_str(source.label + ' sha256:' + hashlib.sha256(text).hexdigest())}",
              f"published_graph = {_str(graph.published)}",
              f"init_args = {_str(result['init_args'])}", f"exporter = {_str(result['exporter'])}"]
    if graph.decomposed:
        lines.append("decomposed = true  # the export has no node of this op: the exporter wrote it as others")
    lines += ["", "[tolerance]"] + [f"{k} = {_value(v)}" for k, v in tolerance.items()]
    for table, entries in (("inputs", input_specs), ("constants", constant_specs)):
        for entry in entries:
            lines += ["", f"[[{table}]]"] + [f"{k} = {_value(v)}" for k, v in entry.items()]
    for node in graph.nodes:
        lines += ["", "[[nodes]]", f"op = {_str(node.op)}", f"inputs = {_value(list(node.inputs))}",
                  f"outputs = {_value(list(node.outputs))}",
                  "attributes = { " + ", ".join(f"{k} = {_value(v)}" for k, v in node.attributes) + " }"]
    for entry in output_specs:
        lines += ["", "[[outputs]]"] + [f"{k} = {_value(v)}" for k, v in entry.items()]
    lines += ["", "[torch]", f"module = {_module_text(text)}"]
    return "\n".join(lines) + "\n", data, op


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
