"""arm64 binaries on this machine under qemu-aarch64-static: correctness only, never speed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from . import files
from .fingerprint import ARM_FEATURES
from .local import LocalDevice

QEMU = "qemu-aarch64-static"


def available() -> bool:
    return shutil.which(QEMU) is not None


def qemu_version() -> str | None:
    if not available():
        return None
    try:
        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None


class QemuDevice(LocalDevice):
    """Runs aarch64 ELF programs through qemu-aarch64-static; other programs run directly."""

    SERIAL = "qemu-arm64"
    abi = "arm64-v8a"
    emulated = True

    def command(self, argv: list[str], cwd: str) -> list[str]:
        if not available():
            raise FileNotFoundError(f"{QEMU} is not installed: apt-get install qemu-user-static")
        if argv and files.is_aarch64_elf(Path(cwd) / argv[0]):
            # no core file from qemu when the guest crashes (a phone leaves none either)
            # A program it starts (the judge's guard starts the runner) goes through qemu too.
            return ["/bin/sh", "-c", f'ulimit -c 0 2>/dev/null; export MKBENCH_EXEC_PREFIX={QEMU}; exec "$@"', "qemu", QEMU,
                    *argv]
        return list(argv)

    def _describe(self, fp: dict) -> dict:
        # qemu's default "max" CPU implements every feature below; the host's CPU says nothing.
        return fp | {
            "model": f"{qemu_version() or QEMU} on {fp.get('model')}",
            "soc": "qemu-user (emulated)",
            "machine": "aarch64",
            "features": {name: True for name in ARM_FEATURES},
            "pinning": "none (emulated)",
        }
