"""Injecting a candidate CPU execution or geometry computer into MNN without touching the tree.

A CPU-execution candidate is one self-contained C++ file that defines its own Execution and Creator
classes and registers them with `REGISTER_CPU_OP_CREATOR(Name, OpType_X)`; a geometry candidate
defines a GeometryComputer and registers it with `REGISTER_GEOMETRY(Name, function)`. A candidate
build (measured on 2 busy cores: 6 s host, 8 s arm64; about 1 s on a ccache hit) compiles only that
file, with MNN's own compile line for CPUOPRegister.cpp (so gnu++11, -fno-rtti, -fno-exceptions,
-O3, MNN's defines; `#include "CPUUnary.hpp"` works as in the tree), and links it with objects
made once per native build:
  runner.o                        mnn/runner/runner.cpp
  register.o                      a BUILD COPY of CPUOPRegister.cpp whose registerCPUOps() is
                                  renamed and followed by mnn/runner/mkbench_dispatch.inc
  geometry.o                      a BUILD COPY of GeometryOPRegister.cpp whose registerGeometryOps()
                                  is renamed and followed by mnn/runner/mkbench_geometry.inc (linked
                                  with --wrap of GeometryComputer::registerGeometryComputer)
  info.o                          per build: the task's targets, the candidate's vtable symbols,
                                  and a function that calls the candidate's registrations
  candidate.o                     the candidate, its registration functions renamed with objcopy
  libMNN_noreg.a                  MNN minus its own CPUOPRegister object
The dispatcher keeps the native creator of every op type reachable and sends only the targets'
(op type, sub-type) with fp32 inputs to the candidate. The geometry recorder wraps every geometry
computer, MNN's and the candidate's (registered last, so it serves its op type). Both record each
creation or geometry computation; the runner names the class from its vtable (MNN builds with
-fno-rtti, so no typeid) and says whether the candidate's object defines that class (see
mnn/runner/elf_symbols.hpp).

Delegation to native code is caught twice: at run time, a candidate-served op whose execution class
is not defined by the candidate (`class_defined_in: "native"`); at build time, `native_references`
lists the candidate's references to MNN's CPU-backend and geometry classes (constructors, vtables,
`CPUUnary::selectForFloat`, ...), native registration functions (CPU and geometry) and
`CPUBackend::onCreate`, and
source uses of CoreFunctions' kernel selectors (`MNNSelectUnaryFunctionForFloat`, ...).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .. import settings as settings_module
from . import build as build_module
from .build import REGISTER_SOURCE, RUNNER_DIR, NativeBuild, BuildLog

Target = tuple[str, "str | None"]  # (MNN op type name, sub-type name or None for every sub-type)

# Op types whose sub-type the dispatcher can read, and the flatbuffers enum that names it.
SUB_TYPE_ENUMS = {
    "UnaryOp": "UnaryOpOperation",
    "BinaryOp": "BinaryOpOperation",
    "Reduction": "ReductionType",
    "Eltwise": "EltwiseType",
    "Pooling": "PoolType",
}

# CoreFunctions members that hand out MNN's own elementwise kernels: using one is delegation.
NATIVE_SELECTORS = re.compile(r"\bMNNSelect(?:Unary|Binary)FunctionFor(?:Float|Int8)\b")

# A candidate compile that takes longer than this (runaway templates) fails the build.
CANDIDATE_COMPILE_SECONDS = 300

REGISTRATION = re.compile(r"___(\w+)__OpType_(\w+)__\(\)$")
# REGISTER_GEOMETRY(Name, function) defines MNN::___Name__function__().
GEOMETRY_REGISTRATION = re.compile(r"^(?:MNN::)?___(\w+?)__(_?\w+?)__\(\)$")

KINDS = ("cpu-execution", "geometry")


@dataclass(frozen=True)
class CandidateBuild:
    """The outcome of building one candidate; a compile error is ok=False, never an exception."""

    ok: bool
    runner: Path | None
    compiler_output: str  # the compiler's (and linker's) full output, plus mkbench's own findings
    seconds: float
    reason: str  # one line: why not ok ("" when ok)
    target: str
    targets: tuple[Target, ...]
    registrations: tuple[str, ...]  # "Name/OpType_X" per REGISTER_CPU_OP_CREATOR in the file
    candidate_classes: tuple[str, ...]  # classes with a vtable the candidate defines
    native_references: tuple[str, ...]  # evidence of delegation to MNN's own kernels (see module doc)
    directory: Path | None
    build_id: int | None  # row in the store's builds table


# ---------------------------------------------------------------- the register copy and info files


def register_copy_source(tree_root: Path) -> str:
    """CPUOPRegister.cpp with registerCPUOps renamed, followed by mkbench's dispatcher."""
    original = (tree_root / REGISTER_SOURCE).read_text()
    renamed, count = re.subn(r"\bvoid\s+registerCPUOps\s*\(\s*\)", "void mkbench_native_registerCPUOps()", original)
    if count != 1:
        raise build_module.BuildError(f"expected one registerCPUOps() in {REGISTER_SOURCE}, found {count}")
    dispatcher = (RUNNER_DIR / "mkbench_dispatch.inc").read_text()
    return (
        f"// mkbench build copy of {REGISTER_SOURCE} (MNN tree untouched): registerCPUOps renamed,\n"
        f"// mkbench's recording dispatcher appended.\n{renamed}\n{dispatcher}"
    )


