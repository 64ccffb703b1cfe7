"""The mkbench emulator driven by the real adb server (Debian's adb) and adbutils.

Each module run starts its own adb server on a free port (ADB_SERVER_SOCKET) and its own
emulators, and kills them at the end, so nothing collides with a developer's adb on 5037.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import adbutils
import pytest
from click.testing import CliRunner

from mkbench import settings as settings_module
from mkbench.cli import main as cli
from mkbench.devices import DeviceLost, DeviceNotFound, get_device, list_devices, survey
from mkbench.devices import doctor_checks as device_doctor_checks
from mkbench.devices import emulator_ctl
from mkbench.devices.adb import AdbDevice, AdbServer

from test_devices import compile_program

pytestmark = pytest.mark.skipif(shutil.which("adb") is None or shutil.which("qemu-aarch64-static") is None,
                                reason="needs adb and qemu-aarch64-static")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def host_processes_matching(text: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if text in line and "ps -eo" not in line]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A MKBENCH_HOME for the module's emulator and a private adb server port; restored afterwards.

    (conftest gives each test its own MKBENCH_HOME too; module fixtures read this one.)
    """
    home = tmp_path_factory.mktemp("home")
    saved = {k: os.environ.get(k) for k in ("MKBENCH_HOME", "ADB_SERVER_SOCKET", "ANDROID_ADB_SERVER_PORT")}
    port = free_port()
    os.environ["MKBENCH_HOME"] = str(home)
    os.environ["ADB_SERVER_SOCKET"] = f"tcp:localhost:{port}"
    os.environ.pop("ANDROID_ADB_SERVER_PORT", None)
    yield {"home": home, "adb_port": port}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def adb_server(env):
    server = AdbServer("127.0.0.1", env["adb_port"])
    assert AdbServer.default() == server
    server.start()  # mkbench starts a missing local server itself
    assert server.reachable()
    yield server
    server.kill()
    assert wait_until(lambda: not server.reachable(), 10)


@pytest.fixture(scope="module")
def emulator(env, adb_server):
    """The emulator started as `mkbench emulator start` does, attached to the test adb server."""
    settings = settings_module.load()
    port = free_port()
    status = emulator_ctl.start(settings, port)
    assert status.running and status.adb_state == "device"
    yield status
    stopped = emulator_ctl.stop(settings, port)
    assert not stopped.running
    assert wait_until(lambda: not host_processes_matching(status.sandbox), 10)


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    return compile_program(tmp_path_factory.mktemp("arm64"), "aarch64-linux-gnu-gcc", "program")


@pytest.fixture(scope="module")
def device(emulator) -> AdbDevice:
    d = get_device(emulator.serial)
    assert isinstance(d, AdbDevice)
    return d


