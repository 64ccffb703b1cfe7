"""The mkbench emulator: a device that speaks adb's device protocol over TCP on loopback.

The real adb server attaches it with `adb connect 127.0.0.1:PORT`, exactly as it attaches an
Android emulator or a phone in TCP mode. It serves `shell:` (v1), `shell,v2,...:` (separate
stdout/stderr and exit codes), `exec:` and `sync:` (STAT/LIST/SEND/RECV and the v2 STA2/LST2/
LIS2), answers `getprop` from a build.prop describing an 8-core big.LITTLE arm64 phone, and runs
arm64 binaries under qemu-aarch64-static inside a sandbox folder (see sandbox.py). Its props
say it is emulated (ro.kernel.qemu=1, mkbench.emulated=1): its timings are never performance.

    python -m mkbench.devices.emulator --port 5599 --sandbox DIR [--pid-file FILE]
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import pty
import queue
import resource
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

from . import adbwire as wire
from .sandbox import Sandbox

log = logging.getLogger("mkbench.emulator")

DEFAULT_PORT = 5599  # outside adb's emulator scan range (5555-5585), so only `adb connect` finds it
FEATURES = ("shell_v2", "stat_v2", "ls_v2", "fixed_push_mkdir", "fixed_push_symlink_timestamp")


class StreamClosed(Exception):
    """The other end closed the stream (or the whole connection went away)."""


# ---------------------------------------------------------------- streams and the transport
class Stream:
    """One adb stream (a service's socket): ordered bytes in, flow-controlled bytes out."""

    def __init__(self, transport: "Transport", local_id: int, remote_id: int):
        self.transport = transport
        self.local_id = local_id
        self.remote_id = remote_id
        self._incoming: queue.Queue[bytes | None] = queue.Queue()
        self._buffer = bytearray()
        self._can_send = threading.Event()
        self._can_send.set()  # after our OKAY to OPEN we may write once
        self.closed = threading.Event()
        self._close_lock = threading.Lock()

    # called by the transport's reader
    def deliver(self, data: bytes) -> None:
        self._incoming.put(data)

    def acknowledged(self) -> None:
        self._can_send.set()

    def remote_closed(self) -> None:
        self.closed.set()
        self._can_send.set()
        self._incoming.put(None)

    # used by services
    def recv(self) -> bytes:
        """The next chunk the other end wrote; acknowledging it lets it write the next."""
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            return data
        data = self._incoming.get()
        if data is None:
            self._incoming.put(None)
            raise StreamClosed()
        self.transport.send(wire.Message(wire.A_OKAY, self.local_id, self.remote_id))
        return data

    def read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            data = self._incoming.get()
            if data is None:
                self._incoming.put(None)
                raise StreamClosed()
            self.transport.send(wire.Message(wire.A_OKAY, self.local_id, self.remote_id))
            self._buffer += data
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def write(self, data: bytes) -> None:
        """Send bytes, waiting for the other end's OKAY before each further message."""
        limit = self.transport.max_payload
        for start in range(0, len(data), limit):
            while not self._can_send.wait(1.0):
                if not self.transport.alive:
                    raise StreamClosed()
            if self.closed.is_set():
                raise StreamClosed()
            self._can_send.clear()
            self.transport.send(wire.Message(wire.A_WRTE, self.local_id, self.remote_id, data[start:start + limit]))

    def close(self) -> None:
        with self._close_lock:
            if self.closed.is_set():
                self.transport.forget(self.local_id)
                return
            self.closed.set()
        self.transport.send(wire.Message(wire.A_CLSE, self.local_id, self.remote_id))
        self.transport.forget(self.local_id)


class Transport:
    """One TCP connection from an adb server: the handshake, streams, and their services."""

    def __init__(self, sock: socket.socket, emulator: "Emulator"):
        self.sock = sock
        self.emulator = emulator
        self.max_payload = wire.MAX_PAYLOAD
        self.alive = True
        self._send_lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._streams_lock = threading.Lock()
        self._next_id = 1

    def send(self, message: wire.Message) -> None:
        try:
            with self._send_lock:
                self.sock.sendall(wire.encode(message))
        except OSError:
            self.alive = False

    def forget(self, local_id: int) -> None:
        with self._streams_lock:
            self._streams.pop(local_id, None)

    def _recv_exact(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise EOFError("connection closed")
            data += chunk
        return bytes(data)

    def serve(self) -> None:
        """Read messages until the connection ends; then close every stream."""
        try:
            while True:
                command, arg0, arg1, length = wire.decode_header(self._recv_exact(wire.HEADER.size))
                self._handle(wire.Message(command, arg0, arg1, self._recv_exact(length) if length else b""))
        except (EOFError, OSError, wire.ProtocolError) as error:
            log.info("connection ended: %s", error)
        finally:
            self.alive = False
            with self._streams_lock:
                streams, self._streams = list(self._streams.values()), {}
            for stream in streams:
                stream.remote_closed()
            try:
                self.sock.close()
            except OSError:
                pass

    def _handle(self, message: wire.Message) -> None:
        if message.command == wire.A_CNXN:
            self.max_payload = max(4096, min(wire.MAX_PAYLOAD, message.arg1))
            banner = self.emulator.banner().encode()
            self.send(wire.Message(wire.A_CNXN, wire.A_VERSION, wire.MAX_PAYLOAD, banner))
            log.info("connected: %s", message.data[:200])
        elif message.command == wire.A_OPEN:
            self._open(message.arg0, message.data.rstrip(b"\0").decode("utf-8", "replace"))
        elif message.command == wire.A_OKAY:
            stream = self._streams.get(message.arg1)
            if stream is not None:
                stream.acknowledged()
        elif message.command == wire.A_WRTE:
            stream = self._streams.get(message.arg1)
            if stream is None:
                self.send(wire.Message(wire.A_CLSE, 0, message.arg0))
            else:
                stream.deliver(message.data)
        elif message.command == wire.A_CLSE:
            with self._streams_lock:
                stream = self._streams.pop(message.arg1, None)
            if stream is not None:
                stream.remote_closed()
        else:  # AUTH/STLS are only sent in answer to a device that asks; we never ask
            log.info("ignored %s", message.name)

    def _open(self, remote_id: int, service: str) -> None:
        handler = self.emulator.service(service)
        if handler is None:
            log.info("refused service %r", service)
            self.send(wire.Message(wire.A_CLSE, 0, remote_id))
            return
        with self._streams_lock:
            local_id, self._next_id = self._next_id, self._next_id + 1
            stream = Stream(self, local_id, remote_id)
            self._streams[local_id] = stream
        self.send(wire.Message(wire.A_OKAY, local_id, remote_id))
        log.info("stream %d: %s", local_id, service[:200])
        threading.Thread(target=self._run_service, args=(handler, stream), daemon=True,
                         name=f"service-{local_id}").start()

    @staticmethod
    def _run_service(handler: Callable[[Stream], None], stream: Stream) -> None:
        try:
            handler(stream)
        except StreamClosed:
            pass
        except Exception:
            log.exception("service failed")
        finally:
            stream.close()


# ---------------------------------------------------------------- the reaper
class Reaper:
    """A forked watcher that kills our process groups if the emulator dies (even by SIGKILL)."""

    def __init__(self) -> None:
        read_end, self._write_end = os.pipe()
        self._lock = threading.Lock()
        self.pid = os.fork()
        if self.pid == 0:  # the watcher: hold on until the emulator's end of the pipe closes
            os.close(self._write_end)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            groups: set[int] = set()
            with os.fdopen(read_end, "r") as lines:
                for line in lines:
                    if line[:1] in "+-" and line[1:].strip().isdigit():
                        (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
            for group in groups:
                try:
                    os.killpg(group, signal.SIGKILL)
                except OSError:
                    pass
            os._exit(0)
        os.close(read_end)

    def _tell(self, line: str) -> None:
        with self._lock:
            try:
                os.write(self._write_end, line.encode())
            except OSError:
                pass

    def watch(self, group: int) -> None:
        self._tell(f"+{group}\n")

    def release(self, group: int) -> None:
        self._tell(f"-{group}\n")


# ---------------------------------------------------------------- services
def _kill_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            pass


def _exit_status(returncode: int) -> int:
    """A shell-style status: 128+N for a process killed by signal N (as adbd reports it)."""
    return 128 - returncode if returncode < 0 else returncode


class Emulator:
    """The emulated phone: its banner, its services, its sandbox and its processes."""

    def __init__(self, sandbox: Sandbox, reaper: Reaper | None = None):
        self.sandbox = sandbox
        self.reaper = reaper
        self._processes: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def banner(self) -> str:
        props = self.sandbox.spec.prop_dict()
        keys = ("ro.product.name", "ro.product.model", "ro.product.device")
        fields = ";".join(f"{k}={props[k]}" for k in keys)
        return f"device::{fields};features={','.join(FEATURES)}"

    def service(self, name: str) -> Callable[[Stream], None] | None:
        """The handler for a service name, or None when we do not offer it."""
        if name.startswith("shell"):
            head, sep, command = name.partition(":")
            if not sep or not (head == "shell" or head.startswith("shell,")):
                return None
            args = head.split(",")[1:]
            v2 = "v2" in args
            use_pty = "pty" in args or (not command and "raw" not in args)
            term = next((a[5:] for a in args if a.startswith("TERM=")), None)
            return lambda stream: self._shell(stream, command, v2=v2, use_pty=use_pty, term=term)
        if name.startswith("exec:"):
            return lambda stream: self._shell(stream, name[5:], v2=False, use_pty=False, term=None)
        if name.startswith("sync:"):
            return lambda stream: SyncService(self.sandbox, stream).serve()
        if name.startswith(("root:", "unroot:", "remount:")):
            reply = {"root:": "adbd is already running as root\n", "unroot:": "adbd not running as root\n",
                     "remount:": "remount succeeded\n"}[name.split(":")[0] + ":"]
            return lambda stream: stream.write(reply.encode())
        return None

    # ------------------------------------------------------------ processes
    def _spawn(self, command: str, use_pty: bool, separate_stderr: bool, term: str | None):
        env = self.sandbox.shell_env(dict(os.environ))
        if term:
            env["TERM"] = term
        argv = ["/bin/sh", "-c", self.sandbox.rewrite_command(command)] if command else ["/bin/sh", "-i"]
        master = None
        if use_pty:
            master, slave = pty.openpty()
            if not command:  # reopening the terminal in the new session makes it the controlling one
                argv = ["/bin/sh", "-c", f"exec /bin/sh -i <>{os.ttyname(slave)} >&0 2>&0"]
                env["PS1"] = f"{self.sandbox.spec.prop_dict()['ro.product.device']}:/ # "
            process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=self.sandbox.root,
                                       env=env, start_new_session=True, close_fds=True)
            os.close(slave)
        else:
            process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE if separate_stderr else subprocess.STDOUT,
                                       cwd=self.sandbox.root, env=env, start_new_session=True, close_fds=True)
        if self.reaper:
            self.reaper.watch(process.pid)
        with self._lock:
            self._processes.add(process)
        return process, master

    def _finished(self, process: subprocess.Popen) -> None:
        if self.reaper:
            self.reaper.release(process.pid)
        with self._lock:
            self._processes.discard(process)

    def kill_all(self) -> None:
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            _kill_group(process)

    def _shell(self, stream: Stream, command: str, *, v2: bool, use_pty: bool, term: str | None) -> None:
        process, master = self._spawn(command, use_pty, separate_stderr=v2 and not use_pty, term=term)
        write_lock = threading.Lock()

        def emit(packet_id: int, data: bytes) -> None:
            data = self.sandbox.unmap_output(data)
            with write_lock:
                stream.write(wire.shell_packet(packet_id, data) if v2 else data)

        def pump(fd: int, packet_id: int) -> None:
            try:
                while True:
                    try:
                        data = os.read(fd, 64 * 1024)
                    except OSError:  # a pty's reader gets EIO once the other side is gone
                        break
                    if not data:
                        break
                    emit(packet_id, data)
            except StreamClosed:
                _kill_group(process)

        stdin_fd = master if use_pty else process.stdin.fileno()
        outputs = [(master, wire.SHELL_STDOUT)] if use_pty else [(process.stdout.fileno(), wire.SHELL_STDOUT)]
        if v2 and not use_pty:
            outputs.append((process.stderr.fileno(), wire.SHELL_STDERR))
        pumps = [threading.Thread(target=pump, args=o, daemon=True) for o in outputs]
        for thread in pumps:
            thread.start()
        threading.Thread(target=self._feed_stdin, args=(stream, process, stdin_fd, v2, use_pty, master),
                         daemon=True).start()
        try:
            process.wait()
            for thread in pumps:
                while thread.is_alive() and not stream.closed.is_set():
                    thread.join(0.5)
            if v2 and not stream.closed.is_set():
                with write_lock:
                    stream.write(wire.shell_packet(wire.SHELL_EXIT, bytes([_exit_status(process.returncode) & 0xFF])))
        finally:
            _kill_group(process)
            self._finished(process)
            for f in (process.stdin, process.stdout, process.stderr):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass
            if master is not None:
                try:
                    os.close(master)
                except OSError:
                    pass

    @staticmethod
    def _feed_stdin(stream: Stream, process: subprocess.Popen, fd: int, v2: bool, use_pty: bool, master) -> None:
        """Host → process: stdin bytes (raw, or shell v2 packets); a closed stream kills it."""
        stdin_open = True
        try:
            while True:
                if v2:
                    packet_id, length = wire.SHELL_HEADER.unpack(stream.read_exact(wire.SHELL_HEADER.size))
                    data = stream.read_exact(length) if length else b""
                else:
                    packet_id, data = wire.SHELL_STDIN, stream.recv()
                if packet_id == wire.SHELL_STDIN and stdin_open:
                    try:
                        os.write(fd, data)
                    except OSError:
                        stdin_open = False
                elif packet_id == wire.SHELL_CLOSE_STDIN and stdin_open:
                    stdin_open = False
                    if use_pty:
                        os.write(fd, b"\x04")
                    elif process.stdin is not None:
                        process.stdin.close()
                elif packet_id == wire.SHELL_WINDOW_SIZE and use_pty and master is not None:
                    _set_window_size(master, data)
        except (StreamClosed, ValueError, struct.error):
            _kill_group(process)


def _set_window_size(fd: int, data: bytes) -> None:
    """Window-size packets carry "ROWSxCOLS,XxY" as text."""
    import fcntl
    import termios
    try:
        rows_cols = data.decode().split(",")[0]
        rows, cols = (int(v) for v in rows_cols.split("x"))
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    except (ValueError, OSError):
        pass


class SyncService:
    """The file sync protocol: STAT/LSTAT, LIST, SEND, RECV and their v2 variants, until QUIT."""

    def __init__(self, sandbox: Sandbox, stream: Stream):
        self.sandbox = sandbox
        self.stream = stream

    def serve(self) -> None:
        while True:
            sync_id, length = wire.SYNC_HEADER.unpack(self.stream.read_exact(wire.SYNC_HEADER.size))
            if sync_id == b"QUIT":
                return
            if length > wire.SYNC_PATH_MAX:
                self._fail("path too long")
                return
            path = self.stream.read_exact(length).decode("utf-8", "surrogateescape")
            handler = {
                b"STAT": self._stat_v1, b"STA2": self._stat_v2, b"LST2": self._stat_v2,
                b"LIST": self._list, b"LIS2": self._list,
                b"SEND": self._send, b"RECV": self._recv,
            }.get(sync_id)
            if handler is None:
                self._fail(f"unknown sync command {sync_id!r}")
                return
            handler(sync_id, path)

    def _fail(self, message: str) -> None:
        data = message.encode()
        self.stream.write(wire.sync_packet(b"FAIL", len(data), data))

    def _stat_v1(self, _sync_id: bytes, path: str) -> None:
        try:
            st = os.lstat(self.sandbox.host_path(path))
            packed = wire.STAT_V1.pack(b"STAT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime) & 0xFFFFFFFF)
        except OSError:
            packed = wire.STAT_V1.pack(b"STAT", 0, 0, 0)
        self.stream.write(packed)

    @staticmethod
    def _v2_fields(st: os.stat_result) -> tuple:
        return (st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
                int(st.st_atime), int(st.st_mtime), int(st.st_ctime))

    def _stat_v2(self, sync_id: bytes, path: str) -> None:
        host = self.sandbox.host_path(path)
        try:
            st = os.stat(host) if sync_id == b"STA2" else os.lstat(host)
            packed = wire.STAT_V2.pack(sync_id, 0, *self._v2_fields(st))
        except OSError as error:
            packed = wire.STAT_V2.pack(sync_id, error.errno or errno.EIO, *([0] * 10))
        self.stream.write(packed)

    def _list(self, sync_id: bytes, path: str) -> None:
        host = self.sandbox.host_path(path)
        v2 = sync_id == b"LIS2"
        out = bytearray()
        try:
            names = [".", ".."] + sorted(os.listdir(host))
        except OSError:
            names = []
        for name in names:
            try:
                st = os.lstat(host / name)
            except OSError:
                continue
            encoded = name.encode("utf-8", "surrogateescape")
            if v2:
                out += wire.DENT_V2.pack(b"DNT2", 0, *self._v2_fields(st), len(encoded)) + encoded
            else:
                out += wire.DENT_V1.pack(b"DENT", st.st_mode, st.st_size & 0xFFFFFFFF,
                                         int(st.st_mtime) & 0xFFFFFFFF, len(encoded)) + encoded
            if len(out) >= self.stream.transport.max_payload // 2:
                self.stream.write(bytes(out))
                out.clear()
        if v2:
            out += wire.DENT_V2.pack(b"DONE", 0, *([0] * 10), 0)
        else:
            out += wire.DENT_V1.pack(b"DONE", 0, 0, 0, 0)
        self.stream.write(bytes(out))

    def _send(self, _sync_id: bytes, spec: str) -> None:
        path, comma, mode_text = spec.rpartition(",")
        if not comma:
            path, mode_text = spec, str(0o100644)
        try:
            mode = int(mode_text)
        except ValueError:
            path, mode = spec, 0o100644
        host = self.sandbox.host_path(path)
        error: str | None = None
        partial = host.with_name(f".{host.name}.mkbench-partial")
        symlink_target = bytearray()
        out = None
        try:
            host.parent.mkdir(parents=True, exist_ok=True)  # fixed_push_mkdir
            if host.is_dir():
                raise IsADirectoryError(errno.EISDIR, "Is a directory")
            if not stat.S_ISLNK(mode):
                out = open(partial, "wb")
        except OSError as exc:
            error = f"couldn't create file: {exc.strerror or exc}"
        while True:  # take every DATA until DONE, even after an error, so the stream stays in step
            sync_id, value = wire.SYNC_HEADER.unpack(self.stream.read_exact(wire.SYNC_HEADER.size))
            if sync_id == b"DATA":
                if value > wire.SYNC_DATA_MAX:
                    error = error or "data chunk larger than 64 KiB"
                    break
                data = self.stream.read_exact(value)
                if error is None:
                    if out is None:
                        symlink_target += data
                    else:
                        try:
                            out.write(data)
                        except OSError as exc:
                            error = f"write failed: {exc.strerror}"
            elif sync_id == b"DONE":
                mtime = value
                break
            else:
                error = error or f"invalid data message {sync_id!r}"
                break
        try:
            if out is not None:
                out.close()
                if error is None:
                    os.chmod(partial, stat.S_IMODE(mode) or 0o644)
                    os.replace(partial, host)
                    os.utime(host, (mtime, mtime))
                else:
                    partial.unlink(missing_ok=True)
            elif error is None:
                if host.is_symlink() or host.exists():
                    host.unlink()
                os.symlink(symlink_target.decode("utf-8", "surrogateescape"), host)
                os.utime(host, (mtime, mtime), follow_symlinks=False)
        except OSError as exc:
            error = error or f"couldn't finish {path}: {exc.strerror}"
        if error is not None:
            self._fail(error)
        else:
            self.stream.write(wire.sync_packet(b"OKAY", 0))

    def _recv(self, _sync_id: bytes, path: str) -> None:
        host = self.sandbox.host_path(path)
        try:
            source = open(host, "rb")
        except OSError as exc:
            self._fail(f"{exc.strerror or exc}")
            return
        batch = bytearray()
        limit = max(wire.SYNC_DATA_MAX + 8, self.stream.transport.max_payload - wire.SYNC_DATA_MAX)
        with source:
            while True:
                chunk = source.read(wire.SYNC_DATA_MAX)
                if not chunk:
                    break
                batch += wire.sync_packet(b"DATA", len(chunk), chunk)
                if len(batch) >= limit:
                    self.stream.write(bytes(batch))
                    batch.clear()
        batch += wire.sync_packet(b"DONE", 0)
        self.stream.write(bytes(batch))


# ---------------------------------------------------------------- the server
def serve(port: int, sandbox_dir: Path, pid_file: Path | None = None, host: str = "127.0.0.1") -> None:
    """Listen on host:port and serve adb servers until SIGTERM/SIGINT."""
    sandbox = Sandbox(sandbox_dir)
    sandbox.create()
    # qemu dumps core on a guest's fatal signal; a phone leaves no such file in the run folder.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    reaper = Reaper()  # fork before any thread starts
    emulator = Emulator(sandbox, reaper)
    listener = socket.create_server((host, port))
    listener.settimeout(0.5)
    stopping = threading.Event()

    def stop(_signum, _frame) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if pid_file:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{os.getpid()}\n")
    log.info("listening on %s:%d, sandbox %s", host, port, sandbox.folder)
    try:
        while not stopping.is_set():
            try:
                connection, peer = listener.accept()
            except (socket.timeout, InterruptedError):
                continue
            except OSError:
                if stopping.is_set():
                    break
                raise
            connection.settimeout(None)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            log.info("adb server connected from %s", peer)
            threading.Thread(target=Transport(connection, emulator).serve, daemon=True, name="transport").start()
    finally:
        listener.close()
        emulator.kill_all()
        if pid_file:
            try:
                if pid_file.read_text().strip() == str(os.getpid()):
                    pid_file.unlink()
            except OSError:
                pass
        log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mkbench.devices.emulator", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--sandbox", type=Path, required=True, help="folder standing in for the device's /")
    parser.add_argument("--pid-file", type=Path)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    serve(args.port, args.sandbox, args.pid_file)


if __name__ == "__main__":
    main()
