"""`mkbench emulator start|stop|status`: the emulator as a background process with a pid file.

State lives in MKBENCH_HOME/emulator/<port>/: emulator.pid, emulator.log and (by default) the
sandbox folder. Starting also attaches the emulator to the adb server (`adb connect`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .emulator import DEFAULT_PORT


class EmulatorError(RuntimeError):
    """The emulator could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class EmulatorStatus:
    port: int
    running: bool
    pid: int | None
    serial: str  # the adb serial it has once connected: 127.0.0.1:PORT
    sandbox: str
    log: str
    adb_state: str | None  # device | offline | absent | None (no adb server)


def _state_dir(settings, port: int) -> Path:
    return settings.home / "emulator" / str(port)


def _pid_file(settings, port: int) -> Path:
    return _state_dir(settings, port) / "emulator.pid"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_emulator(pid: int | None) -> bool:
    """A live emulator process (not a zombie, not another program that reused the pid)?"""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"mkbench.devices.emulator" in cmdline


def _adb_state(serial: str) -> str | None:
    from .adb import AdbServer

    server = AdbServer.default()
    if not server.reachable():
        return None
    try:
        return next((i.state for i in server.client().list() if i.serial == serial), "absent")
    except Exception:  # an adb server going away mid-question is not the emulator's status
        return None


def status(settings, port: int = DEFAULT_PORT) -> EmulatorStatus:
    """Is the emulator on this port running, and does the adb server see it?"""
    pid = _read_pid(_pid_file(settings, port))
    running = _is_emulator(pid)
    serial = f"127.0.0.1:{port}"
    sandbox = _sandbox_of(pid) if running else None
    return EmulatorStatus(port, running, pid if running else None, serial,
                          str(sandbox or _state_dir(settings, port) / "sandbox"),
                          str(_state_dir(settings, port) / "emulator.log"), _adb_state(serial) if running else None)


def status_all(settings) -> list[EmulatorStatus]:
    """The status of every emulator this MKBENCH_HOME has started."""
    base = settings.home / "emulator"
    ports = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit()) if base.is_dir() else []
    return [status(settings, port) for port in ports]


def _sandbox_of(pid: int) -> str | None:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return args[args.index(b"--sandbox") + 1].decode()
    except (OSError, ValueError, IndexError):
        return None


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def start(settings, port: int = DEFAULT_PORT, sandbox: Path | None = None, connect: bool = True,
          timeout: float = 20) -> EmulatorStatus:
    """Start the emulator in the background (if not running) and attach it to the adb server."""
    current = status(settings, port)
    if not current.running:
        if not _port_free(port):
            raise EmulatorError(f"port {port} is taken by another program: choose one with --port")
        state_dir = _state_dir(settings, port)
        state_dir.mkdir(parents=True, exist_ok=True)
        pid_file = _pid_file(settings, port)
        pid_file.unlink(missing_ok=True)
        sandbox = Path(sandbox or state_dir / "sandbox").resolve()
        log_path = state_dir / "emulator.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "mkbench.devices.emulator", "--port", str(port), "--sandbox", str(sandbox),
                 "--pid-file", str(pid_file), "--verbose"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True)
        deadline = time.monotonic() + timeout
        while _read_pid(pid_file) != process.pid:
            if process.poll() is not None or time.monotonic() > deadline:
                if process.poll() is None:
                    process.kill()
                process.wait(timeout=5)
                tail = log_path.read_text(errors="replace")[-800:]
                raise EmulatorError(f"the emulator did not start (see {log_path}):\n{tail}")
            time.sleep(0.05)
    if connect:
        _connect(port, timeout)
    return status(settings, port)


def _connect(port: int, timeout: float) -> None:
    from .adb import AdbServer, attach

    serial = f"127.0.0.1:{port}"
    state = attach(AdbServer.default().client(start=True), serial, timeout)
    if state != "device":
        raise EmulatorError(f"the adb server does not see the emulator at {serial} online (state: {state})")


def stop(settings, port: int = DEFAULT_PORT, timeout: float = 10) -> EmulatorStatus:
    """Detach the emulator from the adb server and end its process."""
    from .adb import AdbServer

    serial = f"127.0.0.1:{port}"
    server = AdbServer.default()
    if server.reachable():
        try:
            server.client().disconnect(serial)
        except Exception:  # not connected is fine
            pass
    pid_file = _pid_file(settings, port)
    pid = _read_pid(pid_file)
    if _is_emulator(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_emulator(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if _is_emulator(pid):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
    pid_file.unlink(missing_ok=True)
    return status(settings, port)


def _reap(pid: int) -> None:
    """Collect the exit status if the emulator is our own child (a test, say)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def doctor_checks(settings) -> list:
    from ..checks import Check

    running = [s for s in status_all(settings) if s.running]
    if running:
        return [Check("mkbench emulator", True, ", ".join(f"{s.serial} (adb: {s.adb_state})" for s in running))]
    return [Check("mkbench emulator", True, "not running (optional): `mkbench emulator start` for a phone-less lab")]
