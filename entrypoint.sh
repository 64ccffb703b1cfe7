#!/usr/bin/env bash
# mkbench's one entry point: on a lab machine, in the container, and in CI.
#
#   ./entrypoint.sh run-all [OPTIONS]   set up what is missing, then run the benchmark
#   ./entrypoint.sh test [PYTEST ARGS]  set up what the tests need, then run them
#   ./entrypoint.sh setup               only set up
#   ./entrypoint.sh ANY MKBENCH COMMAND  e.g. ./entrypoint.sh doctor
#
# Setup is idempotent and quick once done: Debian packages (when root and missing), the
# Python package with its extras, llama-cpp-python built from source without native CPU
# flags (the native build crashes on some x86 CPUs), and the default model.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"

APT_PACKAGES=(g++ cmake ninja-build ccache g++-aarch64-linux-gnu qemu-user-static adb clang strace bubblewrap)

log() { echo "mkbench-setup: $*" >&2; }

setup_debian() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "missing Debian packages: ${missing[*]} (install them, or run as root)"; return 0
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

setup_python() {
    local extras="$1"
    # llama-cpp-python first, without native CPU flags: the `llm` extra below must find it
    # installed, or pip would build it with the defaults (which crash on some x86 CPUs).
    if ! "$PYTHON" -c "import llama_cpp" 2>/dev/null; then
        log "building llama-cpp-python from source (about 4 minutes on 2 cores)"
        CMAKE_ARGS="-DGGML_NATIVE=OFF" "$PYTHON" -m pip install -q --no-cache-dir llama-cpp-python 2>&1 \
            | grep -v "^WARNING: Location" || true
    fi
    if ! "$PYTHON" -c "import mkbench, click, sqlite_utils, onnx, adbutils, _mnncengine, matplotlib, tree_sitter_cpp" 2>/dev/null \
        || [ "${MKBENCH_REINSTALL:-0}" = 1 ]; then
        log "installing mkbench[$extras]"
        CMAKE_ARGS="-DGGML_NATIVE=OFF" "$PYTHON" -m pip install -q --no-cache-dir -e "$here[$extras]" 2>&1 \
            | grep -v "^WARNING: Location" || true
    fi
}

setup_torch() {
    # torch is only needed to import KernelBench-format task files and to test the modules.
    "$PYTHON" -c "import torch, onnxscript" 2>/dev/null && return 0
    log "installing torch (CPU) and onnxscript for the task-import tests"
    "$PYTHON" -m pip install -q "torch==2.13.0" onnxscript 2>&1 | grep -v "^WARNING: Location" \
        || log "torch is not available here: the tests that need it will skip"
}

command="${1:-run-all}"
case "$command" in
    setup)
        setup_debian; setup_python "llm,agents,report,test"
        ;;
    test)
        shift || true
        setup_debian; setup_python "llm,agents,report,test"; setup_torch
        cd "$here"
        exec "$PYTHON" -m pytest -ra "$@" tests
        ;;
    *)
        setup_debian; setup_python "llm,agents,report"
        exec "$PYTHON" -m mkbench.cli "$@"
        ;;
esac
