"""Devices on this machine (host, qemu-arm64), fingerprints, the emulator's command mapping, storage.

The adb side (real adb server + the mkbench emulator) is in test_emulator.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mkbench import store
from mkbench.devices import Device, RunResult, device_id, get_device, store_device
from mkbench.devices import fingerprint as fp_module
from mkbench.devices.adb import AdbServer, AdbServerError, ShellOutcome, interpret
from mkbench.devices.sandbox import Sandbox

PROGRAM_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "hello";
  if (!strcmp(mode, "hello")) {
    printf("out:%s\n", argc > 2 ? argv[2] : "");
    fprintf(stderr, "err line\n");
    return argc > 3 ? atoi(argv[3]) : 0;
  }
  if (!strcmp(mode, "sleep")) { for (;;) sleep(1); }
  if (!strcmp(mode, "segv")) { volatile int *p = 0; *p = 1; }
  if (!strcmp(mode, "write")) { FILE *f = fopen(argv[2], "w"); fputs("result\n", f); fclose(f); return 0; }
  if (!strcmp(mode, "cat")) {
    FILE *f = fopen(argv[2], "r"); char line[256];
    if (!f) { perror("fopen"); return 1; }
    while (fgets(line, sizeof line, f)) fputs(line, stdout);
    return 0;
  }
  return 2;
}
"""


def compile_program(folder: Path, compiler: str, name: str) -> Path:
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    source = folder / "program.c"
    source.write_text(PROGRAM_C)
    binary = folder / name
    subprocess.run([compiler, "-static", "-O1", "-o", str(binary), str(source)], check=True, timeout=120)
    return binary


@pytest.fixture()
def home(settings):
    """This test's settings (conftest makes a MKBENCH_HOME per test)."""
    return settings


@pytest.fixture(scope="module")
def host_program(tmp_path_factory) -> Path:
    return compile_program(tmp_path_factory.mktemp("x86"), "gcc", "program-x86_64")


@pytest.fixture(scope="module")
def arm64_program(tmp_path_factory) -> Path:
    return compile_program(tmp_path_factory.mktemp("arm64"), "aarch64-linux-gnu-gcc", "program-arm64")


# ---------------------------------------------------------------- host
def test_host_device_runs_and_reports_outcomes(home, host_program):
    device = get_device("host", home)
    assert isinstance(device, Device)
    assert (device.serial, device.abi, device.emulated) == ("host", "x86_64", False)
    work = device.workdir("run-a")
    assert Path(work).is_dir() and Path(work).is_relative_to(home.home)
    device.push(host_program, f"{work}/program")

    result = device.run(["./program", "hello", "a b", "7"], cwd=work, timeout=20)
    assert result == RunResult(7, "out:a b\n", "err line\n", result.seconds, False, None)

    crashed = device.run(["./program", "segv"], cwd=work, timeout=20)
    assert (crashed.exit_code, crashed.signal, crashed.timed_out) == (None, 11, False)

    slow = device.run(["./program", "sleep"], cwd=work, timeout=1)
    assert slow.timed_out and slow.exit_code is None and 1 <= slow.seconds < 10


def test_host_push_skips_unchanged_and_pull_copies(home, tmp_path, host_program):
    device = get_device("host", home)
    work = device.workdir("run-b")
    inputs = tmp_path / "inputs"
    (inputs / "deep").mkdir(parents=True)
    (inputs / "a.bin").write_bytes(b"\x00" * 1000)
    (inputs / "deep" / "b.txt").write_text("b")
    device.push(inputs, f"{work}/in")
    pushed = Path(work) / "in" / "a.bin"
    before = pushed.stat().st_mtime_ns
    device.push(inputs, f"{work}/in")  # same content: left alone
    assert pushed.stat().st_mtime_ns == before
    (inputs / "a.bin").write_bytes(b"\x01" * 1000)
    device.push(inputs, f"{work}/in")
    assert pushed.read_bytes() == b"\x01" * 1000

    device.pull(f"{work}/in", tmp_path / "back")
    assert (tmp_path / "back" / "deep" / "b.txt").read_text() == "b"
    with pytest.raises(FileNotFoundError):
        device.pull(f"{work}/missing", tmp_path / "nothing")
    with pytest.raises(ValueError):
        device.remove(str(tmp_path))
    device.remove(work)
    assert not Path(work).exists()
    # a fresh workdir is empty
    assert list(Path(device.workdir("run-b")).iterdir()) == []


def test_host_fingerprint_and_state(home):
    device = get_device("host", home)
    fp = device.fingerprint()
    json.dumps(fp)
    assert fp["serial"] == "host" and fp["abi"] == "x86_64" and fp["emulated"] is False
    assert len(fp["cores"]) >= 1 and fp["model"]
    state = device.read_state()
    assert set(state) >= {"cur_khz", "temperatures_c", "taken_at"}
    assert device_id(device) == fp_module.device_id(fp)


# ---------------------------------------------------------------- qemu
def test_qemu_device_runs_arm64_binaries(home, arm64_program):
    if shutil.which("qemu-aarch64-static") is None:
        pytest.skip("qemu-aarch64-static is not installed")
    device = get_device("qemu-arm64", home)
    assert (device.abi, device.emulated) == ("arm64-v8a", True)
    assert device.fingerprint()["emulated"] is True
    work = device.workdir("q")
    device.push(arm64_program, f"{work}/program")
    result = device.run(["./program", "hello", "x", "3"], cwd=work, timeout=30)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out:x\n", "err line\n")
    crashed = device.run(["./program", "segv"], cwd=work, timeout=30)
    assert crashed.signal == 11 and crashed.exit_code is None
    assert not list(Path(work).glob("*.core"))
    slow = device.run(["./program", "sleep"], cwd=work, timeout=1)
    assert slow.timed_out