def geometry_copy_source(tree_root: Path) -> str:
    """GeometryOPRegister.cpp with registerGeometryOps renamed, followed by mkbench's recorder."""
    original = (tree_root / build_module.GEOMETRY_REGISTER_SOURCE).read_text()
    renamed, count = re.subn(r"\bvoid\s+registerGeometryOps\s*\(\s*\)", "void mkbench_native_registerGeometryOps()", original)
    if count != 1:
        raise build_module.BuildError(f"expected one registerGeometryOps() in {build_module.GEOMETRY_REGISTER_SOURCE}, found {count}")
    recorder = (RUNNER_DIR / "mkbench_geometry.inc").read_text()
    return (
        f"// mkbench build copy of {build_module.GEOMETRY_REGISTER_SOURCE} (MNN tree untouched): registerGeometryOps\n"
        f"// renamed, mkbench's geometry recorder appended.\n{renamed}\n{recorder}"
    )


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def info_source(build_kind: str, targets: Sequence[Target], registration_count: int, vtables: Sequence[str],
                kernel_kind: str = "cpu-execution") -> str:
    """The per-build info file: targets, candidate vtables, and the candidate registration calls.

    A CPU-execution candidate's targets go to the CPU dispatcher and its registrations run inside
    registerCPUOps; a geometry candidate's go to the geometry recorder, after MNN's computers."""
    geometry = kernel_kind == "geometry"

    def target_array(name: str, chosen: Sequence[Target]) -> str:
        entries = [f"{{{_c_string(op)}, {_c_string(sub) if sub else 'nullptr'}}}" for op, sub in chosen]
        return f"const MkbenchTarget {name}[] = {{{', '.join(entries + ['{nullptr, nullptr}'])}}};"

    calls = " ".join(f"mkbench_candidate_register_{i}();" for i in range(registration_count))
    lines = ['#include "mkbench_dispatch.hpp"', ""]
    lines += [f'extern "C" void mkbench_candidate_register_{i}();' for i in range(registration_count)]
    lines.append('extern "C" {')
    lines.append(target_array("mkbench_targets", () if geometry else targets))
    lines.append(target_array("mkbench_geometry_targets", targets if geometry else ()))
    lines.append(f"const char* const mkbench_candidate_vtables[] = {{{', '.join([_c_string(v) for v in vtables] + ['nullptr'])}}};")
    lines.append(f"const char* const mkbench_build_kind = {_c_string(build_kind)};")
    lines.append(f"void mkbench_register_candidate() {{ {'' if geometry else calls} }}")
    lines.append(f"void mkbench_register_geometry_candidate() {{ {calls if geometry else ''} }}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _compile_generated(native: NativeBuild, text: str, path: Path, log: BuildLog, extra: Sequence[str] = ()) -> Path:
    path.write_text(text)
    output = path.with_suffix(".o")
    result = build_module.compile_cpp(native, path, output, log, extra=[f"-I{RUNNER_DIR}", *extra])
    if result.returncode != 0:
        raise build_module.BuildError(f"compiling {path.name} failed: {build_module.first_error(result)}")
    return output


def compile_register_copy(native: NativeBuild, directory: Path, log: BuildLog) -> Path:
    """Compile the recording register copy once per native build (shared by native and candidates)."""
    return _compile_generated(native, register_copy_source(native.tree), directory / "CPUOPRegister_mkbench.cpp", log)


def compile_geometry_copy(native: NativeBuild, directory: Path, log: BuildLog) -> Path:
    """Compile the recording geometry register copy once per native build (shared, like the above)."""
    symbol = build_module.geometry_register_symbol(native)
    return _compile_generated(native, geometry_copy_source(native.tree), directory / "GeometryOPRegister_mkbench.cpp", log,
                              extra=[f"-DMKBENCH_GEOMETRY_REGISTER_SYMBOL={symbol}"])


def compile_native_info(native: NativeBuild, directory: Path, log: BuildLog) -> Path:
    """The info object of the native runner: no targets, no candidate."""
    return _compile_generated(native, info_source("native", [], 0, []), directory / "info_native.cpp", log)


# ---------------------------------------------------------------- targets


def known_names(tree_root: Path, enum: str) -> set[str]:
    """The names of a flatbuffers enum in the tree's generated schema headers (OpType, ...)."""
    names: set[str] = set()
    for header in (tree_root / "schema" / "current").glob("*_generated.h"):
        names |= set(re.findall(rf"^\s*{enum}_(\w+)\s*=", header.read_text(), re.M))
    names.discard("MIN")
    names.discard("MAX")
    return names


def check_targets(targets: Iterable[Sequence], tree_root: Path) -> tuple[Target, ...]:
    """Normalise and validate task targets; raises ValueError naming the bad one."""
    normal: list[Target] = []
    op_types = known_names(tree_root, "OpType")
    for entry in targets:
        if len(entry) != 2:
            raise ValueError(f"a target is (op type, sub-type or None), got {entry!r}")
        op, sub = entry[0], entry[1]
        op = op.removeprefix("OpType_")
        if op not in op_types:
            raise ValueError(f"unknown MNN op type {op!r} in the targets")
        if sub is not None:
            enum = SUB_TYPE_ENUMS.get(op)
            if enum is None:
                raise ValueError(f"op type {op} has no sub-type the dispatcher can read; use ({op!r}, None)")
            sub = sub.removeprefix(f"{enum}_")
            if sub not in known_names(tree_root, enum):
                raise ValueError(f"unknown {enum} {sub!r} in the targets")
        normal.append((op, sub))
    if not normal:
        raise ValueError("a candidate build needs at least one target")
    return tuple(normal)


# ---------------------------------------------------------------- symbols


def _tool(native: NativeBuild, name: str) -> str:
    return build_module.binutil(native.compile_command, name)


@dataclass(frozen=True)
class _Symbol:
    kind: str  # nm letter
    mangled: str
    demangled: str


def _symbols(native: NativeBuild, path: Path, log: BuildLog, extra: Sequence[str] = ()) -> list[tuple[str, _Symbol]]:
    """(archive member or "", symbol) for every symbol nm lists."""
    listing = subprocess.run([_tool(native, "nm"), "-A", "-P", *extra, str(path)], capture_output=True, text=True)
    rows: list[tuple[str, str, str]] = []
    for line in listing.stdout.splitlines():
        head, _, rest = line.partition(": ")
        parts = rest.split()
        if len(parts) < 2:
            continue
        member = head[head.find("[") + 1 : -1] if head.endswith("]") else (head.split(":")[1] if ":" in head else "")
        rows.append((member, parts[0], parts[1]))
    demangled = _demangle(native, [r[1] for r in rows])
    return [(m, _Symbol(k, n, demangled.get(n, n))) for m, n, k in rows]


def _demangle(native: NativeBuild, names: Sequence[str]) -> dict[str, str]:
    if not names:
        return {}
    unique = sorted(set(names))
    out = subprocess.run([_tool(native, "c++filt")], input="\n".join(unique), capture_output=True, text=True)
    lines = out.stdout.splitlines()
    return dict(zip(unique, lines, strict=True)) if len(lines) == len(unique) else {n: n for n in unique}


def native_execution_classes(native: NativeBuild) -> frozenset[str]:
    """Classes with a vtable defined in MNN's CPU-backend and geometry objects (executions,
    creators, geometry computers), cached."""
    cache = native.directory / "native_classes.txt"
    if cache.is_file():
        return frozenset(cache.read_text().split("\n")) - {""}
    kernel_files = {p.name for folder in ("source/backend/cpu", "source/geometry") for p in (native.tree / folder).rglob("*.cpp")}
    # The backend and the geometry machinery themselves: candidates use them legitimately.
    infrastructure = {"CPUBackend.cpp", "CPURuntime.cpp", "GeometryComputer.cpp", "GeometryComputerUtils.cpp",
                      "ConvertUtils.cpp", "GeometryConvUtils.cpp"}
    classes = set()
    log = BuildLog([])
    for member, symbol in _symbols(native, native.library_noreg, log, ["--defined-only"]):
        source = member.removesuffix(".o")
        if source in kernel_files and source not in infrastructure and symbol.demangled.startswith("vtable for "):
            classes.add(symbol.demangled.removeprefix("vtable for "))
    staging = cache.with_suffix(".partial")
    staging.write_text("\n".join(sorted(classes)) + "\n")
    staging.replace(cache)
    return frozenset(classes)


def native_references(native: NativeBuild, undefined: Iterable[str], source: str) -> tuple[str, ...]:
    """What in the candidate points at MNN's own kernels (see the module docstring)."""
    classes = native_execution_classes(native)
    found: list[str] = []
    for name in sorted(set(undefined)):
        owner = name.removeprefix("vtable for ").split("(")[0]
        if any(owner == c or owner.startswith(c + "::") for c in classes):
            found.append(name)
        elif REGISTRATION.search(name) or GEOMETRY_REGISTRATION.search(name) or name.startswith("MNN::CPUBackend::onCreate("):
            found.append(name)
    found += sorted({f"{m} (source)" for m in NATIVE_SELECTORS.findall(_code_only(source))})
    return tuple(found)


_COMMENT_OR_STRING = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"', re.S)


def _code_only(source: str) -> str:
    """The source without comments and string literals (a mention is not a use)."""
    return _COMMENT_OR_STRING.sub(" ", source)


# ---------------------------------------------------------------- the candidate build


def _worker_directory(native: NativeBuild, settings: settings_module.Settings, worker: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", worker):
        raise ValueError(f"worker names are [A-Za-z0-9_.-]+, got {worker!r}")
    return settings.builds_dir / "candidates" / f"{native.target}-{native.key}-{build_module.runner_key()}" / worker


def _defines_class(source: str, qualified: str) -> bool:
    name = qualified.split("::")[-1]
    return re.search(rf"\b(?:class|struct)\s+{re.escape(name)}\b[^;{{]*\{{", source) is not None


def build_candidate(
    source: str,
    targets: Iterable[Sequence],
    target: str = "host",
    worker: str = "0",
    settings: settings_module.Settings | None = None,
    kind: str = "cpu-execution",
) -> CandidateBuild:
    """Build a runner with this candidate serving the targets; ok=False (with the output) on any failure.

    kind "cpu-execution": the file registers CPU creators (REGISTER_CPU_OP_CREATOR); kind
    "geometry": it registers geometry computers (REGISTER_GEOMETRY) for the targets' op types.
    Raises only for problems of the harness, not of the candidate: no MNN tree, an unknown target.
    Builds for different workers never share files; one worker builds one candidate at a time.
    """
    if kind not in KINDS:
        raise ValueError(f"a runner candidate is one of {', '.join(KINDS)}, not {kind!r}")
    s = settings or settings_module.load()
    native = build_module.build_native(target, s)
    checked = check_targets(targets, native.tree)
    if kind == "geometry" and any(sub for _, sub in checked):
        raise ValueError("a geometry computer serves a whole op type: geometry targets have no sub-type")
    directory = _worker_directory(native, s, worker)
    with build_module.locked(directory.with_name(directory.name + ".lock")):
        return _build_candidate_locked(source, checked, native, directory, s, kind)


def _registrations(symbols: Sequence[_Symbol], kind: str) -> list[tuple[_Symbol, str]]:
    """(symbol, "Name/what it registers") for each registration function the candidate defines."""
    found = []
    for sym in symbols:
        if sym.kind not in "Tt":
            continue
        cpu = REGISTRATION.search(sym.demangled)
        if kind == "cpu-execution" and cpu:
            found.append((sym, f"{cpu.group(1)}/OpType_{cpu.group(2)}"))
        elif kind == "geometry" and not cpu:
            geometry = GEOMETRY_REGISTRATION.search(sym.demangled)
            if geometry:
                found.append((sym, f"{geometry.group(1)}/{geometry.group(2)}"))
    return found


def _build_candidate_locked(
    source: str, checked: tuple[Target, ...], native: NativeBuild, directory: Path, s: settings_module.Settings,
    kind: str = "cpu-execution",
) -> CandidateBuild:
    target = native.target
    started = time.monotonic()
    log = BuildLog([])
    cache_key = hashlib.sha256(f"{native.key}\n{kind}\n{checked}\n{source}".encode()).hexdigest()[:16]

    def finish(ok: bool, reason: str, output: str, runner: Path | None = None, registrations=(), classes=(), references=()) -> CandidateBuild:
        seconds = time.monotonic() - started
        (directory / "build.log").write_text(log.text())
        build_id = build_module.record_build(s, target, "candidate", cache_key, ok, seconds, log.text())
        return CandidateBuild(
            ok=ok, runner=runner, compiler_output=output, seconds=seconds, reason=reason, target=target,
            targets=checked, registrations=tuple(registrations), candidate_classes=tuple(classes),
            native_references=tuple(references), directory=directory, build_id=build_id,
        )

    # A fresh folder per build: a failed build never leaves an older runner behind.
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    candidate_cpp = directory / "candidate.cpp"
    candidate_cpp.write_text(source)

    compiled = build_module.compile_cpp(
        native, Path("candidate.cpp"), Path("candidate.o"), log,
        extra=[f"-iquote{native.tree / 'source' / 'backend' / 'cpu'}"], cwd=directory, timeout=CANDIDATE_COMPILE_SECONDS,
    )
    output = (compiled.stdout + compiled.stderr).rstrip()
    if compiled.returncode != 0:
        return finish(False, f"compile error: {build_module.first_error(compiled)}", output)

    symbols = [sym for _, sym in _symbols(native, directory / "candidate.o", log)]
    registrations = _registrations(symbols, kind)
    names = [name for _, name in registrations]
    vtables = sorted({sym.mangled for sym in symbols if sym.kind not in "Uuw" and sym.demangled.startswith("vtable for ")})
    classes = sorted({_demangled_class(sym) for sym in symbols if sym.kind not in "Uuw" and sym.demangled.startswith("vtable for ")})
    references = native_references(native, (sym.demangled for sym in symbols if sym.kind == "U"), source)

    def refuse(reason: str) -> CandidateBuild:
        return finish(False, reason, f"{output}\nmkbench: {reason}".lstrip(), registrations=names, classes=classes, references=references)

    if not registrations and kind == "geometry":
        return refuse("the candidate registers no geometry computer: use REGISTER_GEOMETRY(YourName, _create) with a "
                      "_create() that calls GeometryComputer::registerGeometryComputer")
    if not registrations:
        return refuse("the candidate registers no creator: use REGISTER_CPU_OP_CREATOR(YourCreator, OpType_X)")
    target_ops = {op for op, _ in checked}
    # The op types a geometry computer registers are known only when it runs: the runner checks them.
    registered_ops = [name.split("/OpType_")[1] for name in names] if kind == "cpu-execution" else []
    stray = sorted(set(registered_ops) - target_ops)
    if stray:
        return refuse(f"the candidate registers OpType_{stray[0]}, but the task targets {', '.join('OpType_' + t for t in sorted(target_ops))}")
    missing = sorted(target_ops - set(registered_ops)) if kind == "cpu-execution" else []
    if missing:
        return refuse(f"the candidate registers no creator for OpType_{missing[0]}")
    duplicated = sorted({op for op in registered_ops if registered_ops.count(op) > 1})
    if duplicated:
        return refuse(f"the candidate registers OpType_{duplicated[0]} twice")
    clashes = sorted(c for c in set(classes) & native_execution_classes(native) if _defines_class(source, c))
    if clashes:
        return refuse(f"the candidate defines class {clashes[0]}, which MNN also defines: give your classes their own names")

    renames = [f"--redefine-sym={sym.mangled}=mkbench_candidate_register_{i}" for i, (sym, _) in enumerate(registrations)]
    objcopy = log.run([_tool(native, "objcopy"), *renames, "candidate.o", "candidate_injected.o"], cwd=directory)
    if objcopy.returncode != 0:
        return refuse(f"objcopy failed: {(objcopy.stderr.strip().splitlines() or ['?'])[-1]}")

    info_cpp = directory / "info.cpp"
    info_cpp.write_text(info_source("candidate", checked, len(registrations), vtables, kind))
    info = build_module.compile_cpp(native, info_cpp, directory / "info.o", log, extra=[f"-I{RUNNER_DIR}"])
    if info.returncode != 0:  # our generated file: a harness bug, but report it like any failure
        return refuse(f"compiling the info file failed: {build_module.first_error(info)}")

    runner = directory / "runner"
    objects = [*native.runner_objects, directory / "info.o", directory / "candidate_injected.o"]
    linked = build_module.link_runner(native, objects, runner, log)
    if linked.returncode != 0:
        link_output = (linked.stdout + linked.stderr).rstrip()
        return finish(False, f"link error: {build_module.first_error(linked)}", f"{output}\n{link_output}".strip(),
                      registrations=names, classes=classes, references=references)
    return finish(True, "", output, runner=runner, registrations=names, classes=classes, references=references)


def _demangled_class(symbol: _Symbol) -> str:
    return symbol.demangled.removeprefix("vtable for ")
