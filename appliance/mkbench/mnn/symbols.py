"""What an object file or archive defines and uses, read with the binutils that match its compiler.

MNN builds with -fno-rtti, so the judge learns which classes a candidate defines, which it
borrows from MNN, and which registration functions it carries from the symbol tables alone
(`nm`, demangled with `c++filt`).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .toolbox import CompileKit, binutil


@dataclass(frozen=True)
class Symbol:
    kind: str  # nm's letter: T defined code, U undefined, W weak, ...
    mangled: str
    demangled: str

    @property
    def defined(self) -> bool:
        return self.kind not in "Uuw"

    @property
    def vtable_of(self) -> str | None:
        """The class whose vtable this is, if it is one."""
        return self.demangled.removeprefix("vtable for ") if self.demangled.startswith("vtable for ") else None


def read_symbols(kit: CompileKit, path: Path, extra: Sequence[str] = ()) -> list[tuple[str, Symbol]]:
    """(archive member or "", symbol) for every symbol nm lists in an object or archive."""
    listing = subprocess.run([binutil(kit.compile_command, "nm"), "-A", "-P", *extra, str(path)], capture_output=True, text=True)
    rows: list[tuple[str, str, str]] = []
    for line in listing.stdout.splitlines():
        head, _, rest = line.partition(": ")
        parts = rest.split()
        if len(parts) < 2:
            continue
        member = head[head.find("[") + 1 : -1] if head.endswith("]") else (head.split(":")[1] if ":" in head else "")
        rows.append((member, parts[0], parts[1]))
    demangled = demangle(kit, [r[1] for r in rows])
    return [(m, Symbol(k, n, demangled.get(n, n))) for m, n, k in rows]


def demangle(kit: CompileKit, names: Sequence[str]) -> dict[str, str]:
    if not names:
        return {}
    unique = sorted(set(names))
    out = subprocess.run([binutil(kit.compile_command, "c++filt")], input="\n".join(unique), capture_output=True, text=True)
    lines = out.stdout.splitlines()
    return dict(zip(unique, lines, strict=True)) if len(lines) == len(unique) else {n: n for n in unique}


def defines_class(source: str, qualified: str) -> bool:
    """Does the source itself define this class (not merely use it)?"""
    name = qualified.split("::")[-1]
    return re.search(rf"\b(?:class|struct)\s+{re.escape(name)}\b[^;{{]*\{{", source) is not None


_COMMENT_OR_STRING = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"', re.S)


def code_only(source: str) -> str:
    """The source without comments and string literals (a mention is not a use)."""
    return _COMMENT_OR_STRING.sub(" ", source)


def vtable_classes(kit: CompileKit, archive: Path, cache: Path, member_filter=None) -> frozenset[str]:
    """Classes with a vtable defined in an archive (only members member_filter(name) accepts),
    cached in a text file beside it."""
    if cache.is_file():
        return frozenset(cache.read_text().split("\n")) - {""}
    classes = {symbol.vtable_of for member, symbol in read_symbols(kit, archive, ["--defined-only"])
               if symbol.vtable_of and (member_filter is None or member_filter(member))}
    staging = cache.with_name(f"{cache.name}.{os.getpid()}.partial")  # workers list at once
    staging.write_text("\n".join(sorted(classes)) + "\n")
    staging.replace(cache)
    return frozenset(classes)
