"""Phones (and the mkbench emulator) through an adb server, with adbutils.

Files go to /data/local/tmp/mkbench/<run>. Each distinct file content is uploaded once, to
/data/local/tmp/mkbench/.blobs/<sha256> (the 64 most recently used are kept), and copied on the
device into each run folder. Runs use
the shell v2 protocol (exit code and stderr apart), are bounded by toybox `timeout` on the
device and by a deadline on the host, and are pinned to the big cores with `taskset`. Any
failure that leaves the device not in the "device" state raises DeviceLost.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
import socket
import stat as stat_module
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import adbutils
from adbutils import AdbConnection

from . import DeviceLost, DeviceNotFound, DeviceReport, RunResult, adbwire, files, fingerprint
from .local import check_run_name

DEVICE_ROOT = "/data/local/tmp/mkbench"
BLOBS = f"{DEVICE_ROOT}/.blobs"
BLOBS_KEPT = 64  # the most recently used contents stay on the device; older ones are pruned
DEFAULT_PORT = 5037
KILL_AFTER = 2.0  # seconds between the device-side timeout's TERM and its KILL
HOST_GRACE = 10.0  # how much longer than the device-side timeout the host waits
LOST_STATES_WAIT = 3.0  # how long to watch a device's state after an error before deciding


class AdbServerError(RuntimeError):
    """No adb server to talk to, and none could be started."""


class AdbCommandError(RuntimeError):
    """A device command failed while the device stayed online."""


# ---------------------------------------------------------------- the adb server
@dataclass(frozen=True)
class AdbServer:
    """Where an adb server listens."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_local(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1")

    @classmethod
    def parse(cls, spec: str) -> "AdbServer":
        """`host:port`, `port`, or adb's own `tcp:host:port` / `tcp:port`."""
        text = spec.removeprefix("tcp:")
        host, _, port = text.rpartition(":")
        if not port.isdigit():
            raise ValueError(f"adb server {spec!r} is not host:port")
        return cls(host or "127.0.0.1", int(port))

    @classmethod
    def default(cls) -> "AdbServer":
        """The server the `adb` command would use (ADB_SERVER_SOCKET, ANDROID_ADB_SERVER_*)."""
        socket_spec = os.environ.get("ADB_SERVER_SOCKET")
        if socket_spec and socket_spec.startswith("tcp:"):
            server = cls.parse(socket_spec)
            return cls("127.0.0.1", server.port) if server.host == "localhost" else server
        port = os.environ.get("ANDROID_ADB_SERVER_PORT", "")
        host = os.environ.get("ANDROID_ADB_SERVER_ADDRESS") or "127.0.0.1"
        return cls(host, int(port) if port.isdigit() else DEFAULT_PORT)

    def reachable(self, timeout: float = 1.0) -> bool:
        """Does an adb server answer host:version here?"""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
                sock.settimeout(timeout)
                sock.sendall(b"000chost:version")
                return sock.recv(4) == b"OKAY"
        except OSError:
            return False

    def start(self) -> None:
        """Start a local adb server on this port, or say how to get one."""
        if self.reachable():
            return
        if not self.is_local:
            raise AdbServerError(f"no adb server answers at {self}: start it there with `adb -a -P {self.port} server nodaemon`")
        adb = shutil.which("adb")
        if adb is None:
            raise AdbServerError("adb is not installed: apt-get install adb (or put Android platform-tools on PATH)")
        env = {k: v for k, v in os.environ.items() if k not in ("ANDROID_ADB_SERVER_PORT", "ANDROID_ADB_SERVER_ADDRESS")}
        env["ADB_SERVER_SOCKET"] = f"tcp:localhost:{self.port}"
        try:
            result = subprocess.run([adb, "start-server"], env=env, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            raise AdbServerError(f"`adb start-server` on port {self.port} did not finish in 30 s") from None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.reachable():
                return
            time.sleep(0.1)
        raise AdbServerError(f"could not start an adb server on port {self.port}: {result.stderr.strip()[-300:]}")

    def kill(self) -> None:
        """Stop the server if one answers (`adb kill-server`)."""
        if self.reachable():
            try:
                self.client().server_kill()
            except adbutils.AdbError:
                pass

    def client(self, start: bool = False) -> "_Client":
        """An adbutils client for this server (starting a local one first if asked)."""
        if start:
            self.start()
        return _Client(self.host, self.port)


class _Connection(AdbConnection):
    """adbutils' connection without its fallback of spawning `adb start-server` on port 5037."""

    def _safe_connect(self):
        return self._create_socket()


class _Client(adbutils.AdbClient):
    def make_connection(self, timeout: float | None = None) -> AdbConnection:
        connection = _Connection(self.host, self.port)
        if timeout:
            connection.conn.settimeout(timeout)
        return connection


# ---------------------------------------------------------------- the device
@dataclass(frozen=True)
class ShellOutcome:
    exit_code: int | None  # None: the host-side deadline passed first
    stdout: bytes
    stderr: bytes
    seconds: float


class AdbDevice:
    """A phone (or the emulator) reached through an adb server."""

    abi: str
    emulated: bool

    def __init__(self, adb_serial: str, server: AdbServer | None = None):
        self.server = server or AdbServer.default()
        self.adb_serial = adb_serial
        self.serial = adb_serial if self.server == AdbServer.default() else f"{adb_serial}@{self.server}"
        self._client = self.server.client(start=True)
        self._device = self._client.device(adb_serial)
        self._fingerprint: dict | None = None
        self._blobs: set[str] = set()
        self.uploads = 0  # files sent over adb (the rest came from the blob store)
        self._pin_mask: str | None = None
        state = self.state()
        if state == "absent":
            raise DeviceNotFound(f"no device {adb_serial!r} on the adb server at {self.server}")
        if state == "unauthorized":
            raise DeviceNotFound(f"{self.serial} is unauthorized: accept the USB debugging prompt on the phone")
        if state != "device":
            raise DeviceLost(f"{self.serial} is {state}")
        self._features = set(self._guard(lambda: self._device.get_features().split(",")))
        props = fingerprint.parse_getprop(self.shell("getprop").decode("utf-8", "replace").splitlines())
        self.abi = props.get("ro.product.cpu.abi") or "arm64-v8a"
        self.emulated = props.get("ro.kernel.qemu") == "1" or props.get("mkbench.emulated") == "1"

    def __repr__(self) -> str:
        return f"AdbDevice({self.serial!r})"

    # ------------------------------------------------------------ liveness
    def state(self) -> str:
        """device | offline | unauthorized | ... | absent (not listed) | no-server."""
        try:
            for info in self._client.list():
                if info.serial == self.adb_serial:
                    return info.state
            return "absent"
        except (adbutils.AdbError, OSError):
            return "no-server"

    def _lost(self, error: BaseException, what: str) -> Exception:
        """DeviceLost if the device left the "device" state around this error, else a plain error."""
        deadline = time.monotonic() + LOST_STATES_WAIT
        while True:
            state = self.state()
            if state != "device":
                return DeviceLost(f"{self.serial} was lost during {what}: it is {state} ({error})")
            if time.monotonic() >= deadline:
                return AdbCommandError(f"{self.serial}: {what} failed: {error}")
            time.sleep(0.2)

    def _guard(self, action, what: str = "an adb command"):
        try:
            return action()
        except (adbutils.AdbError, OSError, EOFError) as error:
            raise self._lost(error, what) from error

    # ------------------------------------------------------------ shell
    def _open_service(self, service: str) -> AdbConnection:
        connection = self._device.open_transport(timeout=15)
        connection.send_command(service)
        connection.check_okay()
        return connection

    def shell_outcome(self, command: str, timeout: float | None = None) -> ShellOutcome:
        """Run a shell command (shell v2: exit code and stderr apart); None exit on host deadline."""
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        if "shell_v2" not in self._features:
            return self._shell_v1(command, start, timeout)
        try:
            connection = self._open_service(f"shell,v2,raw:{command}")
        except (adbutils.AdbError, OSError, EOFError) as error:
            raise self._lost(error, "shell") from error
        out, err = bytearray(), bytearray()
        code: int | None = None
        try:
            sock = connection.conn
            sock.sendall(adbwire.shell_packet(adbwire.SHELL_CLOSE_STDIN))
            buffer = bytearray()
            while code is None:
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    sock.settimeout(remaining)
                else:
                    sock.settimeout(None)
                try:
                    chunk = sock.recv(256 * 1024)
                except socket.timeout:
                    break
                if not chunk:
                    raise EOFError("the shell stream ended without an exit status")
                buffer += chunk
                while len(buffer) >= adbwire.SHELL_HEADER.size:
                    packet_id, length = adbwire.SHELL_HEADER.unpack_from(buffer)
                    if len(buffer) < adbwire.SHELL_HEADER.size + length:
                        break
                    data = bytes(buffer[adbwire.SHELL_HEADER.size:adbwire.SHELL_HEADER.size + length])
                    del buffer[:adbwire.SHELL_HEADER.size + length]
                    if packet_id == adbwire.SHELL_STDOUT:
                        out += data
                    elif packet_id == adbwire.SHELL_STDERR:
                        err += data
                    elif packet_id == adbwire.SHELL_EXIT:
                        code = data[0] if data else 255
        except (adbutils.AdbError, OSError, EOFError) as error:
            raise self._lost(error, "shell") from error
        finally:
            connection.close()
        return ShellOutcome(code, bytes(out), bytes(err), time.monotonic() - start)

    def _shell_v1(self, command: str, start: float, timeout: float | None) -> ShellOutcome:
        """Devices before Android 7 lack shell v2: stderr is merged, the status echoed after."""
        try:
            result = self._guard(lambda: self._device.shell2(command, timeout=timeout, encoding=None), "shell")
        except AdbCommandError as error:
            if isinstance(error.__cause__, adbutils.AdbTimeout):
                return ShellOutcome(None, b"", b"", time.monotonic() - start)
            raise
        return ShellOutcome(result.returncode, result.output, b"", time.monotonic() - start)

    def shell(self, command: str, timeout: float = 60, check: bool = True) -> bytes:
        """stdout of a command; with check, a non-zero exit raises AdbCommandError."""
        outcome = self.shell_outcome(command, timeout)
        if check and outcome.exit_code != 0:
            raise AdbCommandError(f"{self.serial}: `{command[:200]}` exited {outcome.exit_code}: "
                                  f"{outcome.stderr.decode('utf-8', 'replace').strip()[-500:]}")
        return outcome.stdout

    # ------------------------------------------------------------ Device protocol
    def fingerprint(self) -> dict:
        if self._fingerprint is None:
            text = self.shell(fingerprint.PROBE_SCRIPT, timeout=60).decode("utf-8", "replace")
            fp = fingerprint.build(text, serial=self.serial, abi=self.abi, emulated=self.emulated)
            fp["adb_server"] = str(self.server)
            # Some phones park or isolate big cores; pin only if the mask is accepted.
            probe = self.shell_outcome(f"taskset {fp['big_core_mask']} true", timeout=30)
            if probe.exit_code == 0:
                self._pin_mask = fp["big_core_mask"]
                fp["pinning"] = f"taskset {self._pin_mask}"
            else:
                fp["pinning"] = f"none (taskset {fp['big_core_mask']} refused: {probe.stderr.decode('utf-8', 'replace').strip()[:200]})"
            # Rooted: the big cores' clocks held at one frequency (and said so: it is part of the id).
            lock = self.shell_outcome(fingerprint.lock_script(fp["big_cores"]), timeout=60)
            fp["clocks"] = fingerprint.parse_lock(lock.stdout.decode("utf-8", "replace"))
            self._fingerprint = fp
        return self._fingerprint

    def read_state(self) -> dict:
        return fingerprint.state_from(self.shell(fingerprint.STATE_SCRIPT, timeout=30).decode("utf-8", "replace"))

    def workdir(self, run_name: str) -> str:
        folder = f"{DEVICE_ROOT}/{check_run_name(run_name)}"
        prune = f"cd {BLOBS} && ls -t | tail -n +{BLOBS_KEPT + 1} | xargs rm -f"
        self.shell(f"rm -rf {folder} && mkdir -p {folder} {BLOBS} && ({prune})")
        return folder

    def push(self, local: Path, remote: str) -> None:
        """Send a file or folder; each content travels once (then it is copied on the device), and
        every file is checked by sha256 as the device holds it: a cached blob that an earlier program
        rewrote (a candidate runs as the same shell user) is uploaded again, never trusted by size."""
        local = Path(local)
        if not local.exists():
            raise FileNotFoundError(f"nothing to push at {local}")
        for attempt in range(2):
            self._copy(local, remote)
            wrong = self._altered(local, remote)
            if not wrong:
                return
            for digest in wrong:
                self._blobs.discard(digest)
                self.shell(f"rm -f {BLOBS}/{digest}")
        raise AdbCommandError(f"{self.serial}: pushed files differ from their content after a second upload ({remote})")

    def _copy(self, local: Path, remote: str) -> None:
        copies = []
        for source, relative in files.files_under(local):
            target = posixpath.join(remote, relative) if relative else remote
            blob = self._blob(source)
            mode = stat_module.S_IMODE(source.stat().st_mode)
            copies.append(f"mkdir -p {shlex.quote(posixpath.dirname(target))} && cp {blob} {shlex.quote(target)} "
                          f"&& chmod {mode:o} {shlex.quote(target)} && touch {blob}")
        for start in range(0, len(copies), 50):
            script = " && ".join(copies[start:start + 50])
            outcome = self.shell_outcome(script, timeout=300)
            if outcome.exit_code != 0:  # a blob may have been deleted behind our back: send again
                self._blobs.clear()
                for source, _ in files.files_under(local):
                    self._blob(source)
                self.shell(script, timeout=300)

    def _altered(self, local: Path, remote: str) -> set[str]:
        """The digests of the pushed files whose copy on the device does not hash to them."""
        expected = {posixpath.join(remote, relative) if relative else remote: files.sha256(source)
                    for source, relative in files.files_under(local)}
        listing = self.shell("sha256sum " + " ".join(shlex.quote(p) for p in expected), timeout=300).decode()
        found = {parts[1]: parts[0] for parts in (line.split() for line in listing.splitlines()) if len(parts) == 2}
        return {digest for path, digest in expected.items() if found.get(path) != digest}

    def _blob(self, source: Path) -> str:
        """The device path of the file's content, uploading it if the device lacks it."""
        digest = files.sha256(source)
        blob = f"{BLOBS}/{digest}"
        if digest in self._blobs:
            return blob
        size = source.stat().st_size
        sync = self._device.sync
        info = self._guard(lambda: sync.stat(blob), "stat")
        # A blob of the right size is whole: an interrupted upload leaves it short.
        if not (stat_module.S_ISREG(info.mode) and info.size == size & 0xFFFFFFFF):
            mode = stat_module.S_IMODE(source.stat().st_mode) or 0o644
            self._guard(lambda: sync.push(str(source), blob, mode=mode, check=True), "push")
            self.uploads += 1
        self._blobs.add(digest)
        return blob

    def pull(self, remote: str, local: Path) -> None:
        local = Path(local)
        sync = self._device.sync
        info = self._guard(lambda: sync.stat(remote), "stat")
        if info.mode == 0:
            raise FileNotFoundError(f"{self.serial}: nothing at {remote}")
        if stat_module.S_ISDIR(info.mode):
            local.mkdir(parents=True, exist_ok=True)
            self._guard(lambda: sync.pull_dir(remote, local, exist_ok=True), "pull")
        else:
            local.parent.mkdir(parents=True, exist_ok=True)
            self._guard(lambda: sync.pull_file(remote, local), "pull")

    def remove(self, remote: str) -> None:
        """Delete a file or folder under /data/local/tmp/mkbench (nothing else)."""
        clean = posixpath.normpath(remote)
        if not clean.startswith(DEVICE_ROOT + "/"):
            raise ValueError(f"{self.serial}: refusing to remove {remote}, outside {DEVICE_ROOT}")
        self.shell(f"rm -rf {shlex.quote(clean)}")

    def run(self, argv: list[str], cwd: str, timeout: float, pin_big_cores: bool = True,
            writable: Sequence[str] = ()) -> RunResult:
        """Run argv in cwd, bounded by `timeout` on the device and (with a grace) on the host. A phone
        has no jail (`writable` is for jailed devices); each evaluation gets a fresh folder instead,
        and every pushed file is checked by sha256 on the device. When the host's deadline passes
        without an answer and the phone is gone, that is DeviceLost, not the program's timeout."""
        program = " ".join(shlex.quote(a) for a in argv)
        if pin_big_cores:
            self.fingerprint()
            if self._pin_mask:
                program = f"taskset {self._pin_mask} {program}"
        command = f"cd {shlex.quote(cwd)} && exec timeout -k {KILL_AFTER:g} {timeout:.3f} {program}"
        outcome = self.shell_outcome(command, timeout=timeout + KILL_AFTER + HOST_GRACE)
        if outcome.exit_code is None:  # no answer in time: the program hung, or the phone went away
            state = self.state()
            if state != "device":
                raise DeviceLost(f"{self.serial} went away during a run: it is {state}")
        return interpret(outcome, timeout)


def interpret(outcome: ShellOutcome, timeout: float) -> RunResult:
    """RunResult from a shell outcome: 124 (or a KILL) past the timeout is a timeout, 128+N signal N."""
    stdout, stderr = outcome.stdout.decode("utf-8", "replace"), outcome.stderr.decode("utf-8", "replace")
    code = outcome.exit_code
    if code is None or (code in (124, 137) and outcome.seconds >= timeout):
        return RunResult(None, stdout, stderr, outcome.seconds, True, None)
    if 128 < code <= 128 + 64:
        return RunResult(None, stdout, stderr, outcome.seconds, False, code - 128)
    return RunResult(code, stdout, stderr, outcome.seconds, False, None)


# ---------------------------------------------------------------- finding devices
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]+:\d+$")


