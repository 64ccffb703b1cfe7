"""Read a GGUF file's header without loading it, to refuse a corrupt or truncated file early.

The header says how many tensors the file holds, their types, shapes and offsets; from that
the exact end of the tensor data follows, so a file cut short is caught before llama.cpp
maps it. Only the few metadata keys mkbench uses are kept.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# ggml type id -> (elements per block, bytes per block), as in gguf-py GGML_QUANT_SIZES.
GGML_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 36),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
    40: (64, 36),  # NVFP4
    41: (128, 18),  # Q1_0
    42: (64, 18),  # Q2_0
}

# GGUF metadata value types -> struct format of a scalar (8: string, 9: array).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_MAX_STRING = 1 << 28  # a longer metadata string means a corrupt header
_MAX_COUNT = 1 << 32


class GGUFError(ValueError):
    """The file is not a readable, complete GGUF file; the message says what is wrong."""


@dataclass(frozen=True)
class GGUFInfo:
    """What the header of a GGUF file says."""

    version: int
    tensor_count: int
    architecture: str | None
    model_name: str | None
    context_length: int | None
    has_chat_template: bool
    data_offset: int  # where tensor data starts
    data_end: int | None  # where the last tensor ends; None when a tensor type is unknown
    file_size: int


def read_header(path: Path) -> GGUFInfo:
    """Parse the header of `path`; raise GGUFError when it is not GGUF, corrupt or truncated."""
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        reader = _Reader(f, path)
        if reader.raw(4) != MAGIC:
            raise GGUFError(f"{path} is not a GGUF file (bad magic number)")
        version = reader.scalar("<I")
        if version not in (2, 3):
            raise GGUFError(f"{path}: unsupported GGUF version {version} (mkbench reads versions 2 and 3)")
        tensor_count = reader.count()
        kv_count = reader.count()
        kept: dict[str, object] = {}
        for _ in range(kv_count):
            key = reader.string()
            value_type = reader.scalar("<I")
            wanted = key in _KEPT_KEYS or key.endswith(".context_length")
            value = reader.value(value_type, keep=wanted)
            if wanted:
                kept[key] = value
        tensors = [reader.tensor_info() for _ in range(tensor_count)]
        alignment = int(kept.get("general.alignment", DEFAULT_ALIGNMENT))
        if alignment <= 0 or alignment & (alignment - 1):
            raise GGUFError(f"{path}: corrupt header (alignment {alignment})")
        data_offset = -(-f.tell() // alignment) * alignment
    architecture = kept.get("general.architecture")
    data_end = _data_end(tensors, data_offset)
    info = GGUFInfo(
        version=version,
        tensor_count=tensor_count,
        architecture=architecture if isinstance(architecture, str) else None,
        model_name=kept.get("general.name") if isinstance(kept.get("general.name"), str) else None,
        context_length=_int_or_none(kept.get(f"{architecture}.context_length")),
        has_chat_template="tokenizer.chat_template" in kept,
        data_offset=data_offset,
        data_end=data_end,
        file_size=file_size,
    )
    check_complete(info, path)
    return info


def check_complete(info: GGUFInfo, path: Path) -> None:
    """Raise GGUFError when the file is shorter than its tensors need."""
    end = info.data_end if info.data_end is not None else info.data_offset
    if info.file_size < end:
        raise GGUFError(f"{path} is truncated: its tensors need {end} bytes but the file has {info.file_size}; copy or download it again")


_KEPT_KEYS = {"general.architecture", "general.name", "general.alignment", "tokenizer.chat_template"}


def _data_end(tensors: list[tuple[str, list[int], int, int]], data_offset: int) -> int | None:
    end = data_offset
    for _name, dims, ggml_type, offset in tensors:
        if ggml_type not in GGML_TYPE_SIZES:
            return None  # a newer quantization; only the header could be checked
        block, block_bytes = GGML_TYPE_SIZES[ggml_type]
        elements = 1
        for d in dims:
            elements *= d
        end = max(end, data_offset + offset + elements // block * block_bytes)
    return end


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _Reader:
    """Little-endian reads that turn an early end of file into a clear GGUFError."""

    def __init__(self, f: BinaryIO, path: Path):
        self.f, self.path = f, path

    def raw(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise GGUFError(f"{self.path} is truncated inside its header; copy or download it again")
        return data

    def scalar(self, fmt: str):
        return struct.unpack(fmt, self.raw(struct.calcsize(fmt)))[0]

    def count(self) -> int:
        n = self.scalar("<Q")
        if n > _MAX_COUNT:
            raise GGUFError(f"{self.path}: corrupt header (count {n})")
        return n

    def string(self) -> str:
        n = self.scalar("<Q")
        if n > _MAX_STRING:
            raise GGUFError(f"{self.path}: corrupt header (string of {n} bytes)")
        return self.raw(n).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.scalar("<Q")
        if n > _MAX_STRING:
            raise GGUFError(f"{self.path}: corrupt header (string of {n} bytes)")
        self.raw(n) if n < 4096 else self.f.seek(n, 1)

    def value(self, value_type: int, keep: bool):
        if value_type in _SCALARS:
            return self.scalar(_SCALARS[value_type])
        if value_type == _STRING:
            return self.string() if keep else self.skip_string()
        if value_type == _ARRAY:
            item_type = self.scalar("<I")
            n = self.count()
            if item_type in _SCALARS:  # fixed size: skip in one step
                size = struct.calcsize(_SCALARS[item_type]) * n
                self.f.seek(size, 1)
                return None
            for _ in range(n):
                self.value(item_type, keep=False)
            return None
        raise GGUFError(f"{self.path}: corrupt header (metadata type {value_type})")

    def tensor_info(self) -> tuple[str, list[int], int, int]:
        name = self.string()
        n_dims = self.scalar("<I")
        if n_dims > 8:
            raise GGUFError(f"{self.path}: corrupt header (tensor {name!r} has {n_dims} dimensions)")
        dims = [self.scalar("<Q") for _ in range(n_dims)]
        return name, dims, self.scalar("<I"), self.scalar("<Q")
