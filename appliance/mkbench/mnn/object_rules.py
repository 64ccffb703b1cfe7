"""What a candidate's object file may hold, read from the object itself before it is linked.

The candidate's code runs inside a process of ours (the runner, or a converter). The jail
(sandbox.py) bounds what that process can do to the machine, the guard (mnn/runner/guard.cpp)
keeps its timing out of the process's reach; these rules bound what the kernel's own code may
reach for, from facts of its object file (symbols and instructions: a source scan can be fooled
by a macro, an object cannot):

- overrides: a symbol the candidate defines that the C and C++ runtime, MNN or the runner also
  defines (`clock_gettime`, `std::chrono::steady_clock::now()`, `memcpy`, `MNN::Interpreter::
  runSession`, ...). Linked ahead of them, it would replace theirs for the whole process. Inline
  functions and template instances (weak, one copy kept) are not overrides: every object has them.
- reach: a call to what no kernel needs: system calls, clocks, files and sockets, processes,
  signals, memory mappings and protection, dynamic loading, the environment and the program's
  arguments. (Threads are allowed and flagged: the judge runs both sides with the same thread
  count, and a kernel's own threads keep it out of the wins.)
- instructions: system-call and time-stamp instructions in its code (`syscall`, `svc`, `rdtsc`,
  reading the ARM generic timer or cycle counter).

Any of these refuses the candidate (verdict `forbidden`) with the symbol or instruction named.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

from .symbols import Symbol, demangle, read_symbols
from .toolbox import CompileKit, binutil

# C functions (and variables) a kernel has no use for, by name as the linker sees them.
REACH = {
    "system calls": ("syscall", "__syscall", "ioctl", "prctl", "ptrace", "process_vm_readv", "process_vm_writev",
                     "personality", "seccomp", "arch_prctl", "sched_setaffinity", "setpriority"),
    "clocks": ("clock_gettime", "__clock_gettime", "clock_gettime64", "__clock_gettime64", "gettimeofday",
               "__gettimeofday", "time", "times", "clock", "timespec_get", "clock_getres", "ftime",
               "getrusage", "clock_settime", "settimeofday", "adjtimex", "clock_adjtime", "setitimer",
               "getitimer", "alarm", "timer_create", "timer_settime", "timerfd_create"),
    "files": ("open", "open64", "openat", "openat64", "__open_2", "__open64_2", "__openat_2", "creat", "fopen",
              "fopen64", "freopen", "fdopen", "read", "write", "pread", "pwrite", "pread64", "pwrite64", "readv",
              "writev", "fread", "fwrite", "fgets", "fscanf", "opendir", "readdir", "stat", "lstat", "fstat",
              "stat64", "access", "faccessat", "unlink", "unlinkat", "rename", "renameat", "mkdir", "rmdir",
              "truncate", "ftruncate", "dup", "dup2", "dup3", "pipe", "pipe2", "memfd_create", "inotify_init", "readlink", "realpath", "chdir", "fchdir", "chmod",
              "chown", "link", "symlink", "mknod", "mount", "fcntl", "poll", "select", "epoll_create",
              "epoll_wait", "shm_open", "sendfile", "splice"),
    "the network": ("socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "send", "sendto",
                    "sendmsg", "recv", "recvfrom", "recvmsg", "getaddrinfo", "gethostbyname", "getsockopt", "setsockopt"),
    "processes": ("fork", "vfork", "clone", "clone3", "__clone", "execve", "execv", "execvp", "execvpe", "execl",
                  "execlp", "execle", "fexecve", "system", "popen", "posix_spawn", "posix_spawnp", "kill", "tgkill",
                  "tkill", "killpg", "setsid", "setpgid", "daemon", "waitpid", "wait", "wait4", "getpid", "getppid",
                  "gettid", "unshare", "setns", "setuid", "setgid", "chroot"),
    "signals": ("signal", "sigaction", "__sigaction", "sigprocmask", "pthread_sigmask", "sigaltstack", "raise",
                "sigqueue", "sigsuspend", "sigwait", "sigsetjmp", "siglongjmp", "bsd_signal", "sysv_signal"),
    "memory mappings": ("mmap", "mmap64", "munmap", "mprotect", "pkey_mprotect", "mremap", "madvise", "mlock",
                        "msync", "remap_file_pages", "brk", "sbrk"),
    "dynamic loading": ("dlopen", "dlsym", "dlvsym", "dladdr", "dlinfo", "dl_iterate_phdr", "__libc_dlopen_mode"),
    "the environment": ("getenv", "secure_getenv", "__secure_getenv", "setenv", "putenv", "unsetenv", "clearenv",
                        "environ", "__environ", "_environ", "__libc_argv", "__libc_argc", "program_invocation_name",
                        "program_invocation_short_name", "getauxval", "__progname", "__progname_full",
                        "__libc_stack_end", "_dl_argv"),
}
# C++ names (demangled, as prefixes) that reach the same things.
REACH_CPP = {
    "clocks": ("std::chrono::_V2::steady_clock::now", "std::chrono::_V2::system_clock::now",
               "std::chrono::steady_clock::now", "std::chrono::system_clock::now",
               "std::chrono::high_resolution_clock::now", "std::__1::chrono::steady_clock::now",
               "std::__1::chrono::system_clock::now", "std::__ndk1::chrono::steady_clock::now",
               "std::__ndk1::chrono::system_clock::now", "std::this_thread::sleep"),
    "files": ("std::basic_filebuf", "std::basic_ifstream", "std::basic_ofstream", "std::basic_fstream",
              "std::__1::basic_filebuf", "std::__1::basic_ifstream", "std::__1::basic_ofstream",
              "std::__1::basic_fstream", "std::__ndk1::basic_filebuf", "std::__ndk1::basic_ifstream",
              "std::__ndk1::basic_ofstream", "std::__ndk1::basic_fstream", "std::filesystem::",
              "std::__1::__fs::filesystem::", "std::__ndk1::__fs::filesystem::"),
    "entropy": ("std::random_device",),  # reads /dev/urandom or the CPU's generator: no kernel draws entropy
}
THREADS = ("pthread_create", "std::thread::_M_start_thread", "std::__1::thread::thread", "std::__ndk1::thread::thread",
           "thrd_create")

# Instructions, as objdump prints them, that enter the kernel or read a clock or cycle counter.
INSTRUCTIONS = re.compile(
    r"\t(?:syscall|sysenter|rdtscp?|rdpid|rdpmc|int\s+\$0x80|svc\s|hvc\s|smc\s|"
    r"mrs\s+\w+,\s*(?:cntvct_el0|cntpct_el0|cntvctss_el0|cntpctss_el0|pmccntr_el0|pmevcntr\w*|cntfrq_el0|"
    r"s3_3_c14_c0_[12]|s3_3_c9_c13_0))\b", re.I)


def universe(kit: CompileKit, objects: Sequence[Path], cache: Path) -> dict[str, str]:
    """Every symbol the process's other code defines, by mangled name -> "c" (the C runtime: every
    definition, weak ones too, since glibc's functions are mostly weak aliases) or "strong" (a
    strong definition in `objects`, MNN and the runner, or the C++ runtime); cached in a text file."""
    if cache.is_file():
        return dict(line.split(" ", 1) for line in cache.read_text().splitlines() if " " in line)
    names: dict[str, str] = {}
    for path in [*objects, *runtime_libraries(kit)]:
        c_runtime = _c_runtime(path)
        for _, symbol in read_symbols(kit, path, ["--defined-only", "--extern-only"]):
            if c_runtime and symbol.kind in "TDBRGSCIiWV":
                names[symbol.mangled.split("@")[0]] = "c"
            elif symbol.kind in "TDBRGSCIi":
                names.setdefault(symbol.mangled.split("@")[0], "strong")
    staging = cache.with_name(f"{cache.name}.{os.getpid()}.partial")
    staging.write_text("".join(f"{name} {tag}\n" for name, tag in sorted(names.items())))
    staging.replace(cache)
    return names


def runtime_libraries(kit: CompileKit) -> list[Path]:
    """The C and C++ runtime libraries the kit's compiler links (static archives where it has them,
    else shared objects)."""
    compiler = kit.compile_command[0]
    found = []
    for name in ("libc.a", "libm.a", "libpthread.a", "libdl.a", "libstdc++.a", "libc++_static.a", "libc++abi.a",
                 "libgcc.a", "libc.so.6", "libm.so.6", "libstdc++.so.6"):
        printed = subprocess.run([compiler, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
        path = Path(printed)
        if path.is_absolute() and path.is_file() and path.resolve() not in [f.resolve() for f in found]:
            found.append(path)
    return found


def _c_runtime(path: Path) -> bool:
    return path.name.split(".")[0] in ("libc", "libm", "libpthread", "libdl")


def forbidden(kit: CompileKit, obj: Path, defined_elsewhere: dict[str, str], symbols: Iterable[Symbol] | None = None
              ) -> list[str]:
    """What the object may not hold (module docstring), one line each; [] when it is clean.
    An override is a global definition of a name defined strongly elsewhere, or of a C runtime
    name in any way (a weak `clock_gettime` would keep libc's out of a static link)."""
    symbols = list(symbols) if symbols is not None else [s for _, s in read_symbols(kit, obj)]
    found = []
    for symbol in symbols:
        if not symbol.defined or not symbol.kind.isupper():
            continue
        elsewhere = defined_elsewhere.get(symbol.mangled)
        if elsewhere == "c" or (elsewhere == "strong" and symbol.kind not in "WV"):
            found.append(f"defines {symbol.demangled}, which the C/C++ runtime, MNN or the runner defines: "
                         f"linked first, it would replace theirs")
    for symbol in symbols:
        if symbol.kind != "U":
            continue
        what = reach_of(symbol)
        if what:
            found.append(f"calls {symbol.demangled} ({what}: no kernel needs that)")
    found += [f"holds the instruction '{i}' (system calls and clocks are off limits)" for i in instructions(kit, obj)]
    return found


HEADER_SUFFIXES = ("", ".h", ".hpp", ".hh", ".hxx", ".h++", ".inl", ".ipp", ".tcc", ".def")


def included(depfile: Path, source: Path, roots: Sequence[Path]) -> list[str]:
    """What a compile read that a kernel may not include, from its make-style dependency file
    (-MD): a file that is not a header (MNN's own .cpp files are its native implementations), or
    one outside the MNN tree, the toolchain and the system headers (the references, the database)."""
    try:
        text = depfile.read_text()
    except OSError:
        return []
    names = text.replace("\\\n", " ").split(":", 1)[-1].split()
    allowed = [Path(r).resolve() for r in roots]
    found = []
    for name in names:
        path = Path(name) if Path(name).is_absolute() else (depfile.parent / name)
        resolved = path.resolve()
        if resolved == source.resolve():
            continue
        if not any(resolved.is_relative_to(root) for root in allowed):
            found.append(f"includes {name}, outside MNN's tree and the system headers")
        elif resolved.suffix.lower() not in HEADER_SUFFIXES:
            found.append(f"includes {name}, which is not a header (MNN's sources are its native implementations)")
    return found


def reach_of(symbol: Symbol) -> str | None:
    """Which off-limits class an undefined symbol belongs to, or None."""
    plain = symbol.mangled.split("@")[0]
    for what, names in REACH.items():
        if plain in names:
            return what
    for what, prefixes in REACH_CPP.items():
        if symbol.demangled.startswith(prefixes):
            return what
    return None


def threads(symbols: Iterable[Symbol]) -> list[str]:
    """The thread-starting functions the object calls (allowed, flagged)."""
    return sorted({s.demangled.split("(")[0] for s in symbols if s.kind == "U" and
                   (s.mangled.split("@")[0] in THREADS or s.demangled.startswith(THREADS))})


def instructions(kit: CompileKit, obj: Path) -> list[str]:
    """Forbidden instructions in the object's code, as objdump prints them (each once)."""
    listing = subprocess.run([binutil(kit.compile_command, "objdump"), "-d", "--no-show-raw-insn", str(obj)],
                             capture_output=True, text=True).stdout
    return sorted({m.group(0).strip() for m in INSTRUCTIONS.finditer(listing)})


__all__ = ["forbidden", "instructions", "reach_of", "runtime_libraries", "threads", "universe", "demangle"]