def find_device(name: str) -> AdbDevice:
    """An adb device by serial, `serial@host:port`, a remote server `host:port`, or a TCP address."""
    if "@" in name:
        serial, _, server_spec = name.rpartition("@")
        return AdbDevice(serial, AdbServer.parse(server_spec))
    server = AdbServer.default()
    if server.reachable() and any(i.serial == name and i.state == "device" for i in server.client().list()):
        return AdbDevice(name, server)
    if _HOST_PORT.match(name):
        remote = AdbServer.parse(name)
        if remote != server and remote.reachable():
            online = [info.serial for info in remote.client().list() if info.state == "device"]
            if len(online) == 1:
                return AdbDevice(online[0], remote)
            raise DeviceNotFound(f"the adb server at {name} has {len(online)} devices online: "
                                 f"name one as SERIAL@{name} ({', '.join(online) or 'none'})")
    client = server.client(start=True)
    serials = {info.serial: info.state for info in client.list()}
    if serials.get(name) != "device" and _HOST_PORT.match(name):
        attach(client, name)  # a phone in TCP mode, or the mkbench emulator
        serials[name] = next((i.state for i in client.list() if i.serial == name), "absent")
    if name in serials and serials[name] != "absent":
        return AdbDevice(name, server)  # raises DeviceLost / DeviceNotFound if not usable
    known = ", ".join(sorted(s for s in serials if s != name)) or "none"
    raise DeviceNotFound(f"no device {name!r} (adb server {server} sees: {known}); try `mkbench devices`")


