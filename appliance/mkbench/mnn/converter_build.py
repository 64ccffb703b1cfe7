"""MNNConvert built from the pinned MNN tree (host only), and converters with a candidate inside.

The PyPI wheel's converter package is not air-gapped (MNN-NOTES: importing `MNN.tools` pip-installs
a logging SDK and uploads usage logs), and a composite kernel is a transform *inside* the converter,
so mkbench builds MNNConvert itself from the tree it judges against, with the tree's bundled
protobuf, cached like the native builds and keyed the same way.

A composite candidate is one C++ file defining an `OnnxExtraManager::Transform` and registering it
with `OnnxExtraManager::get()->insert("<ONNX op>", ...)`, like the tree's own
tools/converter/source/optimizer/onnxextra/*.cpp. A candidate converter (2 cores: about 2 s, 0.5 s
on a ccache hit; the converter build itself took 19 min cold, 1 min from a warm ccache) compiles
only that file, with MNN's compile line for an onnxextra source, and links it the way MNN links
MNNConvert:
  MNNConverter.cpp.o              MNN's main()
  candidate_recorded.o            the candidate, its insert calls renamed to mkbench_candidate_insert
  mkbench_transform_record.o      mnn/converter/mkbench_transform_record.cpp, once per converter build:
                                  wraps what the candidate inserts, so applying it appends
                                  "candidate <op>" to $MKBENCH_SERVED_LOG (the proof it ran)
  libMNNConvertDeps.a copy        without the archive members of the native transforms for the op
                                  (else first-registered wins, and same-named classes share code)
  the rest of MNN's link line     libMNN.a, protobuf, -Wl,--whole-archive ... as MNN has it
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .. import settings as settings_module
from ..filelock import built_once, locked
from ..settings import SHIPPED
from . import build as build_module
from . import tree as tree_module
from .build import BUILD_RECIPE, MNN_OPTIONS
from . import object_rules
from .symbols import defines_class, read_symbols, vtable_classes
from .toolbox import (CANDIDATE_COMPILE_SECONDS, BuildError, BuildLog, binutil, cache_key, candidate_compile_jail, compile_cpp, first_error,
                      include_roots, record_build)
from .toolchain import Toolchain, key_args, toolchain

# The native build's options with the converter and its bundled protobuf turned on.
CONVERTER_OPTIONS: dict[str, str] = {**MNN_OPTIONS, "MNN_BUILD_CONVERTER": "ON", "MNN_BUILD_PROTOBUFFER": "ON"}

ONNXEXTRA_DIR = "tools/converter/source/optimizer/onnxextra"
# Any onnxextra file: its compile line is the one a candidate transform gets.
ONNXEXTRA_SAMPLE = f"{ONNXEXTRA_DIR}/OnnxSoftplus.cpp"
RECORDER_SOURCE = SHIPPED / "mnn" / "converter" / "mkbench_transform_record.cpp"
DEPS_ARCHIVE = "tools/converter/libMNNConvertDeps.a"

# The environment variable naming the file a candidate converter appends "candidate <op>" to.
SERVED_LOG_ENV = "MKBENCH_SERVED_LOG"


_INSERT_PREFIX = "MNN::Express::OnnxExtraManager::insert("
_INSERTED_NAME = re.compile(r'->\s*insert\s*\(\s*"([^"\\]*)"')
_COMMENT = re.compile(r'//[^\n]*|/\*.*?\*/', re.S)
_ONNX_OP = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def converter_key(tc: Toolchain, fingerprint: str) -> str:
    """Cache key of the converter build: toolchain, tree and options (like build.library_key)."""
    return cache_key(BUILD_RECIPE, "converter", tc.target, tc.name, tc.identity, key_args(tc), fingerprint, CONVERTER_OPTIONS)[:16]


@dataclass(frozen=True)
class ConverterBuild:
    """A finished converter build: the MNNConvert binary and the kit to link candidate converters.
    compile_command/compile_directory have build.NativeBuild's meaning, so build.compile_cpp serves both."""

    key: str
    directory: Path
    converter: Path  # MNNConvert as MNN built it
    converter_object: Path  # MNNConverter.cpp's object (main)
    deps_archive: Path  # libMNNConvertDeps.a (every onnxextra transform is a member)
    link_command: tuple[str, ...]  # compiler and flags before the objects
    link_tail: tuple[str, ...]  # after the objects; "{deps}" stands for the libMNNConvertDeps.a to use
    compile_command: tuple[str, ...]  # MNN's compile line for an onnxextra source, {source}/{output}
    compile_directory: Path
    recorder_object: Path  # mkbench_transform_record.cpp compiled with that line
    tree: Path
    tree_fingerprint: str


