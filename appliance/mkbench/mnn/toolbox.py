"""What every MNN-side build shares: running a logged command, compiling one file with MNN's own
flags, the binutils that match a compiler, cache keys, and the build's row in the store.

Builds of three kinds use it: the native library and runner (build.py), candidate runners
(inject.py) and converters (converter_build.py). Each hands `compile_cpp` a kit: anything with
`compile_command` (MNN's compile line for one of its sources, with {source} and {output}) and
`compile_directory`, so every compile sees exactly MNN's flags.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from .. import sandbox
from .. import settings as settings_module
from .. import store
from ..store import rows


CANDIDATE_COMPILE_SECONDS = 300  # a candidate compile that takes longer (runaway templates) fails its build


class BuildError(RuntimeError):
    """A build of MNN (or of our code against it) failed: one line; the full log is in its folder and the store."""


class CompileKit(Protocol):
    compile_command: tuple[str, ...]  # MNN's compile line for one of its sources, {source} and {output} placeholders
    compile_directory: Path


def cache_key(*parts: object) -> str:
    """sha256 over the parts as JSON: the key a cached build is stored under."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class BuildLog:
    """The full output of a build, kept for the store and the debugger."""

    lines: list[str]

    def run(self, command: Sequence[str], cwd: Path | None = None, timeout: float = 7200, env: dict | None = None,
            wrap=None) -> subprocess.CompletedProcess:
        """Run and log one command; `wrap(argv, cwd, env) -> (argv, env)` may put it in a sandbox."""
        argv = [str(c) for c in command]
        full_env = {**os.environ, **(env or {})}
        self.lines.append(f"$ {shlex.join(argv)}")
        if wrap is not None:
            argv, full_env = wrap(argv, cwd, full_env)
        try:
            result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
        except subprocess.TimeoutExpired as expired:  # a runaway compile is a failed step, not a crash
            partial = expired.stdout or ""
            partial = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
            result = subprocess.CompletedProcess(command, -1, partial, f"error: timed out after {timeout:.0f} s\n")
        self.lines.append((result.stdout + result.stderr).rstrip())
        return result

    def text(self) -> str:
        return "\n".join(line for line in self.lines if line)


def jobs() -> int:
    return max(1, os.cpu_count() or 1)


def ccache_env() -> dict[str, str]:
    """ccache settings shared by all builds: hash the compiler by content, keep paths absolute."""
    return {"CCACHE_COMPILERCHECK": "content", "CCACHE_NOHASHDIR": "1"}


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


def compile_cpp(kit: CompileKit, source: Path, output: Path, log: BuildLog, extra: Sequence[str] = (),
                cwd: Path | None = None, timeout: float = 1800, wrap=None) -> subprocess.CompletedProcess:
    """Compile one file with MNN's own compile line (plus extra flags). The log is read by programs:
    no colour, and the compiler's fix-its as parseable lines (agents/tools/fixits.py)."""
    argv = [a.replace("{source}", str(source)).replace("{output}", str(output)) for a in kit.compile_command]
    argv = argv[:1] + list(extra) + ["-fdiagnostics-color=never", "-fdiagnostics-parseable-fixits"] + argv[1:]
    if shutil.which("ccache"):
        argv = [shutil.which("ccache")] + argv
    return log.run(argv, cwd=cwd or kit.compile_directory, env=ccache_env(), timeout=timeout, wrap=wrap)


def candidate_compile_jail(settings: settings_module.Settings, directory: Path, readable: Sequence[Path]):
    """The jail a candidate compiles in (sandbox.py): it reads the MNN tree and build, the system
    and the toolchain; it writes its own folder and a compiler cache of candidates' own."""
    cache = sandbox.give(settings.work_dir / "ccache-candidates")
    roots = [*readable, *([settings.ndk_home] if settings.ndk_home else [])]
    jail = sandbox.Jail(writable=(str(directory), str(cache)), readable=tuple(str(r) for r in roots),
                        env=(("CCACHE_DIR", str(cache)), ("CCACHE_UMASK", "000")), cpu_seconds=int(CANDIDATE_COMPILE_SECONDS))
    sandbox.give(directory)
    return sandbox.command_wrapper(jail, settings.sandbox)


def include_roots(settings: settings_module.Settings, tree: Path) -> list[Path]:
    """Where a candidate's includes may come from: MNN's tree, the system and the toolchain."""
    return [tree, Path("/usr"), *([settings.ndk_home] if settings.ndk_home else [])]


def first_error(result: subprocess.CompletedProcess) -> str:
    for line in (result.stdout + result.stderr).splitlines():
        if "error" in line:
            return line.strip()
    return f"exit code {result.returncode}"


def record_build(settings: settings_module.Settings, target: str, what: str, cache_key: str, ok: bool, seconds: float,
                 log: str) -> int | None:
    """The build's row in the store; returns its id (None if the store is unusable: the build stands)."""
    try:
        db = store.open_db(settings.db_path)
        try:
            return rows.record_build(db, target, what, cache_key, ok, seconds, log)
        finally:
            db.close()
    except Exception:  # a locked or broken store must not undo a build
        return None
