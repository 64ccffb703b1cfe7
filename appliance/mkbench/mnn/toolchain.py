"""Compilers for the two build targets: `host` (x86_64) and `arm64` (Android NDK or Debian cross).

A Toolchain is everything a build needs to know about a target: the CMake arguments that select
the compiler, the extra flags the runner's link needs, how to run the result on this machine,
and an identity string (compiler versions) that goes into every build's cache key.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .. import settings as settings_module

TARGETS = ("host", "arm64")

MNN_DIR = settings_module.SHIPPED / "mnn"
NDK_PIN = settings_module.SHIPPED / "ndk" / "pin.toml"

ANDROID_ABI = "arm64-v8a"
ANDROID_PLATFORM = "android-24"


class ToolchainError(RuntimeError):
    """A target's compiler is missing (message: one line, how to install it)."""


@dataclass(frozen=True)
class Toolchain:
    target: str  # host | arm64
    name: str  # host-gcc | debian-aarch64 | android-ndk
    cmake_args: tuple[str, ...]  # compiler selection for CMake
    link_libs: tuple[str, ...]  # appended to the runner's link line
    link_flags: tuple[str, ...]  # prepended to the runner's link line (e.g. -static)
    identity: str  # compiler version(s): part of every cache key
    run_prefix: tuple[str, ...]  # how to run a built binary here ((): directly; qemu for arm64)


def _version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout else "unknown"


def _ndk_revision(ndk: Path) -> str:
    properties = ndk / "source.properties"
    if properties.is_file():
        for line in properties.read_text().splitlines():
            if line.startswith("Pkg.Revision"):
                return line.split("=", 1)[1].strip()
    return "unknown"


def toolchain(target: str, settings: settings_module.Settings) -> Toolchain:
    """The toolchain for a target on this machine; raises ToolchainError when it is missing."""
    s = settings
    if target == "host":
        if platform.machine() not in ("x86_64", "AMD64"):
            raise ToolchainError(f"the host target is x86_64, this machine is {platform.machine()}")
        for tool in ("g++", "gcc"):
            if shutil.which(tool) is None:
                raise ToolchainError(f"{tool} not found: apt-get install g++")
        return Toolchain(
            target="host",
            name="host-gcc",
            cmake_args=("-DCMAKE_C_COMPILER=gcc", "-DCMAKE_CXX_COMPILER=g++"),
            link_libs=("-lpthread", "-ldl"),
            link_flags=(),
            identity=_version("g++"),
            run_prefix=(),
        )
    if target != "arm64":
        raise ToolchainError(f"unknown target {target!r}: use one of {', '.join(TARGETS)}")
    if s.ndk_home is not None:
        toolchain_file = s.ndk_home / "build" / "cmake" / "android.toolchain.cmake"
        if not toolchain_file.is_file():
            raise ToolchainError(f"ANDROID_NDK_HOME={s.ndk_home} has no build/cmake/android.toolchain.cmake: see ndk/README.md")
        return Toolchain(
            target="arm64",
            name="android-ndk",
            cmake_args=(
                f"-DCMAKE_TOOLCHAIN_FILE={toolchain_file}",
                f"-DANDROID_ABI={ANDROID_ABI}",
                f"-DANDROID_PLATFORM={ANDROID_PLATFORM}",
                "-DANDROID_STL=c++_static",
                "-DMNN_BUILD_FOR_ANDROID_COMMAND=ON",
            ),
            link_libs=("-llog", "-landroid", "-lm"),
            link_flags=("-static-libstdc++", "-pie"),
            identity=f"android-ndk {_ndk_revision(s.ndk_home)} {ANDROID_ABI} {ANDROID_PLATFORM}",
            run_prefix=(),  # runs on a phone via adb, not here
        )
    for tool in ("aarch64-linux-gnu-g++", "aarch64-linux-gnu-gcc"):
        if shutil.which(tool) is None:
            raise ToolchainError(f"{tool} not found: set ANDROID_NDK_HOME or apt-get install g++-aarch64-linux-gnu")
    qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    return Toolchain(
        target="arm64",
        name="debian-aarch64",
        cmake_args=(f"-DCMAKE_TOOLCHAIN_FILE={MNN_DIR / 'toolchains' / 'aarch64-linux-gnu.cmake'}",),
        link_libs=("-lpthread",),
        link_flags=("-static",),
        identity=_version("aarch64-linux-gnu-g++"),
        run_prefix=(qemu,) if qemu else (),
    )


def key_args(tc: Toolchain) -> tuple[str, ...]:
    """The CMake arguments as a build's cache key sees them: a file of mkbench's own (the Debian cross
    toolchain file) by its path inside mkbench and its content, not by where mkbench is installed, so
    a build made from one install (the image's build stage) is found from another (its site-packages)."""
    root = str(settings_module.SHIPPED)
    args = []
    for arg in tc.cmake_args:
        name, sep, value = arg.partition("=")
        if sep and value.startswith(root + "/") and Path(value).is_file():
            digest = hashlib.sha256(Path(value).read_bytes()).hexdigest()[:16]
            arg = f"{name}=<mkbench>/{Path(value).relative_to(root).as_posix()}@{digest}"
        args.append(arg)
    return tuple(args)


def ndk_check(settings: settings_module.Settings) -> tuple[str, bool, str] | None:
    """(name, ok, detail) comparing ANDROID_NDK_HOME's revision with ndk/pin.toml; None without an NDK."""
    if settings.ndk_home is None:
        return None
    import tomllib

    pinned = tomllib.loads(NDK_PIN.read_text())["ndk"]
    found = _ndk_revision(settings.ndk_home)
    ok = found == pinned["revision"]
    detail = f"NDK {found} at {settings.ndk_home}" + ("" if ok else f" (pinned: {pinned['version']} = {pinned['revision']}; see ndk/README.md)")
    return ("Android NDK version", ok, detail)