# ---------------------------------------------------------------- store
def test_store_device_writes_one_row_per_fingerprint(home):
    db = store.open_db(home.db_path)
    device = get_device("host", home)
    first = store_device(db, device)
    second = store_device(db, device)
    assert first == second and len(first) == 64
    rows = list(db.query("select * from devices"))
    assert len(rows) == 1
    assert rows[0]["serial"] == "host" and rows[0]["emulated"] == 0
    assert json.loads(rows[0]["fingerprint"])["abi"] == "x86_64"


# ---------------------------------------------------------------- pure functions
PROBE_OUTPUT = """@@getprop
[ro.product.model]: [Pixel 7]
[ro.soc.model]: [Tensor G2]
[ro.build.version.release]: [14]
[ro.product.cpu.abi]: [arm64-v8a]
@@cpuinfo
processor\t: 0
Features\t: fp asimd fphp asimdhp asimddp i8mm
CPU part\t: 0xd05

processor\t: 4
Features\t: fp asimd fphp asimdhp asimddp i8mm
CPU part\t: 0xd41

processor\t: 6
Features\t: fp asimd fphp asimdhp asimddp i8mm
CPU part\t: 0xd44
@@uname
aarch64
@@cpus
cpu0 1803000 1803000 schedutil
cpu4 2348000 500000 schedutil
cpu6 2850000 - schedutil
@@thermal
thermal_zone0 41500 BIG
thermal_zone1 - broken
@@end
"""


def test_fingerprint_parses_a_phone_probe():
    fp = fp_module.build(PROBE_OUTPUT, serial="abc", abi="arm64-v8a", emulated=False)
    assert fp["model"] == "Pixel 7" and fp["soc"] == "Tensor G2" and fp["android_version"] == "14"
    assert [c["name"] for c in fp["clusters"]] == ["little", "mid", "big"]
    assert fp["big_cores"] == [4, 6] and fp["big_core_mask"] == "50"
    assert fp["features"]["dotprod"] and fp["features"]["fp16"] and fp["features"]["i8mm"] and not fp["features"]["sve"]
    assert [c["core"] for c in fp["cores"]] == ["Cortex-A55", "Cortex-A78", "Cortex-X1"]
    assert fp["state"]["temperatures_c"] == {"thermal_zone0:BIG": 41.5}
    assert fp["emulated"] is False
    # the id ignores the changing state
    other = dict(fp, state={"temperatures_c": {"x": 90.0}})
    assert fp_module.device_id(fp) == fp_module.device_id(other)
    assert fp_module.summary(fp).startswith("1x1.80GHz + 1x2.35GHz + 1x2.85GHz [asimd,fp16,dotprod,i8mm]")


def test_interpret_shell_outcomes():
    assert interpret(ShellOutcome(0, b"a", b"b", 0.1), 5) == RunResult(0, "a", "b", 0.1, False, None)
    assert interpret(ShellOutcome(139, b"", b"", 0.1), 5).signal == 11
    assert interpret(ShellOutcome(124, b"", b"", 5.2), 5).timed_out
    assert interpret(ShellOutcome(124, b"", b"", 0.2), 5).exit_code == 124  # the program's own 124
    assert interpret(ShellOutcome(None, b"", b"", 9.0), 5).timed_out


def test_sandbox_rewrites_device_commands(tmp_path):
    sandbox = Sandbox(tmp_path / "sb")
    root, shim = str(sandbox.root), str(sandbox.bin / "mkexec")
    rewritten = sandbox.rewrite_command(
        "cd /data/local/tmp/mkbench/r && exec timeout -k 2 5.000 taskset f0 ./runner /data/local/tmp/m.mnn > out 2>&1")
    assert rewritten == (f"cd {root}/data/local/tmp/mkbench/r && exec timeout -k 2 5.000 taskset f0 {shim} ./runner "
                         f"{root}/data/local/tmp/m.mnn > out 2>&1")
    assert sandbox.rewrite_command("cat /proc/cpuinfo /proc/self/status") == f"cat {root}/proc/cpuinfo /proc/self/status"
    assert sandbox.rewrite_command("echo $((4 / 2)) > /dev/null") == "echo $((4 / 2)) > /dev/null"
    assert sandbox.rewrite_command("A=1 ./x | ./y; ls") == f"A=1 {shim} ./x | {shim} ./y; ls"
    heredoc = "cat <<EOF\n./not-a-command\nEOF\n./after"
    assert sandbox.rewrite_command(heredoc) == f"cat <<EOF\n./not-a-command\nEOF\n{shim} ./after"
    assert sandbox.host_path("/data/../../etc/passwd") == sandbox.root / "etc/passwd"
    assert sandbox.unmap_output(f"{root}/data/x and {root}".encode()) == b"/data/x and /"


def test_adb_server_addresses_and_how_to_get_one(monkeypatch):
    monkeypatch.setenv("ADB_SERVER_SOCKET", "tcp:localhost:5123")
    assert AdbServer.default() == AdbServer("127.0.0.1", 5123)
    monkeypatch.delenv("ADB_SERVER_SOCKET")
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "5124")
    assert AdbServer.default() == AdbServer("127.0.0.1", 5124)
    assert AdbServer.parse("lab-pc:5037") == AdbServer("lab-pc", 5037)
    with pytest.raises(ValueError):
        AdbServer.parse("lab-pc")
    # nobody listens on these: a remote one cannot be started from here, a local one needs adb
    with pytest.raises(AdbServerError, match="start it there"):
        AdbServer("127.0.0.2", 1).start()
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(AdbServerError, match="apt-get install adb"):
        AdbServer("127.0.0.1", 1).start()
