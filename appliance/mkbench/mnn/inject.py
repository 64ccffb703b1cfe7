"""Injecting a candidate into a runner without touching the tree: the build of the kinds whose
code runs in the runner (CPU executions and geometry computers; kinds/ says how each registers).

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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .. import settings as settings_module
from ..filelock import locked
from . import build as build_module
from .build import NativeBuild
from .register_copies import RUNNER_DIR, Target, info_source
from . import object_rules
from .symbols import Symbol, code_only, defines_class, read_symbols
from .toolbox import CANDIDATE_COMPILE_SECONDS, BuildLog, binutil, candidate_compile_jail, compile_cpp, first_error, include_roots, record_build

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


# REGISTER_CPU_OP_CREATOR(Name, OpType_X) defines ___Name__OpType_X__().
REGISTRATION = re.compile(r"___(\w+)__OpType_(\w+)__\(\)$")
# REGISTER_GEOMETRY(Name, function) defines MNN::___Name__function__().
GEOMETRY_REGISTRATION = re.compile(r"^(?:MNN::)?___(\w+?)__(_?\w+?)__\(\)$")


@dataclass(frozen=True)
class Registration:
    """How a kind's candidate registers itself in a runner (its kind module makes one)."""

    name: str  # the kind, for the build's cache key
    geometry: bool  # targets go to the geometry recorder and registrations run after MNN's computers;
                    # otherwise to the CPU dispatcher, the registrations inside registerCPUOps
    find: Callable[[Symbol], "str | None"]  # "Name/what it registers" for a registration function, else None
    check: Callable[[list, tuple], "str | None"]  # (registrations found, targets) -> a reason to refuse them, or None


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
    forbidden: tuple[str, ...] = ()  # what its object may not hold (object_rules.py): refused before linking
    undefined: tuple[str, ...] = ()  # the functions and data it uses from elsewhere (demangled)
    flags: tuple[str, ...] = ()  # review flags found in its object (threads of its own)


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


# ---------------------------------------------------------------- delegation


def native_references(native: NativeBuild, undefined: Iterable[str], source: str) -> tuple[str, ...]:
    """What in the candidate points at MNN's own kernels (see the module docstring)."""
    classes = build_module.native_kernel_classes(native)
    found: list[str] = []
    for name in sorted(set(undefined)):
        owner = name.removeprefix("vtable for ").split("(")[0]
        if any(owner == c or owner.startswith(c + "::") for c in classes):
            found.append(name)
        elif REGISTRATION.search(name) or GEOMETRY_REGISTRATION.search(name) or name.startswith("MNN::CPUBackend::onCreate("):
            found.append(name)
    found += sorted({f"{m} (source)" for m in NATIVE_SELECTORS.findall(code_only(source))})
    return tuple(found)


def runner_universe(native: NativeBuild) -> dict[str, str]:
    """What the rest of a runner defines (object_rules.universe), cached beside its objects."""
    return object_rules.universe(native, [native.library_noreg, *native.runner_objects],
                                 native.runner_objects[0].parent / "defined-elsewhere.txt")


# ---------------------------------------------------------------- the candidate build