def adb(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["adb", *args], capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- the protocol, through the adb CLI
def test_adb_server_lists_the_emulator(emulator, adb_server):
    listing = adb("devices", "-l").stdout
    line = next(l for l in listing.splitlines() if l.startswith(emulator.serial))
    assert " device " in line and "product:mkbemu" in line and "device:mkbemu" in line
    features = adbutils.AdbClient(port=adb_server.port).device(emulator.serial).get_features()
    assert {"shell_v2", "stat_v2", "ls_v2", "fixed_push_mkdir"} <= set(features.split(","))


def test_shell_v2_exit_codes_and_separate_stderr(emulator, adb_server):
    result = adb("-s", emulator.serial, "shell", "echo out; echo err >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    d = adbutils.AdbClient(port=adb_server.port).device(emulator.serial)
    v2 = d.shell2("echo a; echo b >&2; exit 5", v2=True)
    assert (v2.returncode, v2.stdout, v2.stderr) == (5, "a\n", "b\n")
    assert d.shell("echo v1") == "v1"  # shell v1
    exec_out = subprocess.run(["adb", "-s", emulator.serial, "exec-out", "printf 'raw\\0bytes'"],
                              capture_output=True, timeout=30)
    assert exec_out.stdout == b"raw\0bytes"
    piped = subprocess.run(["adb", "-s", emulator.serial, "shell"], input="echo typed; exit 4\n",
                           capture_output=True, text=True, timeout=30)
    assert piped.returncode == 4 and "typed" in piped.stdout


def test_interactive_shell_has_a_terminal(emulator):
    pid, terminal = pty.fork()
    if pid == 0:  # the child becomes `adb shell`, as a person at a terminal runs it
        os.execvp("adb", ["adb", "-s", emulator.serial, "shell"])

    def read_until(marker: bytes, seconds: float = 15) -> bytes:
        seen, deadline = b"", time.monotonic() + seconds
        while marker not in seen and time.monotonic() < deadline:
            if select.select([terminal], [], [], 0.2)[0]:
                try:
                    seen += os.read(terminal, 4096)
                except OSError:
                    break
        return seen

    try:
        assert b"mkbemu:/ # " in read_until(b"# ")
        os.write(terminal, b"tty; echo done-$((6 * 7))\r")
        answer = read_until(b"done-42")
        assert b"/dev/pts/" in answer and b"done-42" in answer
        os.write(terminal, b"exit 6\r")
        read_until(b"never", 3)
    finally:
        for _ in range(50):
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            finished, status = os.waitpid(pid, 0)
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 6


def test_the_emulator_looks_like_an_arm64_phone(emulator):
    def sh(command: str) -> str:
        return adb("-s", emulator.serial, "shell", command).stdout

    assert sh("getprop ro.product.cpu.abi") == "arm64-v8a\n"
    assert sh("getprop ro.kernel.qemu") == "1\n" and sh("getprop mkbench.emulated") == "1\n"
    assert sh("getprop no.such.prop") == "\n"
    assert "[ro.product.model]: [mkbench emulated arm64 phone]" in sh("getprop")
    cpuinfo = sh("cat /proc/cpuinfo")
    assert cpuinfo.count("processor") == 8 and "asimddp" in cpuinfo and "asimdhp" in cpuinfo
    assert sh("cat /sys/devices/system/cpu/cpu7/cpufreq/cpuinfo_max_freq") == "2841600\n"
    assert int(sh("cat /sys/class/thermal/thermal_zone0/temp")) > 20000
    assert {"data", "proc", "sys", "system"} <= set(sh("ls /").split())
    assert sh("cd /data/local/tmp && pwd") == "/data/local/tmp\n"
    assert sh("uname -m") == "aarch64\n" and sh("nproc") == "8\n"
    assert sh("taskset f0 echo pinned") == "pinned\n"


def test_sync_push_pull_stat_list(emulator, adb_server, tmp_path):
    payload = os.urandom(3_000_000)  # several WRTE messages and DATA chunks each way
    (tmp_path / "big.bin").write_bytes(payload)
    pushed = adb("-s", emulator.serial, "push", str(tmp_path / "big.bin"), "/data/local/tmp/t/deep/big.bin")
    assert pushed.returncode == 0, pushed.stderr  # STA2 + SEND, parent folders made (fixed_push_mkdir)
    pulled = adb("-s", emulator.serial, "pull", "/data/local/tmp/t/deep/big.bin", str(tmp_path / "back.bin"))
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "back.bin").read_bytes() == payload
    listing = adb("-s", emulator.serial, "ls", "/data/local/tmp/t/deep").stdout  # LIS2
    assert "big.bin" in listing

    sync = adbutils.AdbClient(port=adb_server.port).device(emulator.serial).sync  # STAT, LIST, SEND, RECV (v1)
    sync.push(b"hello", "/data/local/tmp/t/hello.txt", 0o644)
    info = sync.stat("/data/local/tmp/t/hello.txt")
    assert info.size == 5 and info.mode & 0o777 == 0o644
    assert sync.read_bytes("/data/local/tmp/t/hello.txt") == b"hello"
    assert {f.path for f in sync.list("/data/local/tmp/t")} >= {".", "..", "hello.txt", "deep"}
    assert sync.stat("/data/local/tmp/t/missing").mode == 0
    with pytest.raises(adbutils.AdbError):
        sync.read_bytes("/data/local/tmp/t/missing")
    failed = adb("-s", emulator.serial, "push", str(tmp_path / "big.bin"), "/data/local/tmp/t/deep/big.bin/x")
    assert failed.returncode != 0


# ---------------------------------------------------------------- AdbDevice against the emulator
def test_fingerprint_of_the_emulator(device, emulator):
    fp = device.fingerprint()
    json.dumps(fp)
    assert (device.serial, device.abi, device.emulated) == (emulator.serial, "arm64-v8a", True)
    assert fp["emulated"] is True and fp["model"] == "mkbench emulated arm64 phone"
    assert fp["android_version"] == "13" and fp["soc"]
    assert [(c["name"], len(c["cpus"])) for c in fp["clusters"]] == [("little", 4), ("mid", 3), ("big", 1)]
    assert fp["big_core_mask"] == "f0"
    assert fp["features"]["asimd"] and fp["features"]["fp16"] and fp["features"]["dotprod"]
    assert not fp["features"]["sve"]
    assert fp["state"]["temperatures_c"] and fp["governors"] == ["schedutil"]
    state = device.read_state()
    assert state["cur_khz"]["7"] == 2841600
    # Its shell is root, so its big cores' clocks are locked (in its own sysfs) at 80% of their top.
    big = {str(c) for c in fp["big_cores"]}
    assert fp["clocks"]["how"].startswith("root") and set(fp["clocks"]["locked"]) == big
    assert fp["clocks"]["locked"]["7"] == 2841600 * 8 // 10


def test_a_run_taken_throttled_is_named():
    from mkbench.devices.fingerprint import throttled

    clocks = {"locked": {"7": 2000000}}
    assert throttled({"after": {"cur_khz": {"7": 2000000}, "temperatures_c": {"cpu": 41.0}}}, clocks) == ""
    assert "locked at 2000000" in throttled({"after": {"cur_khz": {"7": 1500000}}}, clocks)
    assert "°C" in throttled({"after": {"cur_khz": {"7": 2000000}, "temperatures_c": {"cpu": 71.0}}}, clocks)
    assert throttled({"after": {"temperatures_c": {"cpu": 71.0}}}, None)  # unlocked: heat alone says it


def test_push_run_pull_an_arm64_binary(device, program, tmp_path):
    work = device.workdir("flow")
    assert work == "/data/local/tmp/mkbench/flow"
    uploads = device.uploads
    device.push(program, f"{work}/program")
    device.push(program, f"{work}/bin/again")  # the same content: copied on the device, not sent
    assert device.uploads - uploads <= 1
    fresh = get_device(device.serial)  # a new connection finds the content already on the device
    fresh.push(program, f"{work}/third")
    assert fresh.uploads == 0

    result = device.run(["./program", "hello", "two words", "5"], cwd=work, timeout=30)
    assert (result.exit_code, result.stdout, result.stderr, result.signal) == (5, "out:two words\n", "err line\n", None)
    assert device.run([f"{work}/bin/again", "hello"], cwd="/", timeout=30).exit_code == 0

    device.run(["sh", "-c", "mkdir -p out"], cwd=work, timeout=30, pin_big_cores=False)
    assert device.run(["./program", "write", "out/result.txt"], cwd=work, timeout=30).exit_code == 0
    # the program's own opens of device paths see the sandbox too
    assert device.run(["./program", "cat", "/proc/cpuinfo"], cwd=work, timeout=30).stdout.count("processor") == 8
    device.pull(f"{work}/out/result.txt", tmp_path / "result.txt")
    assert (tmp_path / "result.txt").read_text() == "result\n"
    device.pull(f"{work}/out", tmp_path / "out")
    assert (tmp_path / "out" / "result.txt").is_file()
    with pytest.raises(FileNotFoundError):
        device.pull(f"{work}/nothing", tmp_path / "nothing")
    with pytest.raises(ValueError):
        device.remove("/data/local/tmp")
    device.remove(work)
    assert device.shell("ls /data/local/tmp/mkbench").decode().split() == []


def test_timeout_and_signal(device, program, emulator):
    work = device.workdir("limits")
    device.push(program, f"{work}/program")
    crashed = device.run(["./program", "segv"], cwd=work, timeout=30)
    assert (crashed.exit_code, crashed.signal, crashed.timed_out) == (None, 11, False)
    slow = device.run(["./program", "sleep"], cwd=work, timeout=1.5)
    assert slow.timed_out and slow.exit_code is None and 1.5 <= slow.seconds < 10
    assert wait_until(lambda: not host_processes_matching(f"{emulator.sandbox}/root{work}"), 10)


def test_host_side_deadline_kills_the_device_process(device, emulator):
    outcome = device.shell_outcome("sleep 31.25", timeout=1)
    assert outcome.exit_code is None and outcome.seconds < 5
    # closing the stream makes the emulator kill the command, as adbd does
    assert wait_until(lambda: not host_processes_matching("sleep 31.25"), 10)
    assert device.shell("echo still-here") == b"still-here\n"


def test_device_lost_mid_run(env, adb_server, program, tmp_path):
    port = free_port()
    sandbox = tmp_path / "lost-sandbox"
    process = subprocess.Popen([sys.executable, "-m", "mkbench.devices.emulator", "--port", str(port),
                                "--sandbox", str(sandbox), "--pid-file", str(tmp_path / "pid")])
    try:
        assert wait_until(lambda: (tmp_path / "pid").exists(), 20)
        lost = get_device(f"127.0.0.1:{port}")  # not yet attached: mkbench runs `adb connect`
        work = lost.workdir("doomed")
        lost.push(program, f"{work}/program")
        killer = threading.Timer(1.0, lambda: os.kill(process.pid, signal.SIGKILL))
        killer.start()
        started = time.monotonic()
        with pytest.raises(DeviceLost):
            lost.run(["./program", "sleep"], cwd=work, timeout=60)
        assert time.monotonic() - started < 15
        with pytest.raises(DeviceLost):
            lost.run(["./program", "hello"], cwd=work, timeout=10)
        # the emulator's watcher killed what it was running
        assert wait_until(lambda: not host_processes_matching(str(sandbox)), 10)

        # restarted on the same port, it is attached again at once (not after adb's 10 s retry)
        process = subprocess.Popen([sys.executable, "-m", "mkbench.devices.emulator", "--port", str(port),
                                    "--sandbox", str(sandbox), "--pid-file", str(tmp_path / "pid")])
        assert wait_until(lambda: (tmp_path / "pid").read_text().strip() == str(process.pid), 20)
        started = time.monotonic()
        back = get_device(f"127.0.0.1:{port}")
        assert time.monotonic() - started < 8
        assert back.run(["./program", "hello"], cwd=work, timeout=30).stdout == "out:\n"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        adbutils.AdbClient(port=adb_server.port).disconnect(f"127.0.0.1:{port}")


def test_survey_list_and_names(device, emulator, adb_server, monkeypatch, settings):
    reports = {r.name: r for r in survey(settings)}
    assert {"host", emulator.serial} <= set(reports)
    assert reports[emulator.serial].fingerprint["emulated"] is True
    assert emulator.serial in [d.serial for d in list_devices(settings)]
    on_server = get_device(f"{emulator.serial}@127.0.0.1:{adb_server.port}")
    assert on_server.fingerprint()["model"] == device.fingerprint()["model"]
    with pytest.raises(DeviceNotFound):
        get_device("no-such-phone")
    # seen from elsewhere: our test server is a remote server whose only phone is the emulator
    monkeypatch.setenv("ADB_SERVER_SOCKET", f"tcp:localhost:{free_port()}")
    remote = get_device(f"127.0.0.1:{adb_server.port}")
    assert remote.adb_serial == emulator.serial and remote.serial.endswith(f"@127.0.0.1:{adb_server.port}")


def test_doctor_sees_the_server_and_the_emulator(device, emulator, env, monkeypatch):
    monkeypatch.setenv("MKBENCH_HOME", str(env["home"]))  # where the module's emulator keeps its pid file
    checks = {c.name: c for c in device_doctor_checks(settings_module.load())}
    assert checks["adb server"].ok and checks["adb devices"].ok
    assert emulator.serial in checks["adb devices"].detail
    assert emulator.serial in checks["mkbench emulator"].detail


def test_cli_devices_and_emulator_commands(device, emulator, adb_server):
    runner = CliRunner()
    listed = runner.invoke(cli, ["devices", "--json"])
    assert listed.exit_code == 0, listed.output
    by_name = {r["name"]: r for r in json.loads(listed.output)}
    assert by_name[emulator.serial]["fingerprint"]["emulated"] is True
    table = runner.invoke(cli, ["devices"])
    assert emulator.serial in table.output and "emulated" in table.output
    shown = runner.invoke(cli, ["devices", "show", emulator.serial])
    assert json.loads(shown.output)["big_core_mask"] == "f0"

    port = free_port()
    started = runner.invoke(cli, ["emulator", "start", "--port", str(port)])
    assert started.exit_code == 0 and "running" in started.output, started.output
    status = json.loads(runner.invoke(cli, ["emulator", "status", "--json"]).output)
    assert {s["port"]: s["adb_state"] for s in status if s["running"]}[port] == "device"
    again = runner.invoke(cli, ["emulator", "start", "--port", str(port)])  # already running: fine
    assert again.exit_code == 0
    stopped = runner.invoke(cli, ["emulator", "stop", "--port", str(port)])
    assert stopped.exit_code == 0 and "stopped" in stopped.output
    serials = {i.serial: i.state for i in adbutils.AdbClient(port=adb_server.port).list()}
    assert serials.get(f"127.0.0.1:{port}") != "device"


def test_a_whole_task_evaluation_through_adb(device, emulator, mnn_settings):
    """The judge drives the emulator through the real adb server: push, run under qemu, pull."""
    from mkbench.judge.evaluate import evaluate
    from mkbench.tasks import get_task

    source = (settings_module.SHIPPED / "mnn" / "examples" / "abs_candidate.cpp").read_text()
    verdict = evaluate(get_task("Abs"), source, device, mnn_settings)
    assert verdict.verdict == "correct", verdict.reason
    assert not verdict.timing_reportable and verdict.speedup is None  # emulated: never reported
    broken = source.replace("std::fabs(src[i])", "src[i]")
    assert evaluate(get_task("Abs"), broken, device, mnn_settings).verdict == "wrong-values"
