"""The jail every untrusted program runs in: candidate builds, candidate runners on the host and
under qemu, candidate converters, and imported task files.

    jail = Jail(writable=(out,), readable=(workdir,), cpu_seconds=120)
    wrapped = wrap(argv, jail, cwd=workdir)        # argv, env: run them with subprocess as usual

Built on Debian's bubblewrap (`bwrap`), started through `prlimit` (process limits). Inside: new
mount, PID, network, IPC, UTS and cgroup namespaces; the system folders (/usr, /lib*, /bin, /sbin,
/etc) read-only; a fresh /tmp, /proc and /dev; the `readable` paths read-only and the `writable`
ones read-write, at their own paths; nothing else of the machine (no MKBENCH_HOME: no references,
no database, no other candidate); a network namespace with only a loopback of its own; a scrubbed
environment. `--die-with-parent` and the PID namespace mean a timeout (the caller kills bwrap) or
the harness dying leaves no process behind.

Who the program runs as: when mkbench runs as root, bwrap sets the jail up as root (so the paths
it binds may lie under /root) and `setpriv` inside it becomes the unprivileged `nobody` with no
capabilities before the program starts (root would ignore the process limit and could raise the
others back; an unprivileged host uid cannot). For that, bwrap needs CAP_SYS_ADMIN and
CAP_NET_ADMIN, and in a container Docker's default seccomp profile and its masked /proc paths
forbid the jail's mounts: run the appliance with `--privileged`, or with CONTAINER_OPTIONS below
(what `mkbench appliance run` passes). Run as another user, mkbench uses bwrap's unprivileged user
namespaces instead (on by default in Debian and Ubuntu). Where neither is possible,
MKBENCH_SANDBOX=off judges without the jail, and every verdict records it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# What a Docker container needs for the jail when mkbench runs as root in it (the image's user),
# measured (Docker 20.10): bwrap mounts as root (CAP_SYS_ADMIN) and brings up the loopback of its
# new network namespace (CAP_NET_ADMIN: without it "loopback: Failed RTM_NEWADDR"); Docker's default
# seccomp profile refuses the namespaces (seccomp=unconfined), and the /proc paths it masks forbid
# mounting a new /proc (systempaths=unconfined); on hosts with AppArmor its default profile refuses
# the mounts too (apparmor=unconfined). `--privileged` gives all of these at once. The jailed program
# has none of them: setpriv drops every capability before it starts.
CONTAINER_OPTIONS = ("--cap-add SYS_ADMIN", "--cap-add NET_ADMIN", "--security-opt seccomp=unconfined",
                     "--security-opt systempaths=unconfined", "--security-opt apparmor=unconfined")

NOBODY = 65534  # the uid and gid untrusted code runs as when mkbench runs as root
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc")
PATH = "/usr/local/bin:/usr/bin:/bin"
GIB = 1 << 30


class SandboxUnavailable(RuntimeError):
    """The jail cannot start on this machine (the message says why and what to do)."""


@dataclass(frozen=True)
class Jail:
    """What an untrusted program may see, write and use."""

    writable: tuple[str, ...] = ()  # bound read-write at the same path (a working or output folder)
    readable: tuple[str, ...] = ()  # bound read-only at the same path (the MNN tree, a native build, ...)
    env: tuple[tuple[str, str], ...] = ()  # variables on top of the scrubbed environment
    cpu_seconds: int | None = None  # RLIMIT_CPU, per process
    memory_bytes: int | None = 8 * GIB  # RLIMIT_AS
    file_bytes: int | None = 2 * GIB  # RLIMIT_FSIZE: the largest file it may write
    processes: int | None = 512  # RLIMIT_NPROC (threads count), for the unprivileged user


@dataclass(frozen=True)
class Wrapped:
    """A command line ready for subprocess, with its environment."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def wrap(argv: list[str], jail: Jail, cwd: str | Path, enabled: bool = True) -> Wrapped:
    """The command line that runs argv in the jail, from cwd (which must be readable or writable
    in it). With enabled=False (MKBENCH_SANDBOX=off) argv runs as it is, with the jail's variables."""
    if not enabled:
        return Wrapped(list(argv), {**os.environ, **dict(jail.env)})
    problem = unavailable()
    if problem:
        raise SandboxUnavailable(problem)
    _own(jail.writable)
    return Wrapped(_command(argv, jail, cwd), {"PATH": PATH})


