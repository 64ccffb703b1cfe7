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

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

from .. import settings as settings_module
from .. import store
from . import tree as tree_module
from .toolchain import TARGETS, Toolchain, ToolchainError, toolchain

T = TypeVar("T")

# Bump when the way builds are made changes (invalidates every cached build).
BUILD_RECIPE = 1

RUNNER_DIR = settings_module.REPO_ROOT / "mnn" / "runner"

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

REGISTER_SOURCE = "source/backend/cpu/CPUOPRegister.cpp"
GEOMETRY_REGISTER_SOURCE = "source/geometry/GeometryOPRegister.cpp"


class BuildError(RuntimeError):
    """A native build failed (message: one line; the full log is in the build's folder and the store)."""


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


# ---------------------------------------------------------------- keys and locks


def _hash(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def library_key(tc: Toolchain, fingerprint: str) -> str:
    """Cache key of the MNN library layer: target, toolchain, tree and options."""
    return _hash(BUILD_RECIPE, tc.target, tc.name, tc.identity, tc.cmake_args, fingerprint, MNN_OPTIONS)[:16]


def runner_sources() -> list[Path]:
    return sorted(p for p in RUNNER_DIR.iterdir() if p.suffix in (".cpp", ".hpp", ".h", ".inc"))


def runner_key() -> str:
    return _hash(BUILD_RECIPE, [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in runner_sources()])[:12]


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two processes never build the same thing at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def built_once(lock_path: Path, ready: Callable[[], T | None], build: Callable[[], T]) -> T:
    """What `ready()` finds (None: not there yet), else `build()` under an exclusive lock, looking
    once more inside it: another process may have just finished the same build."""
    found = ready()
    if found is not None:
        return found
    with locked(lock_path):
        found = ready()
        return found if found is not None else build()


# ---------------------------------------------------------------- running commands


@dataclass
class BuildLog:
    """The full output of a build, kept for the store and the debugger."""

    lines: list[str]

    def run(self, command: Sequence[str], cwd: Path | None = None, timeout: float = 7200, env: dict | None = None) -> subprocess.CompletedProcess:
        self.lines.append(f"$ {shlex.join(str(c) for c in command)}")
        try:
            result = subprocess.run(
                [str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                env={**os.environ, **(env or {})},
            )
        except subprocess.TimeoutExpired as expired:  # a runaway compile is a failed step, not a crash
            partial = expired.stdout or ""
            partial = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
            result = subprocess.CompletedProcess(command, -1, partial, f"error: timed out after {timeout:.0f} s\n")
        self.lines.append((result.stdout + result.stderr).rstrip())
        return result

    def text(self) -> str:
        return "\n".join(line for line in self.lines if line)


def _jobs() -> int:
    return max(1, os.cpu_count() or 1)


def ccache_env() -> dict[str, str]:
    """ccache settings shared by all builds: hash the compiler by content, keep paths absolute."""
    env = {"CCACHE_COMPILERCHECK": "content", "CCACHE_NOHASHDIR": "1"}
    return env


def record_build(settings: settings_module.Settings, target: str, what: str, cache_key: str, ok: bool, seconds: float, log: str) -> int | None:
    """One row in the store's builds table; returns its id (None if the store is unusable)."""
    try:
        db = store.open_db(settings.db_path)
        try:
            return store.insert(db, "builds", {
                "target": target, "what": what, "cache_key": cache_key,
                "ok": int(ok), "seconds": round(seconds, 3), "log": log,
            })
        finally:
            db.close()
    except Exception:  # the build itself stands; a locked or broken store must not undo it
        return None


# ---------------------------------------------------------------- layer 1: the MNN library


def _configure_and_build_library(
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
    result = log.run(["ninja", "-C", build_dir, "-j", str(_jobs()), ninja_target], env=ccache_env())
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


def binutil(compile_command: Sequence[str], name: str) -> str:
    """ar / nm / objcopy / c++filt matching the compiler: llvm-* beside an NDK clang, the
    target-prefixed GNU tool for a cross g++, else the plain tool from PATH."""
    compiler = Path(compile_command[0])
    llvm = compiler.parent / f"llvm-{name}"
    if "clang" in compiler.name and llvm.is_file():
        return str(llvm)
    if compiler.name.endswith("-g++"):
        prefixed = compiler.name[: -len("g++")] + name
        if (compiler.parent / prefixed).is_file():
            return str(compiler.parent / prefixed)
        if shutil.which(prefixed):
            return shutil.which(prefixed)
    return shutil.which(name) or name


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


def compile_cpp(
    native: NativeBuild, source: Path, output: Path, log: BuildLog, extra: Sequence[str] = (), cwd: Path | None = None,
    timeout: float = 1800,
) -> subprocess.CompletedProcess:
    """Compile one file with MNN's own flags for CPUOPRegister.cpp (plus extra flags). The log is
    read by programs: no colour, and the compiler's fix-its as parseable lines (agents/tools/fixits.py)."""
    argv = [a.replace("{source}", str(source)).replace("{output}", str(output)) for a in native.compile_command]
    ccache = shutil.which("ccache")
    argv = argv[:1] + list(extra) + ["-fdiagnostics-color=never", "-fdiagnostics-parseable-fixits"] + argv[1:]
    if ccache:
        argv = [ccache] + argv
    return log.run(argv, cwd=cwd or native.compile_directory, env=ccache_env(), timeout=timeout)


def geometry_register_symbol(native: NativeBuild) -> str:
    """The mangled name of GeometryComputer::registerGeometryComputer in this build (it differs
    between libstdc++ and the NDK's libc++), which every runner link wraps; cached."""
    cache = native.directory / "geometry_register_symbol.txt"
    if cache.is_file():
        return cache.read_text().strip()
    listing = subprocess.run([binutil(native.compile_command, "nm"), "--defined-only", "-P", str(native.library_noreg)],
                             capture_output=True, text=True)
    for line in listing.stdout.splitlines():
        parts = line.split()
        # Itanium mangling of MNN::GeometryComputer::registerGeometryComputer(...), any standard library
        if len(parts) >= 2 and parts[1] == "T" and parts[0].startswith("_ZN3MNN16GeometryComputer24registerGeometryComputerE"):
            cache.write_text(parts[0] + "\n")
            return parts[0]
    raise BuildError(f"MNN::GeometryComputer::registerGeometryComputer is not defined in {native.library_noreg}")


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


def _build_runner(native: NativeBuild, directory: Path, log: BuildLog) -> tuple[Path, tuple[Path, ...]]:
    from . import inject  # the recording register copy is inject's business

    directory.mkdir(parents=True, exist_ok=True)
    runner_obj = directory / "runner.o"
    result = compile_cpp(native, RUNNER_DIR / "runner.cpp", runner_obj, log, extra=[f"-I{RUNNER_DIR}"])
    if result.returncode != 0:
        raise BuildError(f"compiling the runner failed: {first_error(result)}")
    register_obj = inject.compile_register_copy(native, directory, log)
    geometry_obj = inject.compile_geometry_copy(native, directory, log)
    info_obj = inject.compile_native_info(native, directory, log)
    runner = directory / "runner"
    result = link_runner(native, [runner_obj, register_obj, geometry_obj, info_obj], runner, log)
    if result.returncode != 0:
        raise BuildError(f"linking the runner failed: {first_error(result)}")
    return runner, (runner_obj, register_obj, geometry_obj)


def first_error(result: subprocess.CompletedProcess) -> str:
    for line in (result.stdout + result.stderr).splitlines():
        if "error" in line:
            return line.strip()
    return f"exit code {result.returncode}"


# ---------------------------------------------------------------- the public API


def native_directory(target: str, settings: settings_module.Settings | None = None) -> Path:
    """Where the native build for a target lives (whether or not it exists yet)."""
    s = settings or settings_module.load()
    tc = toolchain(target, s)
    tree = tree_module.open_tree(s)
    return s.builds_dir / f"native-{target}-{library_key(tc, tree.fingerprint)}"


def _native_from(data: dict, path: Path, runner: dict | None) -> NativeBuild:
    """A NativeBuild from its manifest; without a runner entry, one whose runner is yet to be built."""
    runner = runner or {"runner": str(path / "runner-pending"), "objects": []}
    return NativeBuild(
        target=data["target"], key=data["key"], directory=path,
        library=Path(data["library"]), library_noreg=Path(data["library_noreg"]),
        runner=Path(runner["runner"]), runner_objects=tuple(Path(p) for p in runner["objects"]),
        compile_command=tuple(data["compile_command"]), compile_directory=Path(data["compile_directory"]),
        link_command=tuple(data["link_command"]), link_libs=tuple(data["link_libs"]),
        tree=Path(data["tree"]), tree_fingerprint=data["tree_fingerprint"],
        run_prefix=tuple(data["run_prefix"]),
    )


def _load_manifest(path: Path) -> NativeBuild | None:
    manifest = path / "build.json"
    if not manifest.is_file():
        return None
    data = json.loads(manifest.read_text())
    runner = data.get("runners", {}).get(runner_key())
    return None if runner is None else _native_from(data, path, runner)


def build_native(target: str, settings: settings_module.Settings | None = None) -> NativeBuild:
    """The native build for a target: reused when cached, else built (minutes) and recorded."""
    s = settings or settings_module.load()
    tc = toolchain(target, s)
    tree = tree_module.open_tree(s)
    key = library_key(tc, tree.fingerprint)
    directory = s.builds_dir / f"native-{target}-{key}"

    def ready() -> NativeBuild | None:
        cached = _load_manifest(directory)
        return cached if cached is not None and cached.runner.is_file() else None

    return built_once(s.builds_dir / f"native-{target}-{key}.lock", ready,
                      lambda: _build_native_locked(s, tc, tree, key, directory))


def _build_native_locked(s: settings_module.Settings, tc: Toolchain, tree: tree_module.Tree, key: str, directory: Path) -> NativeBuild:
    log = BuildLog([])
    started = time.monotonic()
    manifest_path = directory / "build.json"
    data = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    built_library = data is None
    rkey = runner_key()
    ok = False
    try:
        if data is None:
            library = _configure_and_build_library(tc, tree.path, directory / "mnn", log)
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
        runner, objects = _build_runner(_native_from(data, directory, None), directory / f"runner-{rkey}", log)
        data["runners"][rkey] = {"runner": str(runner), "objects": [str(p) for p in objects]}
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
    built = _load_manifest(directory)
    assert built is not None
    from . import inject

    inject.native_execution_classes(built)  # cached now, so the first candidate build stays fast
    return built


def status(settings: settings_module.Settings | None = None) -> list[BuildStatus]:
    """Which native builds exist for the current tree, one per target (never raises)."""
    s = settings or settings_module.load()
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
