"""The emulated phone's file system: a host folder that stands in for the device's "/".

Layout of a sandbox folder DIR:

    DIR/root/                 the device's "/": data/local/tmp, system/build.prop, proc/cpuinfo,
                              sys/devices/system/cpu/..., sys/class/thermal/...
    DIR/bin/                  host-side stand-ins for the phone's toolbox: getprop, taskset,
                              timeout, nproc, uname, and mkexec (runs aarch64 ELF via qemu)

Shell commands run under the host's /bin/sh. Before they run, device paths in the command text
(/data/..., /sdcard/..., /system/..., /proc/cpuinfo, /sys/devices/system/cpu/..., ...) are
rewritten into DIR/root, and any word in command position that names a file by path is run
through `mkexec`, which hands aarch64 ELF files to qemu-aarch64-static (with `-L DIR/root`, so
the program's own opens of /proc/cpuinfo or /data/... see the sandbox too). Output has DIR/root
mapped back to "/". The sync service maps every path into DIR/root.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

# Device path prefixes that live in the sandbox; everything else (/dev/null, /proc/self, /bin)
# is the host's.
MAPPED_PREFIXES = (
    "data", "sdcard", "storage", "system", "vendor", "odm", "product",
    "proc/cpuinfo", "sys/devices/system/cpu", "sys/class/thermal",
)
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+-]+$")
_DEVICE_PATH = re.compile(
    r"(?<![\w.~/$}\-])(?=/(?:" + "|".join(re.escape(p) for p in MAPPED_PREFIXES) + r")(?:$|[/\s'\"`;|&<>()*?\[\]{}:,=]))"
)
# "/" alone (as in `cd /` or `ls /`) is the device's root too.
_ROOT_WORD = re.compile(r"(?<![\w.~/$}\-])/(?=$|[\s;|&)'\"`])")


@dataclass(frozen=True)
class Cluster:
    """CPUs sharing a core type and a frequency domain."""

    cpus: tuple[int, ...]
    max_khz: int
    min_khz: int
    part: int  # the "CPU part" /proc/cpuinfo shows (0xd05 = Cortex-A55, 0xd0b = Cortex-A76)
    governor: str = "schedutil"


@dataclass(frozen=True)
class PhoneSpec:
    """What the emulated phone says about itself (props, CPUs, thermal zones)."""

    serialno: str = "MKBEMU0001"
    props: tuple[tuple[str, str], ...] = (
        ("ro.product.name", "mkbemu"),
        ("ro.product.model", "mkbench emulated arm64 phone"),
        ("ro.product.device", "mkbemu"),
        ("ro.product.brand", "mkbench"),
        ("ro.product.manufacturer", "mkbench"),
        ("ro.product.board", "mkbemu"),
        ("ro.product.cpu.abi", "arm64-v8a"),
        ("ro.product.cpu.abilist", "arm64-v8a"),
        ("ro.product.cpu.abilist64", "arm64-v8a"),
        ("ro.hardware", "mkbemu"),
        ("ro.board.platform", "mkbemu"),
        ("ro.soc.manufacturer", "mkbench"),
        ("ro.soc.model", "EMU855 (qemu-aarch64)"),
        ("ro.build.version.release", "13"),
        ("ro.build.version.sdk", "33"),
        ("ro.build.type", "userdebug"),
        ("ro.build.id", "MKBEMU.1"),
        ("ro.build.fingerprint", "mkbench/mkbemu/mkbemu:13/MKBEMU.1/1:userdebug/test-keys"),
        ("ro.debuggable", "1"),
        ("ro.secure", "0"),
        ("ro.adb.secure", "0"),
        ("ro.kernel.qemu", "1"),
        ("mkbench.emulated", "1"),
    )
    clusters: tuple[Cluster, ...] = (
        Cluster((0, 1, 2, 3), 1785600, 300000, 0xD05),
        Cluster((4, 5, 6), 2419200, 710400, 0xD0B),
        Cluster((7,), 2841600, 825600, 0xD0B),
    )
    features: str = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
    thermal_zones: tuple[tuple[str, int], ...] = (
        ("cpu-0-0-usr", 36800), ("cpu-1-0-usr", 38200), ("cpu-1-3-usr", 38900), ("battery", 31000),
    )
    hardware: str = "Qualcomm Technologies, Inc EMU855"
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def cpu_count(self) -> int:
        return sum(len(c.cpus) for c in self.clusters)

    def prop_dict(self) -> dict[str, str]:
        return dict(self.props) | {"ro.serialno": self.serialno}


class Sandbox:
    """A sandbox folder: creates the device tree and maps paths and commands into it."""

    def __init__(self, folder: Path, spec: PhoneSpec = PhoneSpec()):
        folder = Path(folder).resolve()
        if not _SAFE_PATH.match(str(folder)):
            raise ValueError(f"sandbox folder {folder} must be a plain path (letters, digits, _ . / + -)")
        self.folder = folder
        self.root = folder / "root"
        self.bin = folder / "bin"
        self.spec = spec
        self._root_bytes = str(self.root).encode()

    # ------------------------------------------------------------ the device tree
    def create(self) -> None:
        """Write the phone's description files and toolbox stand-ins (keeps /data as it is)."""
        for folder in ("data/local/tmp", "sdcard", "system/bin", "vendor", "proc"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        props = "".join(f"{k}={v}\n" for k, v in self.spec.prop_dict().items())
        (self.root / "system/build.prop").write_text("# the mkbench emulator's phone\n" + props)
        (self.root / "proc/cpuinfo").write_text(self._cpuinfo())
        self._write_cpu_sysfs()
        self._write_thermal_sysfs()
        self._write_shims()

    def _cpuinfo(self) -> str:
        blocks = []
        for cluster in self.spec.clusters:
            for cpu in cluster.cpus:
                blocks.append(
                    f"processor\t: {cpu}\nBogoMIPS\t: 38.40\nFeatures\t: {self.spec.features}\n"
                    f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\n"
                    f"CPU part\t: 0x{cluster.part:03x}\nCPU revision\t: 0\n"
                )
        return "\n".join(blocks) + f"\nHardware\t: {self.spec.hardware}\n"

    def _write_cpu_sysfs(self) -> None:
        base = self.root / "sys/devices/system/cpu"
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True)
        span = f"0-{self.spec.cpu_count - 1}\n"
        for name in ("online", "possible", "present"):
            (base / name).write_text(span)
        (base / "kernel_max").write_text(f"{self.spec.cpu_count - 1}\n")
        for cluster in self.spec.clusters:
            related = " ".join(str(c) for c in cluster.cpus) + "\n"
            for cpu in cluster.cpus:
                freq = base / f"cpu{cpu}" / "cpufreq"
                freq.mkdir(parents=True)
                (base / f"cpu{cpu}" / "online").write_text("1\n")
                values = {
                    "cpuinfo_max_freq": cluster.max_khz, "cpuinfo_min_freq": cluster.min_khz,
                    "scaling_max_freq": cluster.max_khz, "scaling_min_freq": cluster.min_khz,
                    "scaling_cur_freq": cluster.max_khz, "scaling_governor": cluster.governor,
                    "related_cpus": related.strip(), "affected_cpus": related.strip(),
                    "scaling_available_frequencies": " ".join(str(cluster.max_khz * k // 10) for k in (4, 6, 8, 10)),
                }
                for name, value in values.items():
                    (freq / name).write_text(f"{value}\n")

    def _write_thermal_sysfs(self) -> None:
        base = self.root / "sys/class/thermal"
        if base.exists():
            shutil.rmtree(base)
        for index, (kind, millideg) in enumerate(self.spec.thermal_zones):
            zone = base / f"thermal_zone{index}"
            zone.mkdir(parents=True)
            (zone / "type").write_text(f"{kind}\n")
            (zone / "temp").write_text(f"{millideg}\n")

    def _write_shims(self) -> None:
        self.bin.mkdir(parents=True, exist_ok=True)
        qemu = shutil.which("qemu-aarch64-static") or "qemu-aarch64-static"
        host_timeout = shutil.which("timeout") or "/usr/bin/timeout"
        host_uname = shutil.which("uname") or "/bin/uname"
        shims = {
            "mkexec": _MKEXEC.replace("@QEMU@", qemu),
            "getprop": _GETPROP,
            "taskset": _TASKSET,
            "timeout": _TIMEOUT.replace("@HOST_TIMEOUT@", host_timeout),
            "nproc": f"#!/bin/sh\necho {self.spec.cpu_count}\n",
            "uname": f"#!/bin/sh\n{host_uname} \"$@\" | sed 's/x86_64/aarch64/g'\n",
        }
        for name, text in shims.items():
            path = self.bin / name
            path.write_text(text.replace("@ROOT@", str(self.root)).replace("@BIN@", str(self.bin)))
            path.chmod(0o755)

    # ------------------------------------------------------------ mapping
    def host_path(self, device_path: str) -> Path:
        """Where a device path lives in the sandbox (never outside its root)."""
        parts = [p for p in device_path.split("/") if p not in ("", ".")]
        clean: list[str] = []
        for part in parts:
            if part == "..":
                if clean:
                    clean.pop()
            else:
                clean.append(part)
        return self.root.joinpath(*clean)

    def device_path(self, host_path: Path | str) -> str:
        """The device path of a file in the sandbox."""
        relative = Path(host_path).resolve().relative_to(self.root)
        return "/" + relative.as_posix() if str(relative) != "." else "/"

    def unmap_output(self, data: bytes) -> bytes:
        """Host sandbox paths in a program's output, shown as the device paths they stand for."""
        if self._root_bytes not in data:
            return data
        return data.replace(self._root_bytes + b"/", b"/").replace(self._root_bytes, b"/")

    def rewrite_command(self, command: str) -> str:
        """A device shell command made runnable on the host (paths mapped, binaries via mkexec)."""
        mapped = _DEVICE_PATH.sub(str(self.root), command)
        # A lone "/" is the root, except as division inside $((...)).
        pieces = re.split(r"(\$\(\(.*?\)\))", mapped, flags=re.S)
        mapped = "".join(p if i % 2 else _ROOT_WORD.sub(str(self.root) + "/", p) for i, p in enumerate(pieces))
        return insert_exec_shim(mapped, str(self.bin / "mkexec"))

    def shell_env(self, base: dict[str, str]) -> dict[str, str]:
        """The environment a device shell gets: our toolbox first on PATH, Android's variables."""
        env = {k: v for k, v in base.items() if k in ("LANG", "LC_ALL", "TERM", "TZ")}
        env.update({
            "MKBENCH_EXEC_PREFIX": str(self.bin / "mkexec"),  # what a device program starts runs through mkexec too
            "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.root / "data/local/tmp"),
            "TMPDIR": str(self.root / "data/local/tmp"),
            "ANDROID_ROOT": "/system",
            "ANDROID_DATA": "/data",
            "EXTERNAL_STORAGE": "/sdcard",
            "MKBENCH_EMULATED": "1",
        })
        return env


# ---------------------------------------------------------------- command rewriting
# Commands that run another command: (options taking a value, positional words before it).
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "taskset": (frozenset(), 1),
    "timeout": (frozenset({"-s", "-k", "--signal", "--kill-after"}), 1),
    "nice": (frozenset({"-n"}), 0),
    "env": (frozenset({"-u", "-C"}), 0),
    "exec": (frozenset({"-a"}), 0),
    "nohup": (frozenset(), 0),
    "time": (frozenset(), 0),
    "command": (frozenset(), 0),
    "chrt": (frozenset(), 1),
}
_KEYWORDS_BEFORE_COMMAND = {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "time"}
_KEYWORDS_WITHOUT_COMMAND = {"for", "case", "select", "function"}
_OPERATOR_CHARS = ";&|()\n"
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _scan_word(text: str, i: int) -> int:
    """The end of the shell word starting at i (quotes, escapes, $(...), ${...}, `...` respected)."""
    n = len(text)
    closers: list[str] = []  # what closes each open $( ( ${
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            end = text.find("'", i + 1)
            i = n if end < 0 else end + 1
            continue
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            continue
        if c == "`":
            end = text.find("`", i + 1)
            i = n if end < 0 else end + 1
            continue
        if c == "$" and i + 1 < n and text[i + 1] in "({":
            closers.append(")" if text[i + 1] == "(" else "}")
            i += 2
            continue
        if closers:
            if c == "(":
                closers.append(")")
            elif c == closers[-1]:
                closers.pop()
            i += 1
            continue
        if c in " \t" or c in _OPERATOR_CHARS or c in "<>":
            return i
        i += 1
    return min(i, n)


def insert_exec_shim(command: str, shim: str) -> str:
    """Put `shim` before every command word that names a program by path.

    A program named by path may be a device binary (an aarch64 ELF); the shim decides at run
    time. Words after wrappers such as `taskset MASK` or `timeout 5` count as command words.
    """
    out: list[str] = []
    i, n = 0, len(command)
    expect_command = True
    wrapper: tuple[frozenset[str], int] | None = None  # the wrapper whose arguments we are in
    positional_left = 0
    option_value_next = False
    redirect_target_next = False
    heredocs: list[tuple[str, bool]] = []
    heredoc_next = False
    heredoc_strip = False
    while i < n:
        c = command[i]
        if c in " \t":
            out.append(c)
            i += 1
            continue
        if c == "\n" and heredocs:
            out.append(c)
            i += 1
            i = _copy_heredocs(command, i, heredocs, out)
            heredocs = []
            expect_command, wrapper = True, None
            continue
        if c == "#" and (not out or out[-1][-1:] in " \t\n;&|("):
            end = command.find("\n", i)
            end = n if end < 0 else end
            out.append(command[i:end])
            i = end
            continue
        if c in _OPERATOR_CHARS:
            j = i + 1
            while j < n and command[j] in ";&|" and command[j] != "\n" and j - i < 2:
                j += 1
            out.append(command[i:j])
            i = j
            expect_command, wrapper, redirect_target_next = True, None, False
            continue
        # A redirection, optionally with its file descriptor number: 2>&1, >out, <<EOF.
        m = re.match(r"\d*(<<-|<<|<>|>>|>&|<&|>\||<|>)", command[i:])
        if m:
            out.append(m.group(0))
            i += m.end()
            redirect_target_next = True
            heredoc_next = m.group(1) in ("<<", "<<-")
            heredoc_strip = m.group(1) == "<<-"
            continue
        end = _scan_word(command, i)
        if end == i:  # a stray character the scanner will not take; copy it
            out.append(c)
            i += 1
            continue
        word = command[i:end]
        if redirect_target_next:
            redirect_target_next = False
            if heredoc_next:
                heredocs.append((word.strip("'\""), heredoc_strip))
                heredoc_next = False
            out.append(word)
        elif expect_command and wrapper is None:
            if _ASSIGNMENT.match(word):
                out.append(word)
            elif word in _KEYWORDS_BEFORE_COMMAND:
                out.append(word)
            elif word in _KEYWORDS_WITHOUT_COMMAND:
                out.append(word)
                expect_command = False
            else:
                if "/" in word:
                    out.append(shim + " ")
                out.append(word)
                expect_command = False
                if word in _WRAPPERS:
                    wrapper = _WRAPPERS[word]
                    positional_left = wrapper[1]
                    option_value_next = False
                    expect_command = True
        elif wrapper is not None:
            options_with_value, _ = wrapper
            if option_value_next:
                option_value_next = False
                out.append(word)
            elif word.startswith("-") and len(word) > 1:
                if word in ("-p", "--pid"):  # taskset -p: no command follows
                    wrapper, expect_command = None, False
                option_value_next = word in options_with_value
                out.append(word)
            elif _ASSIGNMENT.match(word) and wrapper is _WRAPPERS["env"]:
                out.append(word)
            elif positional_left > 0:
                positional_left -= 1
                out.append(word)
            else:
                if "/" in word:
                    out.append(shim + " ")
                out.append(word)
                next_wrapper = _WRAPPERS.get(word)
                wrapper, expect_command = None, False
                if next_wrapper is not None:
                    wrapper, positional_left, expect_command = next_wrapper, next_wrapper[1], True
        else:
            out.append(word)
        i = end
    return "".join(out)


def _copy_heredocs(command: str, i: int, heredocs: list[tuple[str, bool]], out: list[str]) -> int:
    """Copy here-document bodies verbatim; returns the index after the last delimiter line."""
    for delimiter, strip_tabs in heredocs:
        while i < len(command):
            end = command.find("\n", i)
            end = len(command) if end < 0 else end + 1
            line = command[i:end]
            out.append(line)
            i = end
            if (line.rstrip("\n").lstrip("\t") if strip_tabs else line.rstrip("\n")) == delimiter:
                break
    return i


# ---------------------------------------------------------------- toolbox stand-ins
_MKEXEC = r"""#!/bin/sh
# mkexec PROGRAM ARGS...: run a device program; aarch64 ELF files run under qemu-aarch64-static.
f="$1"
case "$f" in */*) ;; *) exec "$@" ;; esac
if [ -f "$f" ] && [ -x "$f" ]; then
  magic=$(od -An -tx1 -N4 "$f" 2>/dev/null | tr -d ' \n')
  if [ "$magic" = "7f454c46" ]; then
    machine=$(od -An -tx1 -j18 -N2 "$f" 2>/dev/null | tr -d ' \n')
    if [ "$machine" = "b700" ]; then
      exec @QEMU@ -L @ROOT@ "$@"
    fi
  elif [ "$(head -c 16 "$f" 2>/dev/null)" = "#!/system/bin/sh" ]; then
    exec /bin/sh "$@"
  fi
fi
exec "$@"
"""

_GETPROP = r"""#!/bin/sh
# getprop [NAME [DEFAULT]]: the emulated phone's properties, from its build.prop.
props=@ROOT@/system/build.prop
if [ $# -eq 0 ]; then
  awk -F= '/^[^#]/ && NF >= 2 { k = $1; sub(/^[^=]*=/, ""); printf "[%s]: [%s]\n", k, $0 }' "$props" | sort
else
  awk -F= -v name="$1" -v fallback="$2" '
    $1 == name { sub(/^[^=]*=/, ""); value = $0; found = 1 }
    END { if (found) print value; else print fallback }' "$props"
fi
"""

_TASKSET = r"""#!/bin/sh
# taskset [-a] [-p] MASK [PID | COMMAND...]: the emulator has no real cores to pin to, so the
# mask is checked and ignored, as if every core were the one asked for.
pid_mode=0
while [ $# -gt 0 ]; do
  case "$1" in
    -p|--pid) pid_mode=1; shift ;;
    -ap|-pa) pid_mode=1; shift ;;
    -a|--all-tasks) shift ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
if [ "$pid_mode" -eq 1 ]; then
  if [ $# -ge 2 ]; then exit 0; fi
  echo "pid $1's current affinity mask: ff"
  exit 0
fi
case "$1" in
  ''|*[!0-9a-fA-Fx]*) echo "taskset: bad mask '$1'" >&2; exit 1 ;;
esac
shift
if [ $# -eq 0 ]; then echo "usage: taskset MASK COMMAND..." >&2; exit 1; fi
exec @BIN@/mkexec "$@"
"""

_TIMEOUT = r"""#!/bin/sh
# timeout [-k DURATION] [-s SIGNAL] DURATION COMMAND...: the host's timeout; device binaries
# go through mkexec.
opts=""
while [ $# -gt 0 ]; do
  case "$1" in
    -k|-s) opts="$opts $1 $2"; shift 2 ;;
    -i) shift ;;
    -*) opts="$opts $1"; shift ;;
    *) break ;;
  esac
done
duration="$1"
shift
exec @HOST_TIMEOUT@ $opts "$duration" @BIN@/mkexec "$@"
"""