def _command(argv: list[str], jail: Jail, cwd: str | Path) -> list[str]:
    command = [*_limits(jail), "bwrap", *_namespaces(), "--die-with-parent", "--new-session",
               "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for folder in SYSTEM_DIRS:
        command += ["--ro-bind-try", folder, folder]
    for folder in _ancestors([*jail.readable, *jail.writable]):  # traversable, whatever the host's modes
        command += ["--perms", "0755", "--dir", folder]
    for path in jail.readable:
        command += ["--ro-bind", str(path), str(path)]
    for path in jail.writable:
        command += ["--bind", str(path), str(path)]
    command += ["--chdir", str(cwd), "--clearenv", "--setenv", "PATH", PATH, "--setenv", "HOME", "/tmp",
                "--setenv", "LANG", "C.UTF-8"]
    for name, value in jail.env:
        command += ["--setenv", name, value]
    return [*command, "--", *_unprivileged(), *argv]


def command_wrapper(jail: Jail, enabled: bool = True):
    """`wrap` for toolbox.BuildLog.run: (argv, cwd, env) -> (argv, env), in the jail; the caller's
    CCACHE_* variables go in with it (a jailed compile still uses the cache it is given)."""
    def wrapper(argv, cwd, env):
        if not enabled:
            return argv, env
        extra = tuple((k, v) for k, v in env.items() if k.startswith("CCACHE_"))
        wrapped = wrap(argv, Jail(jail.writable, jail.readable, (*extra, *jail.env), jail.cpu_seconds, jail.memory_bytes,
                                  jail.file_bytes, jail.processes), cwd)
        return wrapped.argv, wrapped.env
    return wrapper


def _namespaces() -> list[str]:
    if os.geteuid() == 0:  # root sets the jail up itself; setpriv then drops to nobody inside it
        return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    return ["--unshare-all"]  # an unprivileged user: bwrap's own user namespace


def _ancestors(paths) -> list[str]:
    """Every folder above the given paths that no system folder covers, top first."""
    found: dict[str, None] = {}
    for path in paths:
        parts = Path(path).parts
        for depth in range(2, len(parts)):
            folder = str(Path(*parts[:depth]))
            if not folder.startswith(SYSTEM_DIRS):
                found[folder] = None
    return list(found)


def _limits(jail: Jail) -> list[str]:
    limits = [("--cpu", jail.cpu_seconds), ("--as", jail.memory_bytes), ("--fsize", jail.file_bytes),
              ("--nproc", jail.processes), ("--core", 0)]
    return ["prlimit", *(f"{flag}={value}" for flag, value in limits if value is not None), "--"]


def _unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--"]


def _own(paths) -> None:
    """A writable folder must be the unprivileged user's when mkbench runs as root."""
    if os.geteuid() != 0:
        return
    for path in paths:
        os.chown(path, NOBODY, NOBODY)


def give(path: Path) -> Path:
    """Make a folder (and its parents) for jailed writes: owned by the jail's user when we are root."""
    path.mkdir(parents=True, exist_ok=True)
    _own([path])
    return path


@functools.lru_cache(maxsize=None)
def unavailable() -> str:
    """Why the jail cannot start here ("" when it can): bwrap missing, or user namespaces refused."""
    for tool in ("bwrap", "prlimit", *(["setpriv"] if os.geteuid() == 0 else [])):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install bubblewrap util-linux): the candidate sandbox needs it"
    probe = _command(["true"], Jail(), "/")  # the jail as wrap() makes it: a new /proc is what a container refuses first
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        return f"the candidate sandbox does not start: {error}"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        return (f"the candidate sandbox does not start ({last}): in a container, run it with --privileged or with "
                f"{' '.join(CONTAINER_OPTIONS)}; or set MKBENCH_SANDBOX=off to judge without it (every verdict then records that)")
    return ""


def doctor_checks(settings) -> list:
    """Does the jail start here (or is it switched off)?"""
    from .checks import Check

    if not settings.sandbox:
        return [Check("candidate sandbox", True, "off (MKBENCH_SANDBOX=off): untrusted code runs unjailed, and every verdict records it")]
    problem = unavailable()
    return [Check("candidate sandbox", not problem, problem or "bubblewrap starts: untrusted code runs jailed")]