@dataclass(frozen=True)
class CandidateConverter:
    """The outcome of building one composite candidate; a compile error is ok=False, never an exception."""

    ok: bool
    converter: Path | None
    compiler_output: str  # the compiler's (and linker's) output, plus mkbench's own findings
    seconds: float
    reason: str  # one line: why not ok ("" when ok)
    onnx_op: str  # the task's ONNX op
    registered_ops: tuple[str, ...]  # the ONNX op names the file inserts, in source order
    removed_members: tuple[str, ...]  # native transforms left out of the deps archive copy
    directory: Path | None
    build_id: int | None  # row in the store's builds table
    forbidden: tuple[str, ...] = ()  # what its object may not hold (object_rules.py): refused before linking
    undefined: tuple[str, ...] = ()  # the functions and data it uses from elsewhere (demangled)
    flags: tuple[str, ...] = ()  # review flags found in its object (threads of its own)


# ---------------------------------------------------------------- the converter build


def recorder_key() -> str:
    return hashlib.sha256(RECORDER_SOURCE.read_bytes()).hexdigest()[:12]


def _load_manifest(directory: Path) -> ConverterBuild | None:
    """The build from its manifest, if complete and its recorder is the current one."""
    manifest = directory / "build.json"
    if not manifest.is_file():
        return None
    data = json.loads(manifest.read_text())
    recorder = data.get("recorders", {}).get(recorder_key())
    if recorder is None:
        return None
    return ConverterBuild(
        key=data["key"], directory=directory, converter=Path(data["converter"]),
        converter_object=Path(data["converter_object"]), deps_archive=Path(data["deps_archive"]),
        link_command=tuple(data["link_command"]), link_tail=tuple(data["link_tail"]),
        compile_command=tuple(data["compile_command"]), compile_directory=Path(data["compile_directory"]),
        recorder_object=Path(recorder), tree=Path(data["tree"]), tree_fingerprint=data["tree_fingerprint"],
    )


def build_converter(settings: settings_module.Settings) -> ConverterBuild:
    """The converter build of the configured tree: reused when cached, else built (19 min on 2
    cores, 1 min from a warm ccache) and recorded. Raises TreeError without a tree, BuildError when MNN fails to build."""
    s = settings
    tc = toolchain("host", s)
    tree = tree_module.open_tree(s)
    key = converter_key(tc, tree.fingerprint)
    directory = s.builds_dir / f"converter-host-{key}"

    def ready() -> ConverterBuild | None:
        cached = _load_manifest(directory)
        return cached if cached is not None and cached.converter.is_file() else None

    return built_once(s.builds_dir / f"converter-host-{key}.lock", ready,
                                   lambda: _build_converter_locked(s, tc, tree, key, directory))


def _build_converter_locked(s: settings_module.Settings, tc: Toolchain, tree: tree_module.Tree, key: str, directory: Path) -> ConverterBuild:
    log = BuildLog([])
    started = time.monotonic()
    manifest_path = directory / "build.json"
    data = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    built_converter = data is None
    ok = False
    try:
        if data is None:
            build_dir = directory / "mnn"
            converter = build_module.configure_and_build(tc, tree.path, build_dir, log, CONVERTER_OPTIONS, "MNNConvert", "MNNConvert")
            compile_command, compile_directory = build_module.compile_command_for(build_dir, tree.path / ONNXEXTRA_SAMPLE)
            link_command, converter_object, link_tail = _converter_link_line(build_dir, log)
            data = {
                "key": key, "toolchain": tc.name, "identity": tc.identity, "converter": str(converter),
                "converter_object": str(converter_object), "deps_archive": str(build_dir / DEPS_ARCHIVE),
                "link_command": list(link_command), "link_tail": list(link_tail),
                "compile_command": list(compile_command), "compile_directory": str(compile_directory),
                "tree": str(tree.path), "tree_fingerprint": tree.fingerprint, "options": CONVERTER_OPTIONS,
                "recorders": {}, "converter_seconds": round(time.monotonic() - started, 1),
            }
        recorder = directory / f"recorder-{recorder_key()}.o"
        kit = ConverterBuild(
            key=key, directory=directory, converter=Path(data["converter"]), converter_object=Path(data["converter_object"]),
            deps_archive=Path(data["deps_archive"]), link_command=(), link_tail=(),
            compile_command=tuple(data["compile_command"]), compile_directory=Path(data["compile_directory"]),
            recorder_object=recorder, tree=tree.path, tree_fingerprint=tree.fingerprint,
        )
        result = compile_cpp(kit, RECORDER_SOURCE, recorder, log, extra=[f"-iquote{tree.path / ONNXEXTRA_DIR}"])
        if result.returncode != 0:
            raise BuildError(f"compiling {RECORDER_SOURCE.name} failed: {first_error(result)}")
        data["recorders"][recorder_key()] = str(recorder)
        staging = manifest_path.with_suffix(".partial")
        staging.write_text(json.dumps(data, indent=1))
        staging.replace(manifest_path)
        ok = True
    finally:
        seconds = time.monotonic() - started
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ("build.log" if built_converter else f"recorder-{recorder_key()}.log")).write_text(log.text())
        record_build(s, tc.target, "converter", key, ok, seconds, log.text())
    built = _load_manifest(directory)
    assert built is not None
    return built


