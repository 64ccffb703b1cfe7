"""Build copies of MNN's two registration files, and the per-build info file, for every runner.

The tree is never modified. A runner links, instead of MNN's own objects:
  CPUOPRegister_mkbench.o       CPUOPRegister.cpp with registerCPUOps() renamed, followed by
                                mnn/runner/mkbench_dispatch.inc (the recording dispatcher)
  GeometryOPRegister_mkbench.o  GeometryOPRegister.cpp with registerGeometryOps() renamed, followed
                                by mnn/runner/mkbench_geometry.inc (the geometry recorder; every
                                runner links with --wrap of GeometryComputer::registerGeometryComputer)
  info.o                        which (op type, sub-type) targets go to the candidate, the candidate's
                                vtables, and a function that calls its registrations
The first two are compiled once per native build and shared by native and candidate runners.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Sequence

from ..settings import SHIPPED
from .toolbox import BuildError, BuildLog, binutil, compile_cpp, first_error

RUNNER_DIR = SHIPPED / "mnn" / "runner"
REGISTER_SOURCE = "source/backend/cpu/CPUOPRegister.cpp"
GEOMETRY_REGISTER_SOURCE = "source/geometry/GeometryOPRegister.cpp"

Target = tuple[str, "str | None"]  # (MNN op type name, sub-type name or None for every sub-type)


def register_copy_source(tree_root: Path) -> str:
    """CPUOPRegister.cpp with registerCPUOps renamed, followed by mkbench's dispatcher."""
    original = (tree_root / REGISTER_SOURCE).read_text()
    renamed, count = re.subn(r"\bvoid\s+registerCPUOps\s*\(\s*\)", "void mkbench_native_registerCPUOps()", original)
    if count != 1:
        raise BuildError(f"expected one registerCPUOps() in {REGISTER_SOURCE}, found {count}")
    dispatcher = (RUNNER_DIR / "mkbench_dispatch.inc").read_text()
    return (
        f"// mkbench build copy of {REGISTER_SOURCE} (MNN tree untouched): registerCPUOps renamed,\n"
        f"// mkbench's recording dispatcher appended.\n{renamed}\n{dispatcher}"
    )


def geometry_copy_source(tree_root: Path) -> str:
    """GeometryOPRegister.cpp with registerGeometryOps renamed, followed by mkbench's recorder."""
    original = (tree_root / GEOMETRY_REGISTER_SOURCE).read_text()
    renamed, count = re.subn(r"\bvoid\s+registerGeometryOps\s*\(\s*\)", "void mkbench_native_registerGeometryOps()", original)
    if count != 1:
        raise BuildError(f"expected one registerGeometryOps() in {GEOMETRY_REGISTER_SOURCE}, found {count}")
    recorder = (RUNNER_DIR / "mkbench_geometry.inc").read_text()
    return (
        f"// mkbench build copy of {GEOMETRY_REGISTER_SOURCE} (MNN tree untouched): registerGeometryOps\n"
        f"// renamed, mkbench's geometry recorder appended.\n{renamed}\n{recorder}"
    )


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def info_source(build_kind: str, cpu_targets: Sequence[Target], geometry_targets: Sequence[Target],
                registration_count: int, vtables: Sequence[str], registers_geometry: bool = False) -> str:
    """The per-build info file: which targets the CPU dispatcher and the geometry recorder send to
    the candidate, its vtable symbols, and its registration calls, made inside registerCPUOps or,
    for geometry computers (registers_geometry), after MNN's computers."""

    def target_array(name: str, chosen: Sequence[Target]) -> str:
        entries = [f"{{{_c_string(op)}, {_c_string(sub) if sub else 'nullptr'}}}" for op, sub in chosen]
        return f"const MkbenchTarget {name}[] = {{{', '.join(entries + ['{nullptr, nullptr}'])}}};"

    calls = " ".join(f"mkbench_candidate_register_{i}();" for i in range(registration_count))
    lines = ['#include "mkbench_dispatch.hpp"', ""]
    lines += [f'extern "C" void mkbench_candidate_register_{i}();' for i in range(registration_count)]
    lines.append('extern "C" {')
    lines.append(target_array("mkbench_targets", cpu_targets))
    lines.append(target_array("mkbench_geometry_targets", geometry_targets))
    lines.append(f"const char* const mkbench_candidate_vtables[] = {{{', '.join([_c_string(v) for v in vtables] + ['nullptr'])}}};")
    lines.append(f"const char* const mkbench_build_kind = {_c_string(build_kind)};")
    lines.append(f"void mkbench_register_candidate() {{ {'' if registers_geometry else calls} }}")
    lines.append(f"void mkbench_register_geometry_candidate() {{ {calls if registers_geometry else ''} }}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def compile_generated(native, text: str, path: Path, log: BuildLog, extra: Sequence[str] = ()) -> Path:
    """Write one generated source and compile it with MNN's flags (our code: a failure is a BuildError)."""
    path.write_text(text)
    output = path.with_suffix(".o")
    result = compile_cpp(native, path, output, log, extra=[f"-I{RUNNER_DIR}", *extra])
    if result.returncode != 0:
        raise BuildError(f"compiling {path.name} failed: {first_error(result)}")
    return output


def geometry_register_symbol(native) -> str:
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


def compile_register_copy(native, directory: Path, log: BuildLog) -> Path:
    """Compile the recording register copy once per native build (shared by native and candidates)."""
    return compile_generated(native, register_copy_source(native.tree), directory / "CPUOPRegister_mkbench.cpp", log)


def compile_geometry_copy(native, directory: Path, log: BuildLog) -> Path:
    """Compile the recording geometry register copy once per native build (shared, like the above)."""
    symbol = geometry_register_symbol(native)
    return compile_generated(native, geometry_copy_source(native.tree), directory / "GeometryOPRegister_mkbench.cpp", log,
                             extra=[f"-DMKBENCH_GEOMETRY_REGISTER_SYMBOL={symbol}"])


def compile_native_info(native, directory: Path, log: BuildLog) -> Path:
    """The info object of the native runner: no targets, no candidate."""
    return compile_generated(native, info_source("native", [], [], 0, []), directory / "info_native.cpp", log)
