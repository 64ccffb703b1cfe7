"""Native MNN builds per target, cached under settings.builds_dir and reused.

A native build is three layers, each cached on its own key:
  1. the MNN static library (CMake + Ninja + ccache; CPU backend only, no tools/tests/converter),
     keyed by (target, tree fingerprint, CMake options, compiler identity);
  2. the link kit derived from it: the library minus MNN's CPUOPRegister object
     (`libMNN_noreg.a`) and the exact compile command MNN used for CPUOPRegister.cpp, which every
     later compile (runner, register copy, candidates) reuses so all code sees MNN's flags;
  3. the runner (mnn/runner/*.cpp) linked with the recording register copy (see inject.py),
     keyed additionally by the runner sources.
A build directory is published only when complete (build.json written last), so a killed build
never looks finished. Every real build (not a cache hit) is a row in the store's `builds` table.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .. import settings as settings_module
from ..filelock import built_once
from . import register_copies
from . import tree as tree_module
from .register_copies import REGISTER_SOURCE, RUNNER_DIR, geometry_register_symbol
from .symbols import read_symbols, vtable_classes
from .toolbox import BuildError, BuildLog, binutil, cache_key, ccache_env, compile_cpp, first_error, jobs, record_build
from .toolchain import TARGETS, Toolchain, ToolchainError, key_args, toolchain

# Bump when the way builds are made changes (invalidates every cached build).
BUILD_RECIPE = 1

# A CPU-only static MNN with nothing else. KleidiAI is off because its CMake downloads sources.
MNN_OPTIONS: dict[str, str] = {
    "CMAKE_BUILD_TYPE": "Release",
    "MNN_BUILD_SHARED_LIBS": "OFF",
    "MNN_SEP_BUILD": "OFF",
    "MNN_BUILD_TOOLS": "OFF",
    "MNN_BUILD_CONVERTER": "OFF",
    "MNN_BUILD_TEST": "OFF",
    "MNN_BUILD_DEMO": "OFF",
    "MNN_BUILD_BENCHMARK": "OFF",
    "MNN_BUILD_QUANTOOLS": "OFF",
    "MNN_EVALUATION": "OFF",
    "MNN_BUILD_TRAIN": "OFF",
    "MNN_BUILD_OPENCV": "OFF",
    "MNN_BUILD_AUDIO": "OFF",
    "MNN_BUILD_LLM": "OFF",
    "MNN_BUILD_DIFFUSION": "OFF",
    "MNN_BUILD_PROTOBUFFER": "OFF",
    "MNN_USE_LOGCAT": "OFF",
    "MNN_KLEIDIAI": "OFF",
    "MNN_OPENCL": "OFF",
    "MNN_VULKAN": "OFF",
    "MNN_OPENGL": "OFF",
    "MNN_METAL": "OFF",
    "MNN_CUDA": "OFF",
}

@dataclass(frozen=True)
class NativeBuild:
    """A finished native build for one target: what candidate builds and the judge need."""

    target: str
    key: str  # cache key of the MNN library layer
    directory: Path
    library: Path  # libMNN.a as MNN built it
    library_noreg: Path  # the same without CPUOPRegister's object
    runner: Path  # the native runner (records which creator served each op, like a candidate's)
    runner_objects: tuple[Path, ...]  # runner.o + the recording register copy's object
    guard: Path  # mnn/runner/guard.cpp: times a run from outside its process, leaves nothing behind
    bandwidth: Path  # mnn/runner/bandwidth.cpp: the device's memory bandwidth per working-set size
    compile_command: tuple[str, ...]  # MNN's compile line for CPUOPRegister.cpp with {source}/{output}
    compile_directory: Path
    link_command: tuple[str, ...]  # compiler + leading link flags ({objects} go after)
    link_libs: tuple[str, ...]  # after the objects and library
    tree: Path
    tree_fingerprint: str
    run_prefix: tuple[str, ...]  # () or ("qemu-aarch64-static",)


@dataclass(frozen=True)
class BuildStatus:
    """One line of `mkbench mnn status`."""

    target: str
    toolchain: str  # name, or why there is none
    built: bool
    directory: Path | None
    detail: str


# ---------------------------------------------------------------- keys


def library_key(tc: Toolchain, fingerprint: str) -> str:
    """Cache key of the MNN library layer: target, toolchain, tree and options."""
    return cache_key(BUILD_RECIPE, tc.target, tc.name, tc.identity, key_args(tc), fingerprint, MNN_OPTIONS)[:16]


def runner_sources() -> list[Path]:
    return sorted(p for p in RUNNER_DIR.iterdir() if p.suffix in (".cpp", ".hpp", ".h", ".inc", ".c"))


def runner_key() -> str:
    return cache_key(BUILD_RECIPE, [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in runner_sources()])[:12]


# ---------------------------------------------------------------- layer 1: the MNN library


def configure_and_build(
    tc: Toolchain, tree_root: Path, build_dir: Path, log: BuildLog,
    options: dict[str, str] = MNN_OPTIONS, ninja_target: str = "MNN", product: str = "libMNN.a",
) -> Path:
    """Configure (once) and build one target of MNN's CMake project; returns the product's path.
    The native build makes the library; the converter build (converter.py) makes MNNConvert."""
    ccache = shutil.which("ccache")
    launcher = [f"-DCMAKE_C_COMPILER_LAUNCHER={ccache}", f"-DCMAKE_CXX_COMPILER_LAUNCHER={ccache}"] if ccache else []
    if not (build_dir / "build.ninja").is_file():
        configure = [
            "cmake", "-G", "Ninja", "-S", tree_root, "-B", build_dir,
            *tc.cmake_args,
            *(f"-D{k}={v}" for k, v in options.items()),
            "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
            *launcher,
        ]
        result = log.run(configure, env=ccache_env())
        if result.returncode != 0:
            raise BuildError(f"CMake configure of MNN ({tc.target}) failed: see {build_dir}/../build.log")
    result = log.run(["ninja", "-C", build_dir, "-j", str(jobs()), ninja_target], env=ccache_env())
    if result.returncode != 0:
        raise BuildError(f"building {ninja_target} ({tc.target}) failed: see {build_dir}/../build.log")
    built = build_dir / product
    if not built.is_file():
        raise BuildError(f"{ninja_target} ({tc.target}) built but {built} is missing")
    return built


# ---------------------------------------------------------------- layer 2: the link kit


def compile_command_for(build_dir: Path, source: Path) -> tuple[tuple[str, ...], Path]:
    """MNN's own compile line for one source file (compile_commands.json), with {source}/{output}."""
    wanted = source.resolve()
    for entry in json.loads((build_dir / "compile_commands.json").read_text()):
        if Path(entry["directory"], entry["file"]).resolve() != wanted:
            continue
        argv = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
        out: list[str] = []
        args = iter(argv)
        for arg in args:
            if arg in ("-o", "-c"):
                next(args, None)
                out += [arg, "{output}" if arg == "-o" else "{source}"]
            elif Path(arg).name == source.name:
                out.append("{source}")
            else:
                out.append(arg)
        if "{source}" not in out or "{output}" not in out:
            raise BuildError(f"cannot read the compile line of {source.name} from compile_commands.json")
        if Path(out[0]).name == "ccache":
            out = out[1:]
        return tuple(out), Path(entry["directory"])
    raise BuildError(f"{source} is not in MNN's compile_commands.json")


