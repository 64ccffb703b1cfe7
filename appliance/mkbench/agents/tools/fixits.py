"""The compiler's own fix-its, applied to the candidate: MoKA's cheapest repair, with no LLM call.

The judge compiles candidates with `-fdiagnostics-parseable-fixits` (GCC and Clang), so a log
carries, after an error such as "‘const struct MNN::Op’ has no member named ‘main_as_Pooling’;
did you mean ‘main_as_Pool’?", a line

    fix-it:"candidate.cpp":{35:17-35:32}:"main_as_Pool"

(1-based lines, byte columns, the end exclusive, the text C-escaped). A small model asked to fix
such an error often hands back the same line; the compiler already said what it meant. The fix
is only a suggestion: the fixed candidate goes to the judge like any other, which is the arbiter.

    edits = parse(verdict.compiler_output)
    fixed, applied = apply(code, edits, lines=(first, last))   # lines: where the code sits in the file
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FIXIT = re.compile(r'^fix-it:"(?P<file>(?:[^"\\]|\\.)*)":\{(?P<l1>\d+):(?P<c1>\d+)-(?P<l2>\d+):(?P<c2>\d+)\}:"(?P<text>(?:[^"\\]|\\.)*)"\s*$')
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
CANDIDATE_FILE = "candidate.cpp"


@dataclass(frozen=True)
class Edit:
    """Replace bytes [start, end) of the file, as (line, column) pairs, with `text`."""

    start: tuple[int, int]
    end: tuple[int, int]
    text: str

    def describe(self, first: int = 1) -> str:
        """One line for the record, the line counted from `first` (the model's own numbering)."""
        line = self.start[0] - first + 1
        return f"line {line}: {self.text!r}" if self.text else f"line {line}: delete"


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            escaped = text[i + 1]
            if escaped in _ESCAPES:
                out.append(_ESCAPES[escaped])
                i += 2
                continue
            if escaped in "01234567":  # GCC writes other bytes in octal: \303\251
                digits = re.match(r"[0-7]{1,3}", text[i + 1:]).group()
                out.append(chr(int(digits, 8)))
                i += 1 + len(digits)
                continue
        out.append(text[i])
        i += 1
    raw = "".join(out)
    try:  # octal escapes are the UTF-8 bytes of the text
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


def parse(log: str | None, file: str = CANDIDATE_FILE) -> list[Edit]:
    """The fix-its a compile log suggests for `file`, in the order given, repeats dropped."""
    edits: list[Edit] = []
    for line in (log or "").splitlines():
        match = _FIXIT.match(line.strip())
        if not match or match.group("file").rsplit("/", 1)[-1] != file:
            continue
        edit = Edit((int(match["l1"]), int(match["c1"])), (int(match["l2"]), int(match["c2"])), _unescape(match["text"]))
        if edit not in edits:
            edits.append(edit)
    return edits


def apply(code: str, edits: list[Edit], lines: tuple[int, int] | None = None) -> tuple[str, list[Edit]]:
    """`code` with the edits that fall in it applied, and those edits.

    `lines` is (first, last): the file lines `code` occupies (a scaffold's hole); edits touching
    other lines are the scaffold's business and skipped. Overlapping edits keep the first given.
    """
    first, last = lines or (1, code.count("\n") + 1)
    rows = code.encode().split(b"\n")

    def offset(position: tuple[int, int]) -> int | None:
        row, column = position[0] - first, position[1] - 1
        if not 0 <= row < len(rows) or position[0] > last or not 0 <= column <= len(rows[row]):
            return None
        return sum(len(r) + 1 for r in rows[:row]) + column

    spans: list[tuple[int, int, Edit]] = []
    for edit in edits:
        start, end = offset(edit.start), offset(edit.end)
        if start is None or end is None or end < start:
            continue
        if any(start < e and s < end or start == s for s, e, _ in spans):
            continue
        spans.append((start, end, edit))
    data = code.encode()
    for start, end, edit in sorted(spans, key=lambda span: span[0], reverse=True):
        data = data[:start] + edit.text.encode() + data[end:]
    return data.decode(errors="replace"), [edit for _, _, edit in sorted(spans, key=lambda span: span[0])]


def fix(candidate, log: str | None, mode):
    """(the fixed candidate, a line per edit): the fix-its of a failed build applied to the model's
    code (`candidate.region` says where it sits in a scaffold) and handed to `mode` as an answer, so
    scaffolded code is linted and spliced again; (None, []) when no fix-it falls in the model's code."""
    if not candidate.code or not candidate.source:
        return None, []
    code = candidate.code
    if candidate.region:  # the model's lines exactly as the compiler numbered them
        code = "\n".join(candidate.source.splitlines()[candidate.region[0] - 1:candidate.region[1]])
    fixed, applied = apply(code, parse(log), candidate.region)
    if not applied:
        return None, []
    first = candidate.region[0] if candidate.region else 1
    return mode.candidate(f"```cpp\n{fixed}\n```"), [edit.describe(first) for edit in applied]
