"""The Error Extractor: a compiler log as a structured dictionary of local, cross-file and other errors.

    report = extract(verdict.compiler_output, candidate_source, index=view, region=scaffold_region)
    report.to_dict()   # {"local_error": [...], "crossfile_error": [...], "other_error": [...]}

Each error has file, line, message and context (the candidate's lines around it). An error is
cross-file when it is a mismatch with MNN's own APIs or definitions: it sits in an MNN file, its
notes point into MNN's source, it names an MNN class, or it uses a name or header MNN does not
have. With a tree index, a cross-file error carries `mnn_source`: the whole enclosing function or
class from the pinned tree (never the hidden native kernel), or the names MNN does have.
Link errors and the judge's own findings (registration, delegation) are `other`.

In scaffolded mode `region` is the (first, last) candidate line of the model's spliced code: lines
there are reported as lines of "your code", and errors elsewhere as the "scaffold".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .tree import TreeIndex

_DIAGNOSTIC = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)? (?P<severity>fatal error|error|warning|note): (?P<message>.*)$")
_IN_FUNCTION = re.compile(r"^(?P<file>[^\s:][^:]*): In (?:member )?(?:function|constructor|destructor|instantiation of) (?P<what>.*):$")
_LINKER = re.compile(r"(undefined reference to|multiple definition of|ld returned|collect2)")
_QUOTED = r"[‘'`\"](?P<{}>[^’'`\"]+)[’'`\"]"
_NO_MEMBER = re.compile(r"[‘'](?:const )?(?:class|struct|union) (?P<cls>[\w:]+)[’'] has no member named " + _QUOTED.format("name"))
_NOT_MEMBER_OF = re.compile(_QUOTED.format("name") + r" is not a member of " + _QUOTED.format("scope"))
_NOT_DECLARED = re.compile(_QUOTED.format("name") + r" (?:was not declared in this scope|does not name a type|has not been declared)")
_NO_FILE = re.compile(r"(?P<name>\S+): No such file or directory")
_DID_YOU_MEAN = re.compile(r"did you mean " + _QUOTED.format("name"))
_MNN_CLASS = re.compile(r"[‘'](?:MNN::)(?P<cls>[A-Z]\w*)(?:::\w+)*")

CANDIDATE_FILES = ("candidate.cpp",)
# Standard functions a kernel uses, by header: an undeclared one is a missing include, not an MNN mismatch.
STANDARD_HEADERS = {**dict.fromkeys(("fabs", "fabsf", "sqrt", "sqrtf", "exp", "expf", "log", "logf", "sin", "cos", "tan",
                                     "tanh", "pow", "powf", "floor", "ceil", "round", "erf", "fmax", "fmin", "nearbyint"), "<cmath>"),
                    **dict.fromkeys(("min", "max", "fill", "copy"), "<algorithm>"),
                    **dict.fromkeys(("memcpy", "memset", "memmove"), "<cstring>"), "vector": "<vector>"}


@dataclass(frozen=True)
class Diagnostic:
    """One compiler error with the notes that follow it."""

    file: str
    line: int
    column: int
    message: str
    severity: str  # error | fatal error
    notes: tuple[tuple[str, int, str], ...] = ()  # (file, line, message)
    function: str = ""  # "In member function ..." context


@dataclass(frozen=True)
class ErrorReport:
    """The Error Extractor's dictionary, and the errors in the order the compiler gave them."""

    local_error: tuple[dict, ...] = ()
    crossfile_error: tuple[dict, ...] = ()
    other_error: tuple[dict, ...] = ()
    ordered: tuple[dict, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict:
        return {"local_error": list(self.local_error), "crossfile_error": list(self.crossfile_error),
                "other_error": list(self.other_error)}

    def first(self) -> dict | None:
        """The first error the compiler reported (the one a repair round sends)."""
        return self.ordered[0] if self.ordered else None

    def count(self) -> int:
        return len(self.ordered)

    def render(self, limit: int = 4, first_only: bool = False) -> str:
        """The dictionary as JSON for a prompt, with at most `limit` errors in all."""
        if first_only:
            first = self.first()
            return json.dumps(first, indent=1, ensure_ascii=False) if first else "(no error found in the log)"
        budget, out = limit, {}
        for key, errors in (("local_error", self.local_error), ("crossfile_error", self.crossfile_error),
                            ("other_error", self.other_error)):
            out[key] = list(errors[:max(0, budget)])
            budget -= len(out[key])
        return json.dumps(out, indent=1, ensure_ascii=False)


def parse(log: str) -> tuple[list[Diagnostic], list[str]]:
    """Errors (with their notes) and the other failure lines (linker, judge findings) of a log."""
    errors: list[Diagnostic] = []
    others: list[str] = []
    function = ""
    for raw in log.splitlines():
        line = re.sub(r"\x1b\[[0-9;]*[mK]", "", raw).rstrip()
        in_function = _IN_FUNCTION.match(line)
        if in_function:
            function = in_function.group("what")
            continue
        match = _DIAGNOSTIC.match(line)
        if match:
            severity = match.group("severity")
            file, number, message = match.group("file").strip(), int(match.group("line")), match.group("message").strip()
            if severity in ("error", "fatal error"):
                errors.append(Diagnostic(file, number, int(match.group("col") or 0), message, severity, (), function))
            elif severity == "note" and errors:
                last = errors[-1]
                errors[-1] = Diagnostic(last.file, last.line, last.column, last.message, last.severity,
                                        last.notes + ((file, number, message),), last.function)
            continue
        if _LINKER.search(line) or line.startswith("mkbench: "):
            others.append(line.strip())
    return errors, others


def _context(source: str, line: int, radius: int = 2, first: int = 1, last: int | None = None) -> str:
    """Lines around `line` of the candidate (numbered as reported), the error line marked."""
    lines = source.splitlines()
    last = last or len(lines)
    start, end = max(first, line - radius), min(last, line + radius)
    return "\n".join(f"{'>' if n == line else ' '}{n - first + 1:4d} | {lines[n - 1]}" for n in range(start, end + 1)
                     if 0 < n <= len(lines))


def _is_candidate(file: str) -> bool:
    return file.rsplit("/", 1)[-1] in CANDIDATE_FILES


def _quoted_names(message: str) -> list[str]:
    return re.findall(r"[‘'`]([^’'`]+)[’'`]", message)


def _resolve(diagnostic: Diagnostic, index: TreeIndex | None) -> tuple[bool, dict | None]:
    """(is cross-file, the MNN source that explains it) for one error."""
    message = diagnostic.message
    mnn_notes = [n for n in diagnostic.notes if not _is_candidate(n[0]) and index is not None and index.relative(n[0])]
    if not _is_candidate(diagnostic.file):
        source = index.context_for(diagnostic.file, diagnostic.line) if index else None
        return True, source
    if (match := _NO_FILE.search(message)) is not None:
        if index is None:
            return True, None
        found = index.find_file(match.group("name"))
        hint = (f"MNN has {', '.join(found)}; include it relative to source/ or include/" if found
                else "MNN 3.6.1 has no header of that name")
        return True, {"file": match.group("name"), "line": 0, "symbol": None, "code": hint}
    if (match := _NO_MEMBER.search(message)) is not None:
        if index is None:
            return True, None
        cls = match.group("cls").removeprefix("MNN::")
        close = index.members_like(cls, match.group("name"))
        if not close:
            return True, {"file": None, "line": 0, "symbol": cls, "code": index.describe(cls)}
        code = "\n".join(f"{s.signature};  // {s.location()}" for s in close)
        return True, {"file": close[0].file, "line": close[0].line, "symbol": cls,
                      "code": f"// members of {cls} with similar names:\n{code}"}
    if mnn_notes:
        if index is None:
            return True, None
        file, line, _ = mnn_notes[0]
        return True, index.context_for(file, line)
    if (match := _NOT_MEMBER_OF.search(message) or _NOT_DECLARED.search(message)) is not None:
        name = match.group("name")
        scope = match.groupdict().get("scope") or ""
        if index is None:
            return scope.startswith("MNN"), None
        known = index.lookup(name)
        if known:
            return True, {"file": known[0].file, "line": known[0].line, "symbol": known[0].name,
                          "code": index.describe(name, max_lines=20)}
        if name.removeprefix("std::") in STANDARD_HEADERS:  # a standard function without its header
            return False, None
        # A misspelt MNN name (UnaryOpOperation_Abs): what the compiler suggests, or names MNN has that look alike.
        suggested = _DID_YOU_MEAN.search(message)
        close = [suggested.group("name")] if suggested and index.lookup(suggested.group("name")) else []
        close = close or [n for n in index.similar(name, limit=3, cutoff=0.8) if n != name and n[:3] == name[:3]]
        if close:
            code = "\n".join(f"{s.signature};  // {s.location()}" for n in close for s in index.lookup(n, limit=1))
            return True, {"file": None, "line": 0, "symbol": name, "code": f"// MNN has no {name}; it has:\n{code}"}
        hidden = index.describe(name)
        if scope.startswith("MNN") or "hidden" in hidden:
            return True, {"file": None, "line": 0, "symbol": name, "code": hidden}
        return False, None
    if _MNN_CLASS.search(message) and index is not None and "MNN::Op" not in message:
        for quoted in _quoted_names(message):
            head = quoted.split("(")[0]
            if head.startswith("MNN::"):
                parts = head.split("::")
                if len(parts) >= 2 and index.lookup(parts[1]):
                    return True, {"file": None, "line": 0, "symbol": parts[1], "code": index.describe(parts[1])}
    return False, None


def extract(log: str, source: str, index: TreeIndex | None = None, region: tuple[int, int] | None = None,
            limit: int = 8) -> ErrorReport:
    """The structured error dictionary of one compile (see the module docstring)."""
    diagnostics, others = parse(log)
    local, cross, other, ordered = [], [], [], []
    seen = set()
    for diagnostic in diagnostics:
        key = (diagnostic.file, diagnostic.line, diagnostic.message)
        if key in seen:
            continue
        seen.add(key)
        entry = _entry(diagnostic, source, region)
        undeclared = _NOT_DECLARED.search(diagnostic.message)
        if undeclared and undeclared.group("name").removeprefix("std::") in STANDARD_HEADERS:
            entry["hint"] = f"declared in {STANDARD_HEADERS[undeclared.group('name').removeprefix('std::')]}"
        is_cross, mnn_source = _resolve(diagnostic, index)
        if is_cross:
            if mnn_source is not None:
                entry["mnn_source"] = mnn_source
            cross.append(entry)
        else:
            local.append(entry)
        ordered.append(entry)
        if len(ordered) >= limit:
            break
    for line in others[:limit]:
        entry = {"file": None, "line": 0, "message": line, "context": ""}
        other.append(entry)
        ordered.append(entry)
    if not ordered and log.strip():
        tail = [l for l in log.strip().splitlines() if l.strip()][-3:]
        entry = {"file": None, "line": 0, "message": " / ".join(tail)[:400], "context": ""}
        other.append(entry)
        ordered.append(entry)
    return ErrorReport(tuple(local), tuple(cross), tuple(other), tuple(ordered))


def _entry(diagnostic: Diagnostic, source: str, region: tuple[int, int] | None) -> dict:
    """file, line, message and context of one error, in the model's own line numbers."""
    if not _is_candidate(diagnostic.file):
        return {"file": diagnostic.file, "line": diagnostic.line, "message": diagnostic.message, "context": ""}
    line = diagnostic.line
    if region is None:
        return {"file": "candidate.cpp", "line": line, "message": diagnostic.message,
                "context": _context(source, line), **({"in": diagnostic.function} if diagnostic.function else {})}
    first, last = region
    if first <= line <= last:
        return {"file": "your code", "line": line - first + 1, "message": diagnostic.message,
                "context": _context(source, line, first=first, last=last)}
    # An error in the scaffold is caused by the functions (a wrong name or signature): show the call.
    lines = source.splitlines()
    call = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    notes = [f"your code line {n[1] - first + 1}: {n[2]}" for n in diagnostic.notes
             if _is_candidate(n[0]) and first <= n[1] <= last]
    entry = {"file": "scaffold", "line": 0, "message": diagnostic.message, "context": f"the scaffold calls: {call}"}
    if notes:
        entry["notes"] = notes[:3]
    return entry