def _register_compile_command(build_dir: Path, tree_root: Path) -> tuple[tuple[str, ...], Path]:
    """MNN's own compile line for CPUOPRegister.cpp, with {source} and {output} placeholders."""
    return compile_command_for(build_dir, tree_root / REGISTER_SOURCE)


def _library_without_register(library: Path, destination: Path, ar: str, log: BuildLog) -> Path:
    staging = destination.with_suffix(".partial")
    shutil.copyfile(library, staging)
    members = log.run([ar, "t", staging]).stdout.split()
    register_members = [m for m in members if m.startswith("CPUOPRegister.cpp.")]
    if len(register_members) != 1:
        raise BuildError(f"expected one CPUOPRegister object in {library}, found {register_members}")
    if log.run([ar, "d", staging, register_members[0]]).returncode != 0:
        raise BuildError(f"cannot remove {register_members[0]} from a copy of {library}")
    staging.replace(destination)
    return destination


# ---------------------------------------------------------------- layer 3: the native runner


def link_runner(native: NativeBuild, objects: Sequence[Path], output: Path, log: BuildLog) -> subprocess.CompletedProcess:
    """Link runner objects against the library without MNN's register object; every registration
    of a geometry computer goes through mkbench's recorder (mnn/runner/mkbench_geometry.inc)."""
    staging = output.with_name(output.name + ".partial")
    wrap = f"-Wl,--wrap={geometry_register_symbol(native)}"
    command = [*native.link_command, wrap, "-o", staging, *objects, native.library_noreg, *native.link_libs]
    result = log.run(command)
    if result.returncode == 0:
        staging.replace(output)
    return result