def _converter_link_line(build_dir: Path, log: BuildLog) -> tuple[tuple[str, ...], Path, tuple[str, ...]]:
    """MNNConvert's link line split around MNNConverter.cpp's object, with absolute paths and
    "{deps}" in place of libMNNConvertDeps.a; (compiler and flags, the object, the rest)."""
    commands = log.run(["ninja", "-C", build_dir, "-t", "commands", "MNNConvert"])
    lines = commands.stdout.strip().splitlines()
    if commands.returncode != 0 or not lines:
        raise BuildError(f"cannot read MNNConvert's link line from {build_dir}/build.ninja")
    line = lines[-1].strip().removeprefix(": &&").removesuffix("&& :").strip()
    argv = shlex.split(line)
    objects = [i for i, arg in enumerate(argv) if arg.endswith("MNNConverter.cpp.o")]
    if len(objects) != 1 or "-o" not in argv:
        raise BuildError(f"unexpected link line for MNNConvert: {line[:200]}")
    position = objects[0]
    output = argv.index("-o")
    tail: list[str] = []
    for i, arg in enumerate(argv[position + 1 :], start=position + 1):
        if i in (output, output + 1):
            continue
        if arg.endswith(Path(DEPS_ARCHIVE).name):
            tail.append("{deps}")
        elif not arg.startswith("-"):  # a library ninja names relative to the build folder
            tail.append(str(build_dir / arg))
        else:
            tail.append(arg)
    if "{deps}" not in tail:
        raise BuildError(f"libMNNConvertDeps.a is not on MNNConvert's link line: {line[:200]}")
    head = [arg for i, arg in enumerate(argv[:position]) if i not in (output, output + 1)]
    return tuple(head), build_dir / argv[position], tuple(tail)


def converter_status(settings: settings_module.Settings) -> tuple[bool, str]:
    """(built, one line) for `mkbench doctor`, without building anything."""
    s = settings
    tree = tree_module.open_tree(s)
    directory = s.builds_dir / f"converter-host-{converter_key(toolchain('host', s), tree.fingerprint)}"
    built = _load_manifest(directory)
    if built is not None and built.converter.is_file():
        return True, str(built.converter)
    return False, "not built: the first conversion builds it from the tree (about 19 min on 2 cores, 1 min from a warm ccache)"


def tree_converter(settings: settings_module.Settings) -> Path | None:
    """The tree's MNNConvert (built on first use, minutes), or None when no MNN tree is configured."""
    s = settings
    try:
        tree_module.open_tree(s)
    except tree_module.TreeError:
        return None
    return build_converter(s).converter


# ---------------------------------------------------------------- composite candidates


def native_transform_files(tree_root: Path, onnx_op: str) -> list[Path]:
    """The tree's onnxextra files that register a transform for this ONNX op."""
    found = []
    for path in sorted((tree_root / ONNXEXTRA_DIR).glob("*.cpp")):
        if onnx_op in registered_ops(path.read_text()):
            found.append(path)
    return found


