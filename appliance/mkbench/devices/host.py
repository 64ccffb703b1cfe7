"""The machine itself as a device: x86_64, local processes, real timings."""

from __future__ import annotations

import platform

from .local import LocalDevice


class HostDevice(LocalDevice):
    """Runs x86_64 programs here, in a folder under MKBENCH_HOME's cache."""

    SERIAL = "host"
    abi = "x86_64"
    emulated = False

    def _describe(self, fp: dict) -> dict:
        return fp | {
            "os": f"{platform.system()} {platform.release()}",
            "pinning": "none (no big.LITTLE on this host)",
        }
