"""Devices: where candidates run. One small protocol; the host, qemu, and phones over adb.

    get_device("host", settings)    this machine (x86_64, real timings)
    get_device("qemu-arm64")        this machine running arm64 binaries under qemu (correctness only)
    get_device("R58M123ABC")        a phone on the local adb server
    get_device("127.0.0.1:5599")    a TCP device (the mkbench emulator), connected if need be
    get_device("R58M123ABC@lab-pc:5037")   a phone on a remote adb server
    get_device("lab-pc:5037")       the one phone on a remote adb server

A device whose `emulated` is True gives correctness only: its timings are never reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class RunResult:
    """How one program run on a device ended."""

    exit_code: int | None  # None when killed by timeout or signal
    stdout: str
    stderr: str
    seconds: float  # wall time seen by the host
    timed_out: bool
    signal: int | None  # the signal that killed it, if any (e.g. 11 for a segfault)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class DeviceLost(RuntimeError):
    """The device went away (unplugged, offline, emulator killed, adb server gone) mid-operation."""


class DeviceNotFound(LookupError):
    """No device answers to that name."""


@runtime_checkable
class Device(Protocol):
    serial: str  # "host", "qemu-arm64", or an adb serial like "127.0.0.1:5599"
    abi: str  # "x86_64" | "arm64-v8a"
    emulated: bool  # True: timings are not reportable as performance

    def fingerprint(self) -> dict: ...  # JSON-able; includes serial, abi, emulated, model, cores...
    def workdir(self, run_name: str) -> str: ...  # a fresh per-run folder on the device, created
    def push(self, local: Path, remote: str) -> None: ...  # skips unchanged files (content hash cache)
    def pull(self, remote: str, local: Path) -> None: ...  # a file or a whole folder
    def run(self, argv: list[str], cwd: str, timeout: float, pin_big_cores: bool = True,
            writable: Sequence[str] = ()) -> RunResult: ...  # writable: what the program may write (jailed devices)
    def remove(self, remote: str) -> None: ...
    def read_state(self) -> dict: ...  # frequencies + temperatures now (for before/after records)


@dataclass(frozen=True)
class DeviceReport:
    """One line of `mkbench devices`: a device's name, its state, and its fingerprint if usable."""

    name: str
    state: str  # device | offline | unauthorized | ... | error
    fingerprint: dict | None
    detail: str = ""


def get_device(name: str, settings=None) -> Device:
    """The device called `name` (see the module docstring); raises DeviceNotFound. The host and
    qemu keep their working folders under the settings' cache, so they need settings; a phone does not."""
    from . import adb, host, qemu

    if name in (host.HostDevice.SERIAL, qemu.QemuDevice.SERIAL):
        if settings is None:
            raise ValueError(f"device {name} works in a folder of the settings' cache: pass the settings")
        return (host.HostDevice if name == host.HostDevice.SERIAL else qemu.QemuDevice)(settings)
    return adb.find_device(name)


def list_devices(settings, servers: Sequence[str] = ()) -> list[Device]:
    """Every usable device: the host, qemu-arm64 (if installed), and each adb device online."""
    return [get_device(r.name, settings) for r in survey(settings, servers) if r.state == "device" and r.fingerprint is not None]


def survey(settings, servers: Sequence[str] = ()) -> list[DeviceReport]:
    """Every device the adb servers see (plus host and qemu), with fingerprints where reachable."""
    from . import adb, host, qemu

    reports = [DeviceReport(host.HostDevice.SERIAL, "device", host.HostDevice(settings).fingerprint())]
    if qemu.available():
        reports.append(DeviceReport(qemu.QemuDevice.SERIAL, "device", qemu.QemuDevice(settings).fingerprint()))
    reports += adb.survey(servers)
    return reports


def device_id(device: Device) -> str:
    """The id a device's rows are stored under: sha256 of its fingerprint (clocks and heat aside)."""
    from .fingerprint import device_id as fingerprint_id

    return fingerprint_id(device.fingerprint())


def store_device(db, device: Device) -> str:
    """Record the device in the `devices` table (once per fingerprint); returns its id."""
    from ..store import rows

    return rows.store_device(db, device_id(device), device.serial, device.emulated, device.abi, device.fingerprint())


def doctor_checks(settings) -> list:
    """adb installed, its server running, devices seen, the emulator (for `mkbench doctor`)."""
    from . import adb, emulator_ctl

    return adb.doctor_checks(settings) + emulator_ctl.doctor_checks(settings)