def registered_ops(source: str) -> tuple[str, ...]:
    """The ONNX op names a transform file inserts with a string literal, in source order."""
    return tuple(_INSERTED_NAME.findall(_COMMENT.sub(" ", source)))


def _archive_without(build: ConverterBuild, onnx_op: str, log: BuildLog) -> tuple[Path, tuple[str, ...]]:
    """A copy of libMNNConvertDeps.a without the op's native transforms, cached per op."""
    members = tuple(f"{p.name}.o" for p in native_transform_files(build.tree, onnx_op))
    destination = build.directory / "archives" / f"libMNNConvertDeps-without-{onnx_op}.a"
    if destination.is_file():
        return destination, members
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.with_name(f"{destination.name}.{os.getpid()}.partial")
    shutil.copyfile(build.deps_archive, staging)
    ar = binutil(build.compile_command, "ar")
    listed = log.run([ar, "t", staging]).stdout.split()
    for member in members:
        if listed.count(member) != 1:
            staging.unlink()
            raise BuildError(f"expected one {member} in {build.deps_archive}, found {listed.count(member)}")
    if members and log.run([ar, "d", staging, *members]).returncode != 0:
        staging.unlink()
        raise BuildError(f"cannot remove {', '.join(members)} from a copy of {build.deps_archive}")
    staging.replace(destination)
    return destination, members


def converter_universe(build: ConverterBuild) -> dict[str, str]:
    """What the rest of a candidate converter defines (object_rules.universe), cached in its build."""
    archives = [Path(arg) for arg in build.link_tail if arg.endswith(".a") and Path(arg).is_file()]
    return object_rules.universe(build, [build.converter_object, build.recorder_object, build.deps_archive, *archives],
                                 build.directory / f"defined-elsewhere-{recorder_key()}.txt")


def native_classes(build: ConverterBuild, archive: Path) -> frozenset[str]:
    """Classes with a vtable in a deps archive (copy), cached beside it."""
    return vtable_classes(build, archive, archive.with_name(archive.name + ".classes.txt"))


