"""The adb wire formats the emulator speaks: transport messages, shell v2 packets, sync requests.

References (AOSP packages/modules/adb): protocol.txt (24-byte message header: command, arg0,
arg1, data length, data checksum, magic = command ^ 0xffffffff), shell_protocol.h (1-byte id +
4-byte little-endian length), file_sync_protocol.h and SYNC.TXT (4-byte id + 4-byte length).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


def _cmd(name: bytes) -> int:
    return struct.unpack("<I", name)[0]


A_SYNC = _cmd(b"SYNC")
A_CNXN = _cmd(b"CNXN")
A_AUTH = _cmd(b"AUTH")
A_OPEN = _cmd(b"OPEN")
A_OKAY = _cmd(b"OKAY")
A_CLSE = _cmd(b"CLSE")
A_WRTE = _cmd(b"WRTE")
A_STLS = _cmd(b"STLS")

COMMAND_NAMES = {A_SYNC: "SYNC", A_CNXN: "CNXN", A_AUTH: "AUTH", A_OPEN: "OPEN", A_OKAY: "OKAY",
                 A_CLSE: "CLSE", A_WRTE: "WRTE", A_STLS: "STLS"}

# 0x01000001 lets both sides skip the data checksum; we still fill it for older readers.
A_VERSION = 0x01000001
A_VERSION_MIN = 0x01000000
MAX_PAYLOAD = 256 * 1024
HEADER = struct.Struct("<6I")

# Shell protocol packet ids (shell_protocol.h).
SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN, SHELL_WINDOW_SIZE = range(6)
SHELL_HEADER = struct.Struct("<BI")

# Sync protocol: the largest DATA chunk either side may send.
SYNC_DATA_MAX = 64 * 1024
SYNC_HEADER = struct.Struct("<4sI")
SYNC_PATH_MAX = 1024
STAT_V1 = struct.Struct("<4sIII")  # id, mode, size, mtime
DENT_V1 = struct.Struct("<4sIIII")  # id, mode, size, mtime, namelen
STAT_V2 = struct.Struct("<4sIQQIIIIQqqq")  # id, error, dev, ino, mode, nlink, uid, gid, size, atime, mtime, ctime
DENT_V2 = struct.Struct("<4sIQQIIIIQqqqI")  # stat_v2 + namelen


@dataclass(frozen=True)
class Message:
    """One transport message: a header's fields and its payload."""

    command: int
    arg0: int
    arg1: int
    data: bytes = b""

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.command, f"0x{self.command:08x}")


def checksum(data: bytes) -> int:
    """The legacy payload checksum: the byte sum, modulo 2**32."""
    return sum(data) & 0xFFFFFFFF


def encode(message: Message) -> bytes:
    """A message as it goes on the wire: header then payload."""
    header = HEADER.pack(message.command, message.arg0, message.arg1, len(message.data),
                         checksum(message.data), message.command ^ 0xFFFFFFFF)
    return header + message.data


class ProtocolError(Exception):
    """The peer sent something that is not an adb message."""


def decode_header(header: bytes) -> tuple[int, int, int, int]:
    """(command, arg0, arg1, data_length) from a 24-byte header, checking the magic."""
    command, arg0, arg1, length, _check, magic = HEADER.unpack(header)
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic in header {header.hex()}")
    if length > 16 * 1024 * 1024:
        raise ProtocolError(f"payload of {length} bytes is larger than any adb peer sends")
    return command, arg0, arg1, length


def shell_packet(packet_id: int, data: bytes = b"") -> bytes:
    return SHELL_HEADER.pack(packet_id, len(data)) + data


def sync_packet(sync_id: bytes, length_or_value: int, data: bytes = b"") -> bytes:
    return SYNC_HEADER.pack(sync_id, length_or_value) + data


def parse_banner(banner: bytes) -> dict[str, str]:
    """Props of a connection banner `kind:serial:key=value;...;features=a,b` as a dict."""
    text = banner.rstrip(b"\0").decode("utf-8", "replace")
    parts = text.split(":", 2)
    props: dict[str, str] = {"kind": parts[0]}
    for item in (parts[2] if len(parts) > 2 else "").split(";"):
        if "=" in item:
            key, value = item.split("=", 1)
            props[key] = value
    return props