def _worker_directory(native: NativeBuild, settings: settings_module.Settings, worker: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", worker):
        raise ValueError(f"worker names are [A-Za-z0-9_.-]+, got {worker!r}")
    return settings.work_dir / "candidates" / f"{native.target}-{native.key}-{build_module.runner_key()}" / worker


def build_candidate(source: str, targets: Iterable[Sequence], target: str, worker: str, settings: settings_module.Settings,
                    registration: Registration) -> CandidateBuild:
    """Build a runner with this candidate serving the targets; ok=False (with the output) on any
    failure of the candidate. Raises only for problems of the harness: no MNN tree, an unknown target.
    Builds for different workers never share files; one worker builds one candidate at a time."""
    native = build_module.build_native(target, settings)
    checked = check_targets(targets, native.tree)
    directory = _worker_directory(native, settings, worker)
    with locked(directory.with_name(directory.name + ".lock")):
        return _build_candidate_locked(source, checked, native, directory, settings, registration)


def _build_candidate_locked(source: str, checked: tuple[Target, ...], native: NativeBuild, directory: Path,
                            s: settings_module.Settings, registration: Registration) -> CandidateBuild:
    target = native.target
    started = time.monotonic()
    log = BuildLog([])
    cache_key = hashlib.sha256(f"{native.key}\n{registration.name}\n{checked}\n{source}".encode()).hexdigest()[:16]

    facts: dict = {}  # what the object shows, once it is read: forbidden, undefined, flags

    def finish(ok: bool, reason: str, output: str, runner: Path | None = None, registrations=(), classes=(), references=()) -> CandidateBuild:
        seconds = time.monotonic() - started
        (directory / "build.log").write_text(log.text())
        build_id = record_build(s, target, "candidate", cache_key, ok, seconds, log.text())
        return CandidateBuild(
            ok=ok, runner=runner, compiler_output=output, seconds=seconds, reason=reason, target=target,
            targets=checked, registrations=tuple(registrations), candidate_classes=tuple(classes),
            native_references=tuple(references), directory=directory, build_id=build_id, **facts,
        )

    # A fresh folder per build: a failed build never leaves an older runner behind.
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    candidate_cpp = directory / "candidate.cpp"
    candidate_cpp.write_text(source)

    compiled = compile_cpp(
        native, Path("candidate.cpp"), Path("candidate.o"), log,
        extra=[f"-iquote{native.tree / 'source' / 'backend' / 'cpu'}", "-MD", "-MF", "candidate.d"], cwd=directory,
        timeout=CANDIDATE_COMPILE_SECONDS, wrap=candidate_compile_jail(s, directory, [native.tree, native.compile_directory]),
    )
    output = (compiled.stdout + compiled.stderr).rstrip()
    if compiled.returncode != 0:
        return finish(False, f"compile error: {first_error(compiled)}", output)
    facts["forbidden"] = tuple(object_rules.included(directory / "candidate.d", candidate_cpp, include_roots(s, native.tree)))
    if facts["forbidden"]:
        return finish(False, f"forbidden: {facts['forbidden'][0]}", f"{output}\nmkbench: forbidden: {facts['forbidden'][0]}".lstrip())

    symbols = [sym for _, sym in read_symbols(native, directory / "candidate.o")]
    registrations = [(sym, found) for sym in symbols if sym.kind in "Tt" and (found := registration.find(sym))]
    names = [name for _, name in registrations]
    vtables = sorted({sym.mangled for sym in symbols if sym.defined and sym.vtable_of})
    classes = sorted({sym.vtable_of for sym in symbols if sym.defined and sym.vtable_of})
    references = native_references(native, (sym.demangled for sym in symbols if sym.kind == "U"), source)

    def refuse(reason: str) -> CandidateBuild:
        return finish(False, reason, f"{output}\nmkbench: {reason}".lstrip(), registrations=names, classes=classes, references=references)

    facts["undefined"] = tuple(sorted({sym.demangled for sym in symbols if sym.kind == "U"}))
    facts["flags"] = tuple(f"threads: starts threads of its own ({name})" for name in object_rules.threads(symbols))
    facts["forbidden"] = tuple(object_rules.forbidden(native, directory / "candidate.o", runner_universe(native), symbols))
    if facts["forbidden"]:
        return refuse(f"forbidden: {facts['forbidden'][0]}")

    problem = registration.check(names, checked)
    if problem:
        return refuse(problem)
    clashes = sorted(c for c in set(classes) & build_module.native_kernel_classes(native) if defines_class(source, c))
    if clashes:
        return refuse(f"the candidate defines class {clashes[0]}, which MNN also defines: give your classes their own names")

    renames = [f"--redefine-sym={sym.mangled}=mkbench_candidate_register_{i}" for i, (sym, _) in enumerate(registrations)]
    objcopy = log.run([binutil(native.compile_command, "objcopy"), *renames, "candidate.o", "candidate_injected.o"], cwd=directory)
    if objcopy.returncode != 0:
        return refuse(f"objcopy failed: {(objcopy.stderr.strip().splitlines() or ['?'])[-1]}")

    info_cpp = directory / "info.cpp"
    geometry = registration.geometry
    info_cpp.write_text(info_source("candidate", () if geometry else checked, checked if geometry else (), len(registrations),
                                    vtables, registers_geometry=geometry))
    info = compile_cpp(native, info_cpp, directory / "info.o", log, extra=[f"-I{RUNNER_DIR}"])
    if info.returncode != 0:  # our generated file: a harness bug, but report it like any failure
        return refuse(f"compiling the info file failed: {first_error(info)}")

    runner = directory / "runner"
    objects = [*native.runner_objects, directory / "info.o", directory / "candidate_injected.o"]
    linked = build_module.link_runner(native, objects, runner, log)
    if linked.returncode != 0:
        link_output = (linked.stdout + linked.stderr).rstrip()
        return finish(False, f"link error: {first_error(linked)}", f"{output}\n{link_output}".strip(),
                      registrations=names, classes=classes, references=references)
    return finish(True, "", output, runner=runner, registrations=names, classes=classes, references=references)
