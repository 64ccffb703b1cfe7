"""Content hashes of local files, remembered while a file is unchanged (size and mtime)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

_cache: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()


def sha256(path: Path) -> str:
    """The file's sha256, computed once per (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _lock:
        if key in _cache:
            return _cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    with _lock:
        _cache[key] = value
    return value


def files_under(local: Path) -> list[tuple[Path, str]]:
    """(file, path relative to `local` in posix form) for a file or every file in a folder."""
    if local.is_dir():
        return [(f, f.relative_to(local).as_posix()) for f in sorted(local.rglob("*")) if f.is_file()]
    return [(local, "")]


def is_aarch64_elf(path: Path) -> bool:
    """An ELF file for aarch64 (e_machine 183)?"""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return False
    return len(head) == 20 and head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183
