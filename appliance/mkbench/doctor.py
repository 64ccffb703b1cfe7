"""`mkbench doctor`: what this machine has for the benchmark, and how to get what it lacks.

It sits above the modules it reports on: each owner of a resource says how it is doing with
`doctor_checks(settings) -> list[Check]` (Check lives in the leaf module checks.py).
"""

from __future__ import annotations

import importlib.util
import shutil

from . import settings as settings_module
from .checks import Check
from .devices import doctor_checks as device_checks
from .llm.models import doctor_checks as model_checks
from .mnn.status import doctor_checks as mnn_checks
from .sandbox import doctor_checks as sandbox_checks


def _tool(name: str, binary: str, how: str) -> Check:
    path = shutil.which(binary)
    return Check(name, path is not None, path or f"missing: {how}")


def _module(name: str, module: str, how: str) -> Check:
    found = importlib.util.find_spec(module) is not None
    return Check(name, found, "installed" if found else f"missing: {how}")


def run_checks(s: settings_module.Settings) -> list[Check]:
    """Check compilers, the MNN tree and builds, models, adb and devices; never raises."""
    checks = [
        _tool("host C++ compiler", "g++", "apt-get install g++"),
        _tool("cmake", "cmake", "apt-get install cmake"),
        _tool("ninja", "ninja", "apt-get install ninja-build"),
        _tool("ccache", "ccache", "apt-get install ccache"),
        _arm64_toolchain(s),
        _tool("qemu-aarch64-static", "qemu-aarch64-static", "apt-get install qemu-user-static"),
        _tool("adb", "adb", "apt-get install adb"),
        _module("onnx", "onnx", "pip install onnx"),
        _module("MNN runtime (wheel)", "_mnncengine", "pip install MNN==3.6.1"),
        _module("llama-cpp-python", "llama_cpp", 'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-cache-dir llama-cpp-python'),
        _module("torch (task import only)", "torch", 'pip install "mkbench[torch]"'),
    ]
    checks += _extra_checks(s)
    return checks


def _arm64_toolchain(s: settings_module.Settings) -> Check:
    if s.ndk_home:
        ok = s.ndk_home.is_dir()
        return Check("arm64 toolchain", ok, f"Android NDK at {s.ndk_home}" if ok else f"ANDROID_NDK_HOME={s.ndk_home} is not a folder")
    return _tool("arm64 toolchain", "aarch64-linux-gnu-g++", "set ANDROID_NDK_HOME or apt-get install g++-aarch64-linux-gnu")


def _extra_checks(s: settings_module.Settings) -> list[Check]:
    """Checks owned by the modules that own a resource (MNN tree and builds, models, devices, the jail),
    each isolated from failure: a broken probe is itself a finding, never a crash."""
    checks: list[Check] = []
    for name, probe in (("mnn", mnn_checks), ("models", model_checks), ("devices", device_checks), ("sandbox", sandbox_checks)):
        try:
            checks.extend(probe(s))
        except Exception as error:
            checks.append(Check(f"{name} checks", False, f"check failed: {error}"))
    return checks
