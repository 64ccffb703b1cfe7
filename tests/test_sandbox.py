"""The jail (sandbox.py) and the guard (mnn/runner/guard.cpp), each tried with what a kernel the
object rules let through could still attempt: read the harness's files, write outside its
folder, reach the network, leave a process behind, outlive its deadline.

System programs (sh, cat, python3 from /usr) stand in for the kernel: inside the jail they have
exactly what a candidate's process would have.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mkbench import sandbox

needs_jail = pytest.mark.skipif(bool(sandbox.unavailable()), reason=f"no jail here: {sandbox.unavailable()}")


def jailed(script: str, tmp_path: Path, writable=(), readable=(), **limits) -> subprocess.CompletedProcess:
    """Run a shell script in the jail, from a working folder of its own."""
    work = sandbox.give(tmp_path / "work")
    jail = sandbox.Jail(writable=(str(work), *map(str, writable)), readable=tuple(map(str, readable)), **limits)
    wrapped = sandbox.wrap(["sh", "-c", script], jail, cwd=work)
    return subprocess.run(wrapped.argv, env=wrapped.env, capture_output=True, text=True, timeout=60)


@needs_jail
def test_the_harness_files_are_out_of_sight(tmp_path, settings):
    secret = settings.home / "mkbench.sqlite"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("results")
    result = jailed(f"cat {secret} || echo hidden; ls {settings.home} || echo gone; echo $MKBENCH_HOME.", tmp_path)
    assert "results" not in result.stdout and "hidden" in result.stdout and "gone" in result.stdout
    assert result.stdout.strip().endswith(".")  # the harness's environment is not passed in


@needs_jail
def test_writes_land_only_in_the_working_folder(tmp_path):
    outside = Path("/tmp") / f"mkbench-jail-{os.getpid()}"
    result = jailed(f"echo x > {outside}; echo y > out.txt; echo z > /usr/escape || echo refused", tmp_path)
    assert not outside.exists()  # the jail's /tmp is its own
    assert (tmp_path / "work" / "out.txt").read_text() == "y\n"
    assert "refused" in result.stdout and not Path("/usr/escape").exists()


@needs_jail
def test_the_network_is_out_of_reach(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(3)
    accepted = []
    threading.Thread(target=lambda: accepted.append(_accept(listener)), daemon=True).start()
    port = listener.getsockname()[1]
    probe = f"import socket; s = socket.socket(); s.settimeout(2); s.connect(('127.0.0.1', {port})); print('connected')"
    result = jailed(f"/usr/bin/python3 -c \"{probe}\" || echo unreachable", tmp_path)
    time.sleep(0.5)
    assert "unreachable" in result.stdout and "connected" not in result.stdout
    assert accepted in ([], [None])


def _accept(listener):
    try:
        return listener.accept()
    except OSError:
        return None


@needs_jail
@pytest.mark.skipif(os.geteuid() != 0, reason="as root, the jail drops to nobody; otherwise it keeps the user's uid")
def test_root_becomes_nobody_without_capabilities(tmp_path):
    result = jailed("id -u; grep CapEff /proc/self/status", tmp_path)
    uid, caps = result.stdout.split("\n")[:2]
    assert uid == str(sandbox.NOBODY) and caps.split()[-1] == "0000000000000000"


@needs_jail
def test_the_process_limit_stops_a_fork_bomb(tmp_path):
    bomb = ("import os, time\nmade = 0\nfor _ in range(64):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        time.sleep(5)\n        os._exit(0)\n    made += 1\nprint('made', made)")
    (tmp_path / "bomb.py").write_text(bomb)
    result = jailed(f"/usr/bin/python3 {tmp_path / 'bomb.py'}", tmp_path, readable=(tmp_path / "bomb.py",), processes=16)
    made = int(result.stdout.split()[-1])
    assert made < 16  # forks past the limit failed (the limit counts the user's processes, the shell's too)


@needs_jail
def test_the_jail_has_its_own_proc_and_at_most_a_loopback(tmp_path):
    result = jailed("cat /proc/self/status >/dev/null && echo proc-ok; ls /sys/class/net 2>/dev/null | tr '\\n' ' '; echo", tmp_path)
    lines = result.stdout.splitlines()
    assert lines[0] == "proc-ok" and set(lines[1].split()) <= {"lo"}


def test_doctor_says_whether_the_jail_starts(settings):
    from dataclasses import replace

    (line,) = sandbox.doctor_checks(settings)
    assert line.name == "candidate sandbox" and line.ok == (sandbox.unavailable() == "")
    (off,) = sandbox.doctor_checks(replace(settings, sandbox=False))
    assert off.ok and "MKBENCH_SANDBOX=off" in off.detail


def test_the_reason_it_does_not_start_names_the_container_options():
    for option in ("SYS_ADMIN", "seccomp=unconfined", "systempaths=unconfined"):
        assert any(option in o for o in sandbox.CONTAINER_OPTIONS)


# ---------------------------------------------------------------- the guard


@pytest.fixture(scope="module")
def guard(session_settings, mnn_root):
    """The guard as the host's native build makes it (needs the MNN tree: skips without it)."""
    from mkbench.mnn import build

    return build.build_native("host", session_settings).guard


def guarded(guard: Path, tmp_path: Path, script: str, deadline: float = 10.0, stop_after: float | None = None) -> dict:
    report = tmp_path / "guard.json"
    stop = ["--stop-after", str(stop_after)] if stop_after else []
    subprocess.run([str(guard), "--report", str(report), "--deadline", str(deadline), *stop, "--", "sh", "-c", script],
                   capture_output=True, text=True, timeout=deadline + 30)
    return json.loads(report.read_text())


def test_the_guard_kills_what_a_run_leaves_behind(guard, tmp_path):
    pids = tmp_path / "pids"
    report = guarded(guard, tmp_path, f"setsid sleep 300 & echo $! > {pids}; nohup sleep 300 >/dev/null 2>&1 & echo $! >> {pids}")
    assert report["exit_code"] == 0 and report["leftover"] >= 2
    for pid in pids.read_text().split():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_the_guard_stops_a_run_at_its_deadline_and_times_it_from_outside(guard, tmp_path):
    started = time.monotonic()
    report = guarded(guard, tmp_path, "sleep 30", deadline=0.5)
    assert report["timed_out"] and report["exit_code"] is None
    assert 0.5 <= report["wall_ns"] / 1e9 < 2.0 and time.monotonic() - started < 10


def test_the_guard_sees_the_marks_and_raises_the_stop_flag(guard, tmp_path):
    """A stand-in runner: mark the warm-up, mark the timed runs, spin until the stop flag, mark the end."""
    script = tmp_path / "runner.py"
    script.write_text("""import mmap, os, struct, time
page = mmap.mmap(int(os.environ["MKBENCH_GUARD_FD"]), 4096)
def mark(n): page[4:8] = struct.pack("I", n)
mark(1); time.sleep(0.05); mark(2)
while struct.unpack("I", page[0:4])[0] == 0: time.sleep(0.001)
mark(3)
""")
    report = guarded(guard, tmp_path, f"/usr/bin/python3 {script}", stop_after=0.3)
    first, timed, end = (m / 1e9 for m in report["marks_ns"])
    assert report["exit_code"] == 0 and 0 < first < timed < end
    assert 0.3 <= end - timed < 0.6  # the guard stopped the loop 0.3 s after it saw it begin (polled marks: ~1 ms late)