def _link_command(tc: Toolchain, compile_command: Sequence[str]) -> tuple[str, ...]:
    """The compiler and the flags from MNN's compile line that also matter when linking."""
    keep_prefixes = ("--target=", "--sysroot=", "--gcc-toolchain=", "-march=", "-mcpu=", "-fuse-ld=")
    keep = [a for a in compile_command[1:] if a.startswith(keep_prefixes)]
    return (compile_command[0], *keep, *tc.link_flags)


def _build_runner(native: NativeBuild, directory: Path, log: BuildLog) -> tuple[Path, tuple[Path, ...], Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    runner_obj = directory / "runner.o"
    result = compile_cpp(native, RUNNER_DIR / "runner.cpp", runner_obj, log, extra=[f"-I{RUNNER_DIR}"])
    if result.returncode != 0:
        raise BuildError(f"compiling the runner failed: {first_error(result)}")
    register_obj = register_copies.compile_register_copy(native, directory, log)
    geometry_obj = register_copies.compile_geometry_copy(native, directory, log)
    info_obj = register_copies.compile_native_info(native, directory, log)
    runner = directory / "runner"
    result = link_runner(native, [runner_obj, register_obj, geometry_obj, info_obj], runner, log)
    if result.returncode != 0:
        raise BuildError(f"linking the runner failed: {first_error(result)}")
    tools = []
    for name in ("guard", "bandwidth"):  # stand-alone programs: MNN's compile line, no MNN linked
        obj, program = directory / f"{name}.o", directory / name
        result = compile_cpp(native, RUNNER_DIR / f"{name}.cpp", obj, log)
        if result.returncode == 0:
            result = log.run([*native.link_command, "-o", program, obj])
        if result.returncode != 0:
            raise BuildError(f"building the {name} failed: {first_error(result)}")
        tools.append(program)
    return runner, (runner_obj, register_obj, geometry_obj), tools[0], tools[1]


# ---------------------------------------------------------------- the public API


def native_directory(target: str, settings: settings_module.Settings) -> Path:
    """Where the native build for a target lives (whether or not it exists yet)."""
    s = settings
    tc = toolchain(target, s)
    tree = tree_module.open_tree(s)
    return s.builds_dir / f"native-{target}-{library_key(tc, tree.fingerprint)}"


def _native_from(data: dict, path: Path, runner: dict | None) -> NativeBuild:
    """A NativeBuild from its manifest; without a runner entry, one whose runner is yet to be built."""
    runner = runner or {"runner": str(path / "runner-pending"), "objects": [], "guard": str(path / "guard-pending"),
                        "bandwidth": str(path / "bandwidth-pending")}
    return NativeBuild(
        target=data["target"], key=data["key"], directory=path,
        library=Path(data["library"]), library_noreg=Path(data["library_noreg"]),
        runner=Path(runner["runner"]), runner_objects=tuple(Path(p) for p in runner["objects"]), guard=Path(runner["guard"]),
        bandwidth=Path(runner.get("bandwidth", path / "bandwidth-pending")),
        compile_command=tuple(data["compile_command"]), compile_directory=Path(data["compile_directory"]),
        link_command=tuple(data["link_command"]), link_libs=tuple(data["link_libs"]),
        tree=Path(data["tree"]), tree_fingerprint=data["tree_fingerprint"],
        run_prefix=tuple(data["run_prefix"]),
    )


def _load_manifest(path: Path, with_runner: bool = True) -> NativeBuild | None:
    """The build recorded in path/build.json, with today's runner (None if it has none yet), or
    with_runner=False its library alone (the runner "pending")."""
    manifest = path / "build.json"
    if not manifest.is_file():
        return None
    data = json.loads(manifest.read_text())
    if not with_runner:
        return _native_from(data, path, None)
    runner = data.get("runners", {}).get(runner_key())
    return None if runner is None else _native_from(data, path, runner)


def build_native(target: str, settings: settings_module.Settings, with_runner: bool = True) -> NativeBuild:
    """The native build for a target: reused when cached, else built (minutes) and recorded.

    with_runner=False builds the MNN library layer alone (its NativeBuild's runner is "pending"):
    the appliance image builds the libraries in a layer of their own, so a change to the runner's
    sources rebuilds the runners (a minute), not MNN (half an hour)."""
    s = settings
    tc = toolchain(target, s)
    tree = tree_module.open_tree(s)
    key = library_key(tc, tree.fingerprint)
    directory = s.builds_dir / f"native-{target}-{key}"

    def ready() -> NativeBuild | None:
        cached = _load_manifest(directory, with_runner)
        return cached if cached is not None and (not with_runner or cached.runner.is_file()) else None

    return built_once(s.builds_dir / f"native-{target}-{key}.lock", ready,
                      lambda: _build_native_locked(s, tc, tree, key, directory, with_runner))


def _build_native_locked(s: settings_module.Settings, tc: Toolchain, tree: tree_module.Tree, key: str, directory: Path,
                         with_runner: bool = True) -> NativeBuild:
    log = BuildLog([])
    started = time.monotonic()
    manifest_path = directory / "build.json"
    data = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    built_library = data is None
    rkey = runner_key() if with_runner else ""
    ok = False
    try:
        if data is None:
            library = configure_and_build(tc, tree.path, directory / "mnn", log)
            compile_command, compile_directory = _register_compile_command(directory / "mnn", tree.path)
            noreg = _library_without_register(library, directory / "libMNN_noreg.a", binutil(compile_command, "ar"), log)
            data = {
                "target": tc.target, "key": key, "toolchain": tc.name, "identity": tc.identity,
                "library": str(library), "library_noreg": str(noreg),
                "compile_command": list(compile_command), "compile_directory": str(compile_directory),
                "link_command": list(_link_command(tc, compile_command)), "link_libs": list(tc.link_libs),
                "tree": str(tree.path), "tree_fingerprint": tree.fingerprint,
                "run_prefix": list(tc.run_prefix), "options": MNN_OPTIONS, "runners": {},
                "library_seconds": round(time.monotonic() - started, 1),
            }
        if with_runner:
            runner, objects, guard, bandwidth = _build_runner(_native_from(data, directory, None), directory / f"runner-{rkey}", log)
            data["runners"][rkey] = {"runner": str(runner), "objects": [str(p) for p in objects], "guard": str(guard),
                                     "bandwidth": str(bandwidth)}
        staging = manifest_path.with_suffix(".partial")
        staging.write_text(json.dumps(data, indent=1))
        staging.replace(manifest_path)
        ok = True
    finally:
        seconds = time.monotonic() - started
        log_path = directory / "build.log" if built_library else directory / f"runner-{rkey}" / "build.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(log.text())
        record_build(s, tc.target, "native", key, ok, seconds, log.text())
    built = _load_manifest(directory, with_runner)
    assert built is not None
    native_kernel_classes(built)  # cached now, so the first candidate build stays fast
    return built


def native_kernel_classes(native: NativeBuild) -> frozenset[str]:
    """Classes with a vtable defined in MNN's CPU-backend and geometry objects (executions,
    creators, geometry computers): MNN's own kernels, which a candidate may not hand its work to.
    The backend and the geometry machinery themselves are left out: candidates use them legitimately."""
    kernel_files = {p.name for folder in ("source/backend/cpu", "source/geometry") for p in (native.tree / folder).rglob("*.cpp")}
    infrastructure = {"CPUBackend.cpp", "CPURuntime.cpp", "GeometryComputer.cpp", "GeometryComputerUtils.cpp",
                      "ConvertUtils.cpp", "GeometryConvUtils.cpp"}

    def kernel_member(member: str) -> bool:
        source = member.removesuffix(".o")
        return source in kernel_files and source not in infrastructure

    return vtable_classes(native, native.library_noreg, native.directory / "native_classes.txt", kernel_member)


OWN_FUNCTION_USERS = 3  # a function of MNN's that at most this many kernel files call belongs to their ops


def op_functions(native: NativeBuild, classes) -> frozenset[str]:
    """MNN's own kernel functions for the ops its execution (or geometry) classes `classes` serve:
    the free functions of MNN's library that the files defining those classes call, and that at
    most OWN_FUNCTION_USERS of MNN's kernel files call (MNNSoftmax, MNNGelu, ...). Functions more
    files share (packing, matrix products, exp tables) are helpers that implement other things:
    a candidate may call them, and they are recorded. Names without their parameter lists."""
    table = _kernel_function_table(native)
    members = {member for cls in classes for member in table["classes"].get(cls, [])}
    return frozenset(name for member in members for name in table["calls"].get(member, [])
                     if len(table["users"].get(name, [])) <= OWN_FUNCTION_USERS)


def kernel_helpers(native: NativeBuild) -> frozenset[str]:
    """Every free function of MNN's library that some kernel file calls (the helpers a candidate
    may call and the judge records; op_functions says which of them belong to one op)."""
    return frozenset(_kernel_function_table(native)["users"])


def _kernel_function_table(native: NativeBuild) -> dict:
    """{"classes": class -> kernel members defining its vtable, "calls": member -> MNN free functions
    it calls, "users": function -> kernel members calling it}, from nm, cached as JSON."""
    cache = native.directory / "kernel_functions.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    kernel_files = {p.name for folder in ("source/backend/cpu", "source/geometry") for p in (native.tree / folder).rglob("*.cpp")}
    listed = read_symbols(native, native.library_noreg)
    free_defined = {sym.demangled.split("(")[0] for _, sym in listed if sym.defined and _free_function(sym.demangled)}
    classes: dict[str, list[str]] = {}
    calls: dict[str, set[str]] = {}
    for member, sym in listed:
        if member.removesuffix(".o") not in kernel_files:
            continue
        if sym.defined and sym.vtable_of:
            classes.setdefault(sym.vtable_of, []).append(member)
        name = sym.demangled.split("(")[0]
        if sym.kind == "U" and _free_function(sym.demangled) and name in free_defined:
            calls.setdefault(member, set()).add(name)
    users: dict[str, list[str]] = {}
    for member, names in calls.items():
        for name in names:
            users.setdefault(name, []).append(member)
    table = {"classes": classes, "calls": {m: sorted(n) for m, n in calls.items()}, "users": users}
    staging = cache.with_name(f"{cache.name}.partial")
    staging.write_text(json.dumps(table))
    staging.replace(cache)
    return table


def _free_function(demangled: str) -> bool:
    """A function outside any class or namespace but MNN's (`MNNSoftmax(...)`, `MNN::MNNGelu(...)`, a C name)."""
    name = demangled.split("(")[0].removeprefix("MNN::")
    return "::" not in name and " " not in name and not name.startswith(("vtable", "typeinfo", "std"))


def status(settings: settings_module.Settings) -> list[BuildStatus]:
    """Which native builds exist for the current tree, one per target (never raises)."""
    s = settings
    rows: list[BuildStatus] = []
    for target in TARGETS:
        try:
            tc = toolchain(target, s)
        except ToolchainError as error:
            rows.append(BuildStatus(target, f"none ({error})", False, None, str(error)))
            continue
        try:
            tree = tree_module.open_tree(s)
        except tree_module.TreeError as error:
            rows.append(BuildStatus(target, tc.name, False, None, str(error)))
            continue
        directory = s.builds_dir / f"native-{target}-{library_key(tc, tree.fingerprint)}"
        built = _load_manifest(directory)
        if built is not None and built.runner.is_file():
            rows.append(BuildStatus(target, tc.name, True, directory, f"{tc.name}: {built.runner}"))
        else:
            rows.append(BuildStatus(target, tc.name, False, directory, f"not built: `mkbench mnn build --target {target}` (minutes)"))
    return rows
