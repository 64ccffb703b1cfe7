#!/usr/bin/env bash
# mkbench's one entry point: on a lab machine, in the container, and in CI.
#
#   ./entrypoint.sh run-all [OPTIONS]   set up what is missing, then run the benchmark
#   ./entrypoint.sh test [PYTEST ARGS]  set up what the tests need, then run them
#   ./entrypoint.sh setup               only set up
#   ./entrypoint.sh appliance build     the appliance image (and a Docker engine, as root, when none answers)
#   ./entrypoint.sh engine              only a Docker engine
#   ./entrypoint.sh ANY MKBENCH COMMAND  e.g. ./entrypoint.sh doctor
#
# Setup is idempotent and quick once done: Debian packages (when root and missing), the
# Python package with its extras, llama-cpp-python built from source without native CPU
# flags (the native build crashes on some x86 CPUs), and the default model.
#
# In the appliance image (MKBENCH_APPLIANCE=1) it is the image's entry point instead: nothing is
# set up (the image has it all), an adb server is started inside unless ANDROID_ADB_SERVER_HOST /
# ANDROID_ADB_SERVER_PORT name the host's, and the command runs: `run-all` by default, `shell`
# for a shell, `test` for the tests of a checkout mounted on /opt/mkbench/checkout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"

log() { echo "mkbench-setup: $*" >&2; }