def attach(client: adbutils.AdbClient, address: str, timeout: float = 10) -> str:
    """`adb connect` a TCP device and wait until it is online; returns its state.

    A device the server already lists but not online (say, an emulator that was restarted) is
    disconnected first: otherwise the server retries on its own only every ten seconds or so.
    """
    listed = {i.serial: i.state for i in client.list()}
    if listed.get(address) == "device":
        return "device"
    if address in listed:
        try:
            client.disconnect(address)
        except adbutils.AdbError:
            pass
    answer = client.connect(address, timeout=timeout)
    if "connected" not in answer:
        return "absent"
    deadline = time.monotonic() + timeout
    state = "absent"
    while time.monotonic() < deadline:
        state = next((i.state for i in client.list() if i.serial == address), "absent")
        if state == "device":
            break
        time.sleep(0.1)
    return state


def survey(servers: Sequence[str] = ()) -> list[DeviceReport]:
    """Every device on the default adb server (started if need be) and the given remote ones."""
    reports: list[DeviceReport] = []
    addresses = [AdbServer.default()] + [AdbServer.parse(s) for s in servers]
    for index, server in enumerate(dict.fromkeys(addresses)):
        try:
            infos = server.client(start=index == 0).list()
        except (AdbServerError, adbutils.AdbError, OSError) as error:
            reports.append(DeviceReport(f"adb@{server}", "no-server", None, str(error)))
            continue
        for info in infos:
            name = info.serial if index == 0 else f"{info.serial}@{server}"
            if info.state != "device":
                hint = {"unauthorized": "accept the USB debugging prompt on the phone",
                        "offline": "replug the cable or run `adb reconnect offline`"}.get(info.state, "")
                reports.append(DeviceReport(name, info.state, None, hint))
                continue
            try:
                device = AdbDevice(info.serial, server)
                reports.append(DeviceReport(name, "device", device.fingerprint()))
            except (DeviceLost, DeviceNotFound, AdbCommandError, adbutils.AdbError, OSError) as error:
                reports.append(DeviceReport(name, "error", None, str(error)))
    return reports


def doctor_checks(_settings) -> list:
    from ..checks import Check

    server = AdbServer.default()
    running = server.reachable()
    if shutil.which("adb") is None and not running:
        return [Check("adb server", False, "adb missing: apt-get install adb")]
    checks = [Check("adb server", running, f"answering at {server}" if running else
                    f"not running at {server}: `adb start-server` (mkbench starts it when it needs it)")]
    if running:
        infos = server.client().list()
        online = [i.serial for i in infos if i.state == "device"]
        others = [f"{i.serial} ({i.state})" for i in infos if i.state != "device"]
        detail = ", ".join(online) or "none online: plug a phone with USB debugging on, or `mkbench emulator start`"
        if others:
            detail += "; not usable: " + ", ".join(others)
        checks.append(Check("adb devices", bool(online), detail))
    return checks