def _worker_directory(build: ConverterBuild, settings: settings_module.Settings, worker: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", worker):
        raise ValueError(f"worker names are [A-Za-z0-9_.-]+, got {worker!r}")
    return settings.work_dir / "candidates" / f"converter-{build.key}" / worker


def build_composite_candidate(source: str, onnx_op: str, settings: settings_module.Settings, worker: str = "0") -> CandidateConverter:
    """Build an MNNConvert whose transform for `onnx_op` is the candidate's; ok=False (with the
    output) on any failure of the candidate. Raises only for harness problems (no tree, a bad op
    name, MNN failing to build). One worker builds one candidate at a time, in a fresh folder."""
    if not _ONNX_OP.fullmatch(onnx_op):
        raise ValueError(f"an ONNX op name is [A-Za-z][A-Za-z0-9_]*, got {onnx_op!r}")
    s = settings
    build = build_converter(s)
    directory = _worker_directory(build, s, worker)
    with locked(directory.with_name(directory.name + ".lock")):
        return _build_candidate_locked(source, onnx_op, build, directory, s)


def _build_candidate_locked(source: str, onnx_op: str, build: ConverterBuild, directory: Path, s: settings_module.Settings) -> CandidateConverter:
    started = time.monotonic()
    log = BuildLog([])
    cache_key = hashlib.sha256(f"{build.key}\n{recorder_key()}\n{onnx_op}\n{source}".encode()).hexdigest()[:16]
    names = registered_ops(source)

    facts: dict = {}  # what the object shows, once it is read: forbidden, undefined, flags

    def finish(ok: bool, reason: str, output: str, converter: Path | None = None, removed: tuple[str, ...] = ()) -> CandidateConverter:
        seconds = time.monotonic() - started
        (directory / "build.log").write_text(log.text())
        build_id = record_build(s, "host", "composite", cache_key, ok, seconds, log.text())
        return CandidateConverter(
            ok=ok, converter=converter, compiler_output=output, seconds=seconds, reason=reason, onnx_op=onnx_op,
            registered_ops=names, removed_members=removed, directory=directory, build_id=build_id, **facts,
        )

    # A fresh folder per build: a failed build never leaves an older converter behind.
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory / "candidate.cpp").write_text(source)
    compiled = compile_cpp(
        build, Path("candidate.cpp"), Path("candidate.o"), log,
        extra=[f"-iquote{build.tree / ONNXEXTRA_DIR}", "-MD", "-MF", "candidate.d"], cwd=directory,
        timeout=CANDIDATE_COMPILE_SECONDS, wrap=candidate_compile_jail(s, directory, [build.tree, build.compile_directory]),
    )
    output = (compiled.stdout + compiled.stderr).rstrip()
    if compiled.returncode != 0:
        return finish(False, f"compile error: {first_error(compiled)}", output)
    facts["forbidden"] = tuple(object_rules.included(directory / "candidate.d", directory / "candidate.cpp",
                                                     include_roots(s, build.tree)))
    if facts["forbidden"]:
        return finish(False, f"forbidden: {facts['forbidden'][0]}", f"{output}\nmkbench: forbidden: {facts['forbidden'][0]}".lstrip())

    def refuse(reason: str) -> CandidateConverter:
        return finish(False, reason, f"{output}\nmkbench: {reason}".lstrip())

    symbols = [symbol for _, symbol in read_symbols(build, directory / "candidate.o")]
    facts["undefined"] = tuple(sorted({sym.demangled for sym in symbols if sym.kind == "U"}))
    facts["flags"] = tuple(f"threads: starts threads of its own ({name})" for name in object_rules.threads(symbols))
    facts["forbidden"] = tuple(object_rules.forbidden(build, directory / "candidate.o", converter_universe(build), symbols))
    if facts["forbidden"]:
        return refuse(f"forbidden: {facts['forbidden'][0]}")
    inserts = sorted({sym.mangled for sym in symbols if sym.kind == "U" and sym.demangled.startswith(_INSERT_PREFIX)})
    how = f'define an OnnxExtraManager::Transform and register it with OnnxExtraManager::get()->insert("{onnx_op}", ...)'
    if not inserts:
        return refuse(f"the file registers no transform: {how}")
    if not names:
        return refuse(f'the file registers a transform under a name that is not a string literal: use insert("{onnx_op}", ...)')
    stray = [name for name in names if name != onnx_op]
    if stray:
        return refuse(f"the file registers a transform for ONNX op {stray[0]!r}, but the task's op is {onnx_op!r}")
    if len(names) > 1:
        return refuse(f"the file registers {onnx_op!r} {len(names)} times: register one transform")
    archive, removed = _archive_without(build, onnx_op, log)
    # Same-named classes share their inline code (COMDAT): the linker would keep only one of them.
    defined = {sym.demangled.removeprefix("vtable for ") for sym in symbols if sym.kind not in "Uu" and sym.demangled.startswith("vtable for ")}
    clashes = sorted(c for c in defined & native_classes(build, archive) if defines_class(source, c))
    if clashes:
        return refuse(f"the file defines class {clashes[0]}, which MNN's converter also defines: give your classes their own names")

    renames = [f"--redefine-sym={mangled}=mkbench_candidate_insert" for mangled in inserts]
    objcopy = log.run([binutil(build.compile_command, "objcopy"), *renames, "candidate.o", "candidate_recorded.o"], cwd=directory)
    if objcopy.returncode != 0:
        return refuse(f"objcopy failed: {(objcopy.stderr.strip().splitlines() or ['?'])[-1]}")

    converter = directory / "MNNConvert"
    staging = directory / "MNNConvert.partial"
    objects = [build.converter_object, directory / "candidate_recorded.o", build.recorder_object]
    tail = [str(archive) if arg == "{deps}" else arg for arg in build.link_tail]
    linked = log.run([*build.link_command, *objects, "-o", staging, *tail])
    if linked.returncode != 0:
        link_output = (linked.stdout + linked.stderr).rstrip()
        return finish(False, f"link error: {first_error(linked)}", f"{output}\n{link_output}".strip(), removed=removed)
    staging.replace(converter)
    return finish(True, "", output, converter=converter, removed=removed)


def served_transforms(log_path: Path, declined: bool = False) -> list[str]:
    """The ONNX ops a candidate converter's transform converted, one entry per node (from the
    file named by MKBENCH_SERVED_LOG during the conversion); with declined=True also the nodes it
    was asked for and declined (returned nothing or the node itself). [] when nothing was recorded."""
    if not log_path.is_file():
        return []
    heads = ("candidate ", "declined ") if declined else ("candidate ",)
    return [line.split(" ", 1)[1].strip() for line in log_path.read_text().splitlines() if line.startswith(heads)]
