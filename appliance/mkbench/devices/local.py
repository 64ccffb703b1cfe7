"""What the host and qemu devices share: folders under the cache, local subprocesses."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence

from .. import settings as settings_module
from ..sandbox import Jail, give, wrap
from . import RunResult, files, fingerprint

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_run_name(run_name: str) -> str:
    if not RUN_NAME.match(run_name):
        raise ValueError(f"run name {run_name!r} must be letters, digits, '.', '_' or '-' (at most 128)")
    return run_name


def run_process(argv: list[str], cwd: str | Path, timeout: float, env: dict[str, str] | None = None) -> RunResult:
    """Run argv in its own process group; on timeout the whole group is killed (a jailed program's
    whole PID namespace goes with bwrap)."""
    start = time.monotonic()
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
    timed_out = False
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            out, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a grandchild left the group and holds the pipes
            process.kill()
            out, err = b"", b""
    seconds = time.monotonic() - start
    code = process.returncode
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    if timed_out:
        return RunResult(None, stdout, stderr, seconds, True, None)
    if code is not None and code < 0:
        return RunResult(None, stdout, stderr, seconds, False, -code)
    return RunResult(code, stdout, stderr, seconds, False, None)


class LocalDevice:
    """A device that is this machine: files live under MKBENCH_HOME's cache."""

    SERIAL = "local"
    abi = "x86_64"
    emulated = False

    def __init__(self, settings: settings_module.Settings) -> None:
        self.serial = self.SERIAL
        self.root = settings.cache_dir / "devices" / self.SERIAL
        self.sandboxed = settings.sandbox
        self._fingerprint: dict | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.serial!r})"

    # ------------------------------------------------------------ files
    def workdir(self, run_name: str) -> str:
        folder = self.root / "runs" / check_run_name(run_name)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return str(folder)

    def push(self, local: Path, remote: str) -> None:
        """Copy a file or folder; a destination with the same content is left alone."""
        local = Path(local)
        if not local.exists():
            raise FileNotFoundError(f"nothing to push at {local}")
        for source, relative in files.files_under(local):
            target = Path(remote) / relative if relative else Path(remote)
            if target.is_file() and target.stat().st_size == source.stat().st_size \
                    and files.sha256(target) == files.sha256(source):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)

    def pull(self, remote: str, local: Path) -> None:
        source, local = Path(remote), Path(local)
        if source.is_dir():
            shutil.copytree(source, local, dirs_exist_ok=True)
        elif source.is_file():
            local.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, local)
        else:
            raise FileNotFoundError(f"{self.serial}: nothing at {remote}")

    def remove(self, remote: str) -> None:
        """Delete a file or folder (only inside this device's folder)."""
        target = Path(remote).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise ValueError(f"{self.serial}: refusing to remove {remote}, outside {self.root}")
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()

    # ------------------------------------------------------------ runs and state
    def command(self, argv: list[str], cwd: str) -> list[str]:
        """The host command that runs argv (whose program may be relative to cwd) on this device."""
        return list(argv)

    def run(self, argv: list[str], cwd: str, timeout: float, pin_big_cores: bool = True,
            writable: Sequence[str] = ()) -> RunResult:
        """Run argv in the candidate jail: cwd readable, only `writable` (folders under it) writable,
        nothing else of the machine visible. An x86 host has no big cores to prefer: no pinning."""
        for folder in writable:  # a jail binds what exists: the folders it may write are made here
            give(Path(folder))
        jail = Jail(writable=tuple(writable), readable=(str(cwd),), cpu_seconds=int(timeout * 2) + 10)
        wrapped = wrap(self.command(argv, cwd), jail, cwd, enabled=self.sandboxed)
        result = run_process(wrapped.argv, cwd, timeout, wrapped.env)
        if self.sandboxed and result.exit_code is not None and 128 < result.exit_code <= 128 + 64:
            # The jail reports its program's death by a signal as 128 + the signal, as a shell does
            # (the judge's own runs read the real status from the guard's report inside the jail).
            result = RunResult(None, result.stdout, result.stderr, result.seconds, False, result.exit_code - 128)
        return result

    def _probe(self, script: str) -> str:
        return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=30).stdout

    def read_state(self) -> dict:
        return fingerprint.state_from(self._probe(fingerprint.STATE_SCRIPT))

    def fingerprint(self) -> dict:
        if self._fingerprint is None:
            self._fingerprint = self._describe(
                fingerprint.build(self._probe(fingerprint.PROBE_SCRIPT), serial=self.serial, abi=self.abi,
                                  emulated=self.emulated))
        return self._fingerprint

    def _describe(self, fp: dict) -> dict:
        """Adjust the probed fingerprint (subclasses say what they are)."""
        return fp