appliance_main() {
    mkdir -p "$MKBENCH_HOME" "$HOME"
    case "${1:-run-all}" in
        shell) shift; exec bash "$@" ;;
        test)
            # The tests of the checkout mounted read-only, against the image's mkbench, builds and
            # model (linked where the model tests look for it, so none is downloaded again).
            shift
            mkdir -p "$MKBENCH_HOME/test-models"
            ln -sf "${MKBENCH_IMAGE_MODELS:-/nonexistent}"/*.gguf "$MKBENCH_HOME/test-models/" 2>/dev/null || true
            cd /opt/mkbench/checkout
            MKBENCH_TEST_MODELS="$MKBENCH_HOME/test-models" PYTHONDONTWRITEBYTECODE=1 \
                exec python3 -m pytest -p no:cacheprovider -ra "$@" tests
            ;;
    esac
    if [ -f /opt/android-ndk/build/cmake/android.toolchain.cmake ]; then export ANDROID_NDK_HOME=/opt/android-ndk; fi
    # Only one adb server can own a phone: the host's when it is named, else one of our own.
    if [ -n "${ANDROID_ADB_SERVER_HOST:-}" ]; then export ANDROID_ADB_SERVER_ADDRESS="$ANDROID_ADB_SERVER_HOST"; fi
    if [ -z "${ANDROID_ADB_SERVER_ADDRESS:-}${ANDROID_ADB_SERVER_PORT:-}" ]; then
        adb start-server >/dev/null 2>&1 || echo "mkbench: could not start an adb server (phones and the emulator need one)" >&2
    fi
    # The image's model lives outside the data volume: register it in the volume's registry once
    # (hashed then, never again), so `models list` and runs find it verified.
    local model
    for model in "${MKBENCH_IMAGE_MODELS:-/nonexistent}"/*.gguf; do
        [ -f "$model" ] || continue
        grep -qsF "\"$model\"" "${MKBENCH_MODELS:-$MKBENCH_HOME/models}/registry.json" \
            || "$PYTHON" -m mkbench.cli models add "$model" >/dev/null
    done
    exec "$PYTHON" -m mkbench.cli "$@"
}

if [ "${MKBENCH_APPLIANCE:-}" = 1 ]; then
    appliance_main "${@:-run-all}"
fi

mapfile -t APT_PACKAGES < <(grep -v '^#' "$here/appliance/debian-packages")

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
        CMAKE_ARGS="-DGGML_NATIVE=OFF" "$PYTHON" -m pip install -q --no-cache-dir "llama-cpp-python==0.3.36" 2>&1 \
            | grep -v "^WARNING: Location" || true
    fi
    if ! "$PYTHON" -c "import mkbench, click, sqlite_utils, onnx, adbutils, _mnncengine, matplotlib, tree_sitter_cpp" 2>/dev/null \
        || [ "${MKBENCH_REINSTALL:-0}" = 1 ]; then
        log "installing mkbench[$extras]"
        CMAKE_ARGS="-DGGML_NATIVE=OFF" "$PYTHON" -m pip install -q --no-cache-dir -e "$here[$extras]" 2>&1 \
            | grep -v "^WARNING: Location" || true
    fi
}

setup_launcher() {
    # What `mkbench appliance` needs on a host: the package without its heavy extras (the image
    # has those), the Docker SDK (a dependency), and debootstrap for a base image without a registry.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v debootstrap >/dev/null; then
        log "installing debootstrap"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    if ! "$PYTHON" -c "import mkbench, click, docker, sqlite_utils, onnx" 2>/dev/null || [ "${MKBENCH_REINSTALL:-0}" = 1 ]; then
        log "installing mkbench[$1]"
        "$PYTHON" -m pip install -q --no-cache-dir -e "$here[$1]" 2>&1 | grep -v "^WARNING: Location" || true
    fi
}

engine_answers() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

setup_engine() {
    # A Docker engine for the appliance: the one running, else (as root) Debian's docker.io, started
    # here with no networking of its own (the appliance uses none, or the host's).
    engine_answers && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "no Docker engine answers: start one (systemctl start docker)"; return 1
    fi
    if ! command -v dockerd >/dev/null; then
        log "installing docker.io"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    fi
    if ! { [ -d /run/systemd/system ] && systemctl start docker 2>/dev/null; }; then
        log "starting dockerd (its log: /var/log/mkbench-dockerd.log)"
        nohup dockerd --iptables=false --bridge=none >/var/log/mkbench-dockerd.log 2>&1 &
    fi
    for _ in $(seq 60); do engine_answers && return 0; sleep 1; done
    log "the Docker engine did not answer within 60 s: see /var/log/mkbench-dockerd.log"; return 1
}

TEST_IMAGE="${MKBENCH_TEST_IMAGE:-mkbench:test}"
TEST_MODEL="qwen2.5-coder-0.5b-instruct-q4_k_m"

test_in_image() {
    # Every heavy build happens once, in the image, and the tests run where users run mkbench: the
    # image is built with the small model, the suite runs inside it against this checkout, then the
    # tests that drive the engine or need torch (never in the image) run here.
    local data inside=0 outside=0
    "$PYTHON" -m mkbench.cli appliance build --tag "$TEST_IMAGE" --model "$TEST_MODEL" || return $?
    data="$(mktemp -d "${TMPDIR:-/tmp}/mkbench-test-data.XXXXXX")"
    "$PYTHON" -m mkbench.cli appliance run --image "$TEST_IMAGE" --data "$data" --checkout "$here" --writable \
        --network host --cap-add SYS_ADMIN --cap-add SYS_PTRACE -- test "$@" || inside=$?
    rm -rf "$data"
    cd "$here"
    MKBENCH_TEST_IMAGE="$TEST_IMAGE" "$PYTHON" -m pytest -ra "$@" -m "engine or torch" tests || outside=$?
    echo "mkbench-test: in the image: exit $inside; engine and torch tests here: exit $outside" >&2
    [ "$inside" = 0 ] && return "$outside"
    return "$inside"
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
        # Here, by default. MKBENCH_TEST_IN=image (with a Docker engine): build the image with the
        # small model, run the suite inside it, and the engine and torch tests here (a cold image
        # build, about 40 minutes on two cores, and the suite inside it exceed CI's 60: CI runs here).
        shift || true
        if [ "${MKBENCH_TEST_IN:-host}" = image ] && engine_answers; then
            setup_launcher "test"; setup_torch
            test_in_image "$@"; exit $?
        fi
        setup_debian; setup_python "llm,agents,report,test"; setup_torch
        cd "$here"
        exec "$PYTHON" -m pytest -ra "$@" tests
        ;;
    engine)
        setup_engine
        ;;
    appliance)
        setup_engine || exit 1
        setup_launcher "test"
        exec "$PYTHON" -m mkbench.cli "$@"
        ;;
    *)
        setup_debian; setup_python "llm,agents,report"
        exec "$PYTHON" -m mkbench.cli "$@"
        ;;
esac
