"""The unit-test loop: the model's scaffolded functions compiled alone and run on the task's own
inputs against the task's reference, before the MNN judge sees them.

    tests = unit_test.for_task(task, scaffold, settings)   # UnitTests, or a str saying why there are none
    outcome = tests.run(code, target, folder)               # Outcome: passed, or where it failed and how

Why: the judge builds the kernel into MNN, converts, runs every correctness set and, once it is
right, times it; a wrong function costs all of that and comes back as one line ("1523 of 4096
values off"). Here the functions are compiled with the scaffold's own head (the standard headers
and SIMD intrinsics, nothing of MNN: well under a second), called by a generated main() on the
task's correctness draws, and the first differing elements come back with what they were computed
from ("y[3]: x = -0.25 -> expected 0.7788, got 0.2212"), which a small model can act on.

What each scaffold frame is tested on (CPU executions that serve one op with one function):
elementwise unary and binary functions on a sample of every correctness set's values (the ends,
evenly spread ones and the extremes; a count that leaves a SIMD tail); reductions and softmax on
each correctness set whole, called row by row as the scaffold calls them; the generic frame on
the task's own inputs and outputs (its shapes cannot shrink: weights, constants). A composite's
Express function is compiled with the converter's compile line and linked alone against the
pinned host MNN library: the program makes the node's inputs as variables (graph inputs as
_Input, constants as _Const), calls the function and reads the variable it returns, computed by
MNN's CPU backend (a transform runs at conversion time, on the host, whatever the device).
Geometry kernels, and scaffolds with several functions (the reference shows only their combined
result), have none: for those the judge is the test.

The unit test never gives an attempt its verdict: a kernel that fails it goes back to the model,
and one the attempt ends with is judged (agents/attempt.py). Its compile and run happen in the
candidate jail (sandbox.py), for the device's target (arm64 under qemu-user here).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ... import sandbox
from ... import settings as settings_module
from ...tasks import compare
from ...tasks.spec import Task
from .fixits import CANDIDATE_FILE

# The judge's C++ dialect (MNN's compile line for the candidate: gnu++11, no RTTI, no exceptions),
# so what fails to compile here fails there too; -O2 rather than -O3 only to keep it quick.
# The compiler's messages as the judge's build gives them (file candidate.cpp, parseable fix-its), so
# the Error Extractor and MoKA's fix-its read them alike.
FLAGS = ("-std=gnu++11", "-O2", "-fno-rtti", "-fno-exceptions", "-fdiagnostics-color=never", "-fdiagnostics-parseable-fixits")
COMPILERS = {"host": ("g++", ()), "arm64": ("aarch64-linux-gnu-g++", ("-static",))}
RUN_SECONDS = 10  # the task's full-size inputs (a convolution) run in well under a second
COMPILE_SECONDS = 60
SHOWN = 4  # differing elements shown to the model
SAMPLE = 40  # values of each correctness set an elementwise function is tested on (about)


class UnitTestUnavailable(RuntimeError):
    """The unit test cannot run here (a fault of the harness, not of the model's code): the judge is the test."""


@dataclass(frozen=True)
class Buffer:
    """One array of the generated main(): an input (its values), an output (the expected values)
    or a scratch output (values None, `count` long)."""

    name: str  # the C++ identifier
    ctype: str  # float | int32_t
    values: np.ndarray | None
    output: bool
    count: int = 0

    @property
    def size(self) -> int:
        return int(self.values.size) if self.values is not None else self.count

    @property
    def dtype(self):
        return np.float32 if self.ctype == "float" else np.int32

    @classmethod
    def of(cls, name: str, array, output: bool) -> "Buffer":
        """An input, or an output's expected values, as the test program holds it: integers and
        booleans as int32_t (as MNN holds them), the rest as float."""
        array = np.asarray(array)
        ctype = "int32_t" if array.dtype.kind in "biu" else "float"
        return cls(name, ctype, array.reshape(-1).astype(np.int32 if ctype == "int32_t" else np.float32), output)


@dataclass(frozen=True)
class Check:
    """One run of the functions: the buffers, the calls, and what each output element came from."""

    label: str  # the inputs, for the model: "101 values of check0, check1 and edge"
    buffers: tuple[Buffer, ...]
    body: str  # C++ statements that call the functions (mkuser::...)
    explain: Callable[[str, int], str]  # (output, flat index) -> "y[3]: x = -0.25"


@dataclass(frozen=True)
class Outcome:
    passed: bool
    stage: str  # passed | compile | crash | timeout | shape | values
    message: str  # one line
    details: str  # the compiler's output, or the first differing elements
    seconds: float


@dataclass(frozen=True)
class UnitTests:
    task: str
    head: str  # the scaffold's file up to the model's code (no MNN)
    checks: tuple[Check, ...]  # one program (the same buffers and calls), run once per check's data
    tolerance: object  # spec.Tolerance
    sandboxed: bool = True
    close: str = "}  // namespace mkuser"  # what ends the head's namespaces after the model's code
    settings: object = None  # composites: the settings their MNN builds are found with

    def source(self, code: str) -> str:
        """The test program: the scaffold's head, the model's code, a main() that calls it."""
        lines = [self.head + code.strip("\n"), "", self.close, "", _IO, "int main() {"]
        check = self.checks[0]
        for k, buffer in enumerate(check.buffers):
            if buffer.output:
                lines.append(f"    {buffer.ctype}* {buffer.name} = static_cast<{buffer.ctype}*>("
                             f"mkt_blank({buffer.size}, sizeof({buffer.ctype}), {1 if buffer.ctype == 'float' else 0}));")
            else:
                lines.append(f"    const {buffer.ctype}* {buffer.name} = static_cast<const {buffer.ctype}*>("
                             f"mkt_read(\"b{k}.bin\", {buffer.size} * sizeof({buffer.ctype})));")
        lines += [f"    {statement}" for statement in check.body.splitlines()]
        for k, buffer in enumerate(check.buffers):
            if buffer.output and buffer.values is not None:
                lines.append(f"    mkt_write(\"b{k}.bin\", {buffer.name}, {buffer.size} * sizeof({buffer.ctype}));")
        lines += ["    return 0;", "}", ""]
        return "\n".join(lines)

    def run(self, code: str, target: str, folder: Path) -> Outcome:
        """Compile and run the model's functions in `folder` (made fresh, removed after)."""
        started = time.monotonic()
        shutil.rmtree(folder, ignore_errors=True)
        sandbox.give(folder)
        try:
            return self._run(code, target, folder, started)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _run(self, code: str, target: str, folder: Path, started: float) -> Outcome:
        def outcome(stage: str, message: str, details: str = "") -> Outcome:
            return Outcome(stage == "passed", stage, message, details, round(time.monotonic() - started, 3))

        (folder / CANDIDATE_FILE).write_text(self.source(code))
        if self.settings is not None:  # a composite: MNN's compile line, the host library
            target = "host"
            log = _build_with_mnn(folder, self.settings)
        else:
            compiler, extra = COMPILERS[target]
            missing = [tool for tool in (compiler, *(("qemu-aarch64-static",) if target == "arm64" else ()))
                       if shutil.which(tool) is None]
            if missing:  # a machine without them (an NDK-only lab machine): the judge decides alone
                raise UnitTestUnavailable(f"no {', '.join(missing)} here to test {target} functions "
                                          f"(apt-get install g++-aarch64-linux-gnu qemu-user-static)")
            jail = sandbox.Jail(writable=(str(folder),), cpu_seconds=COMPILE_SECONDS)
            built = _jailed([compiler, *FLAGS, *extra, CANDIDATE_FILE, "-o", "test"], jail, folder, COMPILE_SECONDS, self.sandboxed)
            log = None if built is not None and built.returncode == 0 else (
                "compiler timed out" if built is None else built.stdout + built.stderr)
        if log is not None:
            return outcome("compile", "the functions do not compile", log.replace(str(folder) + "/", "")[-6000:])
        run_prefix = (shutil.which("qemu-aarch64-static"),) if target == "arm64" else ()
        for check in self.checks:
            failed = self._check(check, run_prefix, folder, outcome)
            if failed is not None:
                return failed
        return outcome("passed", f"unit test passed on the task's own inputs ({self.checks[0].label}"
                                 + (f", and {len(self.checks) - 1} more sets)" if len(self.checks) > 1 else ")"))

    def _check(self, check: Check, run_prefix: tuple, folder: Path, outcome) -> Outcome | None:
        """Run the program on one check's inputs: None when every output matches."""
        for k, buffer in enumerate(check.buffers):
            if not buffer.output:
                buffer.values.astype(buffer.dtype).tofile(folder / f"b{k}.bin")
        ran = _jailed([*run_prefix, "./test"], sandbox.Jail(writable=(str(folder),), cpu_seconds=RUN_SECONDS * 2), folder,
                      RUN_SECONDS, self.sandboxed)
        where = f"on the task's own inputs ({check.label})"
        if ran is None:
            return outcome("timeout", f"unit test: the functions did not return within {RUN_SECONDS} s {where}")
        if ran.returncode in _SAID:  # the test program's own finding (a composite's returned variable)
            said = (ran.stderr or "").strip().splitlines()[-1:] or ["(no message)"]
            return outcome(_SAID[ran.returncode], f"unit test: {said[0]} {where}", (ran.stderr or "")[-2000:])
        if ran.returncode != 0:
            how = _exit(ran.returncode)
            return outcome("crash", f"unit test: the functions crashed ({how}) {where}", (ran.stderr or "")[-2000:])
        for k, buffer in enumerate(check.buffers):
            if not buffer.output or buffer.values is None:
                continue
            got = np.fromfile(folder / f"b{k}.bin", dtype=buffer.dtype)
            if got.size != buffer.size:
                return outcome("crash", f"unit test: the test program wrote {got.size} values of {buffer.name}, not {buffer.size}")
            bad = compare.failing(buffer.values.reshape(-1), got, self.tolerance)
            if bad.size:
                return outcome("values", f"unit test: {bad.size} of {buffer.size} values of {buffer.name} differ {where}",
                               self._differences(check, buffer, got, bad))
        return None

    def _differences(self, check: Check, buffer: Buffer, got: np.ndarray, bad: np.ndarray) -> str:
        t = self.tolerance
        rule = "exactly" if buffer.ctype != "float" else f"within {t.atol:g} + {t.rtol:g} * |expected|"
        lines = [f"The unit test called your functions on the task's own inputs ({check.label}) and compared "
                 f"{buffer.name} with the reference ({rule}): {bad.size} of {buffer.size} values differ. The first:"]
        expected = buffer.values.reshape(-1)
        for k in bad[:SHOWN]:
            value = got[k]
            blank = self.settings is None and buffer.ctype == "float" and np.isnan(value)  # a composite's are computed
            shown = _NAN_START if blank else _number(value)
            lines.append(f"  {check.explain(buffer.name, int(k))} -> expected {_number(expected[k])}, got {shown}")
        return "\n".join(lines)


# Float outputs start as NaN in the test program, so a value never written shows; so does one
# computed from the output before it was written (a running sum kept in the output, say).
_NAN_START = "nan (outputs start as NaN here: never written, or read before written)"


def _number(value) -> str:
    return f"{float(value):.6g}" if np.issubdtype(np.asarray(value).dtype, np.floating) else str(int(value))


def _build_with_mnn(folder: Path, settings) -> str | None:
    """Compile the test program with the converter's compile line for a transform (jailed, as the
    judge compiles a composite) and link it with the host MNN library: None, or the log of what failed."""
    from ...mnn import build as mnn_build
    from ...mnn import converter_build
    from ...mnn.toolbox import BuildLog, candidate_compile_jail, compile_cpp

    kit, native = converter_build.build_converter(settings), mnn_build.build_native("host", settings, with_runner=False)
    log = BuildLog([])
    wrap = candidate_compile_jail(settings, folder, [kit.tree, kit.compile_directory, native.directory])
    compiled = compile_cpp(kit, Path(CANDIDATE_FILE), Path("test.o"), log, extra=[f"-iquote{kit.tree / converter_build.ONNXEXTRA_DIR}"],
                           cwd=folder, timeout=COMPILE_SECONDS, wrap=wrap)
    if compiled.returncode != 0:
        return compiled.stdout + compiled.stderr
    linked = log.run([*native.link_command, "-o", "test", "test.o", str(native.library), *native.link_libs], cwd=folder,
                     timeout=COMPILE_SECONDS, wrap=wrap)
    if linked.returncode != 0:  # the Express API the function may call is all in the library: ours to mend
        raise UnitTestUnavailable(f"the test program does not link: {(linked.stdout + linked.stderr).strip()[-300:]}")
    return None


# Exit codes of the test program that say what it found (stage of the outcome): 3 it could not
# read or write its files; 4-7 a composite's function returned no variable, one MNN cannot shape
# or compute, or one of another size than the task's output.
_SAID = {3: "crash", 4: "crash", 5: "crash", 6: "shape", 7: "crash"}


def _exit(code: int) -> str:
    """How a process ended, in words: the jail's pid 1 hands a signal on as 128 + its number."""
    number = -code if code < 0 else code - 128 if code > 128 else 0
    if number:
        try:
            return f"signal {signal.Signals(number).name}"
        except ValueError:
            return f"signal {number}"
    return f"exit code {code}"


def _jailed(argv: list[str], jail: sandbox.Jail, folder: Path, timeout: float, enabled: bool):
    wrapped = sandbox.wrap(argv, jail, folder, enabled=enabled)
    try:
        return subprocess.run(wrapped.argv, cwd=folder, env=wrapped.env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


# The test program's input and output: raw arrays in files beside it; outputs start as NaN (float)
# or zero, so a value the functions never wrote shows as such.
_IO = r"""#include <cstdio>
#include <cstdlib>
static void* mkt_read(const char* path, size_t bytes) {
    FILE* f = std::fopen(path, "rb");
    void* data = std::malloc(bytes ? bytes : 1);
    if (f == nullptr || data == nullptr || std::fread(data, 1, bytes, f) != bytes) { std::fprintf(stderr, "cannot read %s\n", path); std::exit(3); }
    std::fclose(f);
    return data;
}
static void* mkt_blank(size_t count, size_t size, int nan) {
    void* data = std::malloc(count * size ? count * size : 1);
    if (data == nullptr) std::exit(3);
    if (nan) { float* f = static_cast<float*>(data); for (size_t i = 0; i < count; ++i) f[i] = NAN; }
    else std::memset(data, 0, count * size);
    return data;
}
static void mkt_write(const char* path, const void* data, size_t bytes) {
    FILE* f = std::fopen(path, "wb");
    if (f == nullptr || std::fwrite(data, 1, bytes, f) != bytes) { std::fprintf(stderr, "cannot write %s\n", path); std::exit(3); }
    std::fclose(f);
}
"""


# ---------------------------------------------------------------------------- what each frame is tested on


def for_task(task: Task, scaffold, settings: settings_module.Settings) -> UnitTests | str:
    """The unit tests for a scaffolded task, or one line saying why it has none. Its inputs and
    references are the judge's seeded correctness sets, made here from the task alone (no MNN)."""
    if len(scaffold.functions) == 1 and scaffold.kinds[0] == "composite":
        return _composite_tests(task, scaffold, settings)
    if len(scaffold.functions) != 1 or scaffold.kinds[0] not in FRAMES:
        why = ("its scaffold has several functions (the reference shows only their combined result)"
               if len(scaffold.functions) != 1 else f"no unit test frames a {scaffold.kinds[0]} scaffold")
        return f"{task.name}: {why}; the judge is the test"
    node = next((n for n in task.nodes if n.op == task.operator), None)
    if node is None or (scaffold.kinds[0] != "generic" and not _alone(task, node)):
        return f"{task.name}: the task's reference does not show its op's output alone; the judge is the test"
    from ...tasks import model as task_model

    model, constants = task_model.build_model(task), task_model.constant_values(task)
    sets = []
    for set_name in task_model.correctness_sets(task):  # the judge's seeded sets, drawn the same way
        drawn = task_model.draw_inputs(task, set_name)
        references = task_model.reference_outputs(task, drawn, model)
        values = {**constants, **drawn}
        if scaffold.kinds[0] != "generic":  # the op's output, as the shape-only nodes after it pass it on
            references = {node.outputs[0]: references[task.outputs[0].name]}
        sets.append((set_name, values, references))
    frame = scaffold.kinds[0]
    if frame in ELEMENTWISE:  # a sample of every set in one call
        checks = [ELEMENTWISE[frame](node, scaffold.functions[0], sets)]
    else:  # each set whole, one run each
        checks = [FRAMES[frame](task, node, scaffold.functions[0], one) for one in sets]
    if why := next((c for c in checks if isinstance(c, str)), None):
        return f"{task.name}: {why}; the judge is the test"
    return UnitTests(task.name, scaffold.head, tuple(checks), task.tolerance, settings.sandbox)


SHAPE_ONLY = ("Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity")  # nodes that keep the values in order


def _alone(task: Task, node) -> bool:
    """Is the task's one output the op's output, passed on only by nodes that keep its values in order?"""
    rest = [n for n in task.nodes if n is not node]
    if len(task.outputs) != 1 or task.nodes[0] is not node or any(n.op not in SHAPE_ONLY for n in rest):
        return False
    flowing = node.outputs[0]
    for later in rest:
        if later.inputs[0] != flowing:
            return False
        flowing = later.outputs[0]
    return flowing == task.outputs[0].name


def _view(shape, axis: int) -> tuple[int, int, int]:
    """(outside, length, inside) around one axis of a row-major shape, as the scaffold's axisView."""
    return int(np.prod(shape[:axis])), int(shape[axis]), int(np.prod(shape[axis + 1:]))


def _at(output: str, k: int, shape) -> str:
    """Where flat element k of an output lies: "y[0, 2, 5] (flat 133)"."""
    index = [int(i) for i in np.unravel_index(k, shape)] if shape else []
    return f"{output}{index} (flat {k})"


def _sample(n: int, first: np.ndarray) -> np.ndarray:
    """Indices of an elementwise test: the ends, evenly spread ones, the first input's extremes."""
    picked = {*range(min(8, n)), *range(max(0, n - 5), n), *np.linspace(0, n - 1, min(n, SAMPLE - 15)).astype(int).tolist(),
              int(first.argmin()), int(first.argmax())}
    return np.array(sorted(picked), dtype=np.int64)


def _label(count: int, sets) -> str:
    names = [name for name, _, _ in sets]
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
    return f"{count} values of the correctness sets {joined}"


def _elementwise(node, function, sets, arity: int):
    inputs, outputs = [], []
    out_name = node.outputs[0]
    for _, values, references in sets:
        expected = np.asarray(references[out_name]).reshape(-1)
        arrays = [np.asarray(values[name], dtype=np.float32) for name in node.inputs[:arity]]
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        operands = [np.broadcast_to(a, shape).reshape(-1) for a in arrays]
        if operands[0].size != expected.size:
            return f"its op's output has {operands[0].size} values, the task's {expected.size}"
        picked = _sample(expected.size, operands[0])
        inputs.append([o[picked] for o in operands])
        outputs.append(expected.reshape(-1)[picked])
    x = [np.concatenate([chunk[i] for chunk in inputs]) for i in range(arity)]
    y = np.concatenate(outputs)
    if y.size % 4 == 0 and y.size > 1:  # leave a tail after any SIMD width
        x, y = [v[:-1] for v in x], y[:-1]
    names = ("x",) if arity == 1 else ("a", "b")
    integer = function.signature.split("(")[1].split(",")[arity].strip().startswith("int32_t")
    ctype = "int32_t" if integer else "float"
    buffers = (*(Buffer(n, "float", v, False) for n, v in zip(names, x)),
               Buffer("y", ctype, y.astype(np.int32) if integer else y.astype(np.float32), True))

    def explain(_, k: int) -> str:
        return f"y[{k}]: " + ", ".join(f"{n} = {_number(v[k])}" for n, v in zip(names, x))

    body = f"mkuser::{function.name}({', '.join(names)}, y, {y.size});"
    return Check(_label(y.size, sets), buffers, body, explain)


def _unary(node, function, sets):
    return _elementwise(node, function, sets, 1)


def _binary(node, function, sets):
    return _elementwise(node, function, sets, 2)


def _axes(node, values, rank: int) -> list[int] | None:
    """A reduction's axes as the node gives them (attribute, or its second input), counted from 0."""
    axes = node.attributes.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1]:
        axes = np.asarray(values[node.inputs[1]]).reshape(-1).tolist()
    if not axes:
        return None if node.attributes.get("noop_with_empty_axes") else list(range(rank))
    return sorted({int(a) % rank for a in axes})


def _reduction(task, node, function, one):
    name, values, references = one
    x = np.asarray(values[node.inputs[0]], dtype=np.float32)
    expected = np.asarray(references[node.outputs[0]], dtype=np.float32).reshape(-1)
    axes = _axes(node, values, x.ndim)
    if axes is None:
        return "an empty reduction (noop_with_empty_axes) calls no function"
    shape, source, statements, buffers = list(x.shape), "x", [], [Buffer("x", "float", x.reshape(-1), False)]
    for step, axis in enumerate(axes):  # MNN's geometry hands a Reduction one axis at a time
        outside, length, inside = _view(shape, axis)
        shape[axis] = 1
        last = step == len(axes) - 1
        target = "y" if last else f"t{step}"
        buffers.append(Buffer(target, "float", expected if last else None, True, outside * inside))
        statements.append(f"mkuser::{function.name}({source}, {target}, {outside}, {length}, {inside});")
        source = target
    if len(axes) == 1:
        outside, length, inside = _view(x.shape, axes[0])
        flat = x.reshape(-1)

        def explain(_, k: int) -> str:
            o, i = divmod(k, inside)
            row = [_number(flat[(o * length + a) * inside + i]) for a in range(min(length, 6))]
            return (f"y[{k}] (o = {o}, i = {i}; outside {outside}, axis {length}, inside {inside}) over x = "
                    f"[{', '.join(row)}{', ...' if length > 6 else ''}]")
    else:
        def explain(_, k: int) -> str:
            return f"y[{k}] (axes {axes} of x{list(x.shape)}, one call per axis)"
    return Check(f"{name}: x{list(x.shape)}, axes {axes}", tuple(buffers), "\n".join(statements), explain)


def _softmax(task, node, function, one):
    name, values, references = one
    x = np.asarray(values[node.inputs[0]], dtype=np.float32)
    expected = np.asarray(references[node.outputs[0]], dtype=np.float32).reshape(-1)
    axis = int(node.attributes.get("axis", -1 if task.opset >= 13 else 1)) % max(1, x.ndim)
    if task.opset >= 13:
        outside, length, inside = _view(x.shape, axis)
    else:  # before opset 13, Softmax flattens [..axis) and [axis..) into rows
        outside, length, inside = _view((*x.shape[:axis], int(np.prod(x.shape[axis:]))), axis)
    body = (f"for (int o = 0; o < {outside}; ++o) for (int i = 0; i < {inside}; ++i)\n"
            f"    mkuser::{function.name}(x + (size_t)o * {length * inside} + i, y + (size_t)o * {length * inside} + i, "
            f"{length}, {inside});")
    flat = x.reshape(-1)

    def explain(_, k: int) -> str:
        o, rest = divmod(k, length * inside)
        a, i = divmod(rest, inside)
        return f"y[{k}] (row o = {o}, i = {i}: n = {length}, stride = {inside}; a = {a}): x = {_number(flat[k])}"
    buffers = (Buffer("x", "float", flat, False), Buffer("y", "float", expected, True))
    return Check(f"{name}: x{list(x.shape)}, rows of {length} along axis {axis}", buffers, body, explain)


def _generic(task, node, function, one):
    """The generic frame's function takes the task's graph inputs, then its outputs (cpu_execution._generic)."""
    from ...kinds.scaffold import identifier

    if any(spec.dtype not in ("float32", "float16") for spec in task.inputs):
        return "the generic frame's test takes float inputs only"
    name, values, references = one
    buffers = [Buffer.of(identifier(spec.name), values[spec.name], False) for spec in task.inputs]
    buffers += [Buffer.of(identifier(spec.name), references[spec.name], True) for spec in task.outputs]
    shapes = {identifier(spec.name): np.asarray(references[spec.name]).shape for spec in task.outputs}
    body = f"mkuser::{function.name}({', '.join(b.name for b in buffers)});"

    def explain(output: str, k: int) -> str:
        return _at(output, k, shapes[output])
    shown = ", ".join(f"{spec.name}{list(spec.shape)}" for spec in task.inputs)
    return Check(f"{name}: {shown}", tuple(buffers), body, explain)


def _composite_tests(task: Task, scaffold, settings) -> UnitTests | str:
    """The Express function on each correctness set: the node's inputs as variables (its values in
    the reference run of the whole graph: what the nodes before it make of the task's inputs), its
    output (the node's, in that run) read back."""
    from ...kinds.scaffold import identifier
    from ...tasks import model as task_model

    op = task.mnn.targets[0][0]
    node = next((n for n in task.nodes if n.op == op), None)
    if node is None or len([o for o in node.outputs if o]) != 1:
        return f"{task.name}: the scaffold's function does not stand for one ONNX node with one output; the judge is the test"
    present = [name for name in node.inputs if name]  # the function's parameters, in order
    model, constants = task_model.build_model(task), task_model.constant_values(task)
    checks = []
    for set_name in task_model.correctness_sets(task):
        values = task_model.reference_values(task, task_model.draw_inputs(task, set_name), model)
        expected = np.asarray(values[node.outputs[0]])
        buffers, lines, arguments = [], ["using namespace MNN::Express;"], []
        for k, name in enumerate(present):
            buffer = Buffer.of(f"in{k}", values[name], False)
            buffers.append(buffer)
            ctype, halide = buffer.ctype, f"halide_type_of<{buffer.ctype}>()"
            dims = "{" + ", ".join(str(d) for d in np.shape(values[name])) + "}"
            variable = f"v{k}"
            if name in constants:
                lines.append(f"VARP {variable} = _Const({buffer.name}, {dims}, NCHW, {halide});")
            else:
                lines += [f"VARP {variable} = _Input({dims}, NCHW, {halide});",
                          f"::memcpy({variable}->writeMap<{ctype}>(), {buffer.name}, {buffer.size} * sizeof({ctype}));"]
            arguments.append(variable)
        buffers.append(Buffer.of("y", expected, True))
        ctype = buffers[-1].ctype
        lines += [f"VARP result = MNN::Express::mkuser::{scaffold.functions[0].name}({', '.join(arguments)});",
                  'if (result.get() == nullptr) { std::fprintf(stderr, "the function returned no variable\\n"); return 4; }',
                  "auto info = result->getInfo();",
                  'if (info == nullptr) { std::fprintf(stderr, "the returned variable has no shape: MNN cannot compute its graph\\n"); return 5; }',
                  f'if (info->size != {expected.size}) {{ std::fprintf(stderr, "the returned variable has %d values, the task\'s output {expected.size}\\n", (int)info->size); return 6; }}',
                  f"const {ctype}* computed = result->readMap<{ctype}>();",
                  'if (computed == nullptr) { std::fprintf(stderr, "MNN could not compute the returned variable\\n"); return 7; }',
                  f"::memcpy(y, computed, {expected.size} * sizeof({ctype}));"]
        def explain(output: str, k: int, shape=expected.shape) -> str:
            return _at(output, k, shape)
        shown = ", ".join(f"{identifier(n)}{list(np.asarray(values[n]).shape)}" for n in present)
        checks.append(Check(f"{set_name}: {shown}", tuple(buffers), "\n".join(lines), explain))
    return UnitTests(task.name, scaffold.head, tuple(checks), task.tolerance, settings.sandbox,
                     close="}  // namespace mkuser\n}  // namespace Express\n}  // namespace MNN", settings=settings)


ELEMENTWISE = {"unary": _unary, "binary": _binary}
FRAMES = {**ELEMENTWISE, "reduction": _reduction, "softmax": _softmax, "generic": _generic}
