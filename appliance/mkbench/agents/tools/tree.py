"""The Repository Tree Builder: a tree-sitter index of the pinned MNN tree that the roles query.

    index = TreeIndex.load()                      # built once per tree, cached under cache_dir
    view = index.for_targets(task.mnn.targets)    # hides MNN's own kernel for the task's ops
    view.describe("CPUBackend::getTensorSize")    # signature, file:line, or a class's members
    view.enclosing("source/core/Execution.hpp", 40)

Symbols: classes, structs, unions, enums and their values, functions and methods (declared or
defined), macros and typedefs, each with its file, lines and a one-line signature. Documents:
MNN's AGENTS.md, skills/ and docs/ in sections by heading. A view made for a task's targets
refuses to show the native implementation of the task's own operator (its files, and the
functions that compute it), whatever the query.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ... import settings as settings_module

INDEX_VERSION = 5

# What the roles may read: MNN's headers and CPU backend, the schema, and the documents.
SOURCE_PARTS = ("include", "source/core", "source/backend/cpu", "source/math", "source/utils", "source/geometry",
                "source/shape", "schema/current", "express", "tools/converter/source/optimizer/onnxextra")
DOC_PARTS = ("AGENTS.md", "skills", "docs")
CPP_SUFFIXES = {".h", ".hpp", ".cpp", ".cc", ".c", ".inc"}
SKIPPED_DIRS = {"arm82", "kleidiai", "render", "riscv", "bf16"}  # other ISAs and optional backends

# Export macros that tree-sitter mistakes for class names; blanked (same length) before parsing.
_BLANKED = re.compile(rb"\b(FLATBUFFERS_FINAL_CLASS|MNN_PUBLIC|MNN_EXPRESS_PUBLIC|MNN_API)\b")

# The native implementation of each op type: files (under source/, fnmatch) and function names
# (regex) a task on that op type must never be shown. Every op type also hides
# backend/cpu/CPU<Op>.* and geometry/Geometry<Op>.*.
NATIVE_FILES: dict[str, tuple[str, ...]] = {
    "UnaryOp": ("backend/cpu/CPUUnary.*", "backend/cpu/UnaryUtils.hpp"),
    "BinaryOp": ("backend/cpu/CPUBinary*", "backend/cpu/BinaryUtils.hpp", "geometry/GeometryBinary.*"),
    "Reduction": ("backend/cpu/CPUReduction.*", "geometry/GeometryReduce.*"),
    "Softmax": ("backend/cpu/CPUSoftmax.*",),
    "ReLU": ("backend/cpu/CPURelu.*",),
    "ReLU6": ("backend/cpu/CPURelu.*",),
    "PReLU": ("backend/cpu/CPURelu.*",),
    "ELU": ("backend/cpu/CPURelu.*", "geometry/GeometryELU.*"),
    "Convolution": ("backend/cpu/CPUConvolution.*", "backend/cpu/compute/Convolution*", "backend/cpu/compute/ConvOpt.*",
                    "backend/cpu/compute/DenseConvolution*", "backend/cpu/compute/StrassenMatmulComputor.*",
                    "backend/cpu/compute/WinogradOptFunction.*", "geometry/GeometryConv2D.*"),
    "ConvolutionDepthwise": ("backend/cpu/CPUConvolutionDepthwise.*", "backend/cpu/compute/ConvolutionDepthwise*"),
    "Deconvolution": ("backend/cpu/CPUDeconvolution.*", "geometry/GeometryConv2DBackPropFilter.*"),
    "DeconvolutionDepthwise": ("backend/cpu/CPUDeconvolutionDepthwise.*",),
    "MatMul": ("backend/cpu/CPUMatMul.*", "backend/cpu/compute/StrassenMatmulComputor.*"),
    "Pooling": ("backend/cpu/CPUPool.*",),
    "Pooling3D": ("geometry/GeometryPooling3D.*",),
    "ArgMax": ("backend/cpu/CPUArgMax.*",),
    "ArgMin": ("backend/cpu/CPUArgMax.*",),
    "TopKV2": ("backend/cpu/CPUTopKV2.*",),
    "LayerNorm": ("backend/cpu/CPULayerNorm.*",),
    "Scale": ("backend/cpu/CPUScale.*",),
    "Select": ("backend/cpu/CPUSelect.*",),
    "GridSample": ("backend/cpu/CPUGridSample.*", "backend/cpu/GridSampler.hpp"),
    "ROIAlign": ("backend/cpu/CPUROIAlign.*",),
    "Det": ("backend/cpu/CPUDet.*",),
    "Eltwise": ("backend/cpu/CPUEltwise.*",),
    "RNN": ("backend/cpu/CPURNNSequenceGRU.*",),
    "Stft": ("backend/cpu/CPUStft.*",),
    "GatherV2": ("geometry/GeometryGather.*",),
    "StridedSlice": ("geometry/GeometryStridedSlice.*", "geometry/GeometrySlice.*"),
    "Permute": ("geometry/GeometryPermute.*",),
}
NATIVE_SYMBOLS: dict[str, tuple[str, ...]] = {
    "UnaryOp": (r"MNNSelectUnaryFunctionFor\w+", r"\w*MNN(Exp|Tanh|Sin|Cos|Sigmoid|SiLu|Gelu|HardSwish|Erf|Log|Sqrt|Abs|Neg|Square|Round|Sign|Reciprocal)\w*",
                r"MNNUnary\w*"),
    "BinaryOp": (r"MNNSelectBinaryFunctionFor\w+", r"\w*MNNBinary\w*", r"\w*MNN(Add|Sub|Mul|Div|Pow|Max|Min)Float\w*"),
    "Reduction": (r"MNNAccumulateSequenceNumber\w*", r"\w*MNNReduce\w*"),
    "Softmax": (r"\w*MNNSoftmax\w*", r"\w*Softmax\w*"),
    "ReLU": (r"\w*MNNRelu\w*",), "ReLU6": (r"\w*MNNRelu6\w*", r"\w*MNNRelu\w*"), "PReLU": (r"\w*MNNRelu\w*",),
    "MatMul": (r"\w*MNNPackedMatMul\w*", r"\w*MNNMatrixProd\w*"),
    "Pooling": (r"\w*[Pp]oolingMax\w*", r"\w*[Pp]oolingAvg\w*"),
    "LayerNorm": (r"\w*MNNNorm\w*",),
    "Scale": (r"\w*MNNScaleAndAddBias\w*",),
    "Convolution": (r"\w*MNNConv\w*", r"\w*MNNGemm\w*", r"\w*MNNPackedMatMul\w*"),
    "ConvolutionDepthwise": (r"\w*MNNConvRunForLineDepthwise\w*", r"\w*MNNDepthwise\w*"),
    "DeconvolutionDepthwise": (r"\w*MNNDeconvRunForLineDepthwise\w*",),
    "TopKV2": (r"\w*TopK\w*",),
    "GridSample": (r"\w*MNNGridSample\w*",),
    "ROIAlign": (r"\w*ROIAlign\w*",),
}


def _transform_files(root: Path, onnx_op: str) -> list[Path]:
    """The converter's onnxextra files that register a transform for this ONNX op (any file name)."""
    from ...mnn.converter_build import native_transform_files

    try:
        return native_transform_files(Path(root), onnx_op)
    except OSError:
        return []


# Members of flatbuffers tables that say nothing about an op's parameters.
_FLATBUFFERS_PLUMBING = re.compile(r"\b(MiniReflectTypeTable|Verify|UnPack|UnPackTo|Pack|NativeTableType)\b")

HIDDEN_NOTE = "hidden: MNN's own implementation of this task's operator is not shown"


class TreeIndexError(RuntimeError):
    """The index could not be built (no MNN tree, or tree-sitter missing); the message says what to do."""


@dataclass(frozen=True)
class Symbol:
    kind: str  # class | struct | union | enum | enumerator | function | field | macro | typedef
    name: str  # qualified: MNN::CPUBackend::getTensorSize
    file: str  # posix path relative to the tree root
    line: int  # 1-based, first line
    end_line: int
    signature: str  # one line: the declaration's head
    defined: bool  # has a body (definition) rather than a declaration only
    start_byte: int = 0

    @property
    def short(self) -> str:
        return self.name.rsplit("::", 1)[-1]

    def location(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class DocSection:
    file: str
    title: str
    line: int
    end_line: int


# ---------------------------------------------------------------- parsing


def _parser():
    try:
        import tree_sitter
        import tree_sitter_cpp
    except ImportError as error:
        raise TreeIndexError(f"tree-sitter is not installed ({error}): pip install 'mkbench[agents]'") from None
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_cpp.language()))


def _prepared(source: bytes) -> bytes:
    return _BLANKED.sub(lambda m: b" " * len(m.group(0)), source)


def _text(node, source: bytes) -> str:
    return source[node.start_byte:node.end_byte].decode("utf-8", "replace")


def _one_line(text: str, limit: int = 240) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _function_declarator(node):
    """The function_declarator under a declarator chain (pointer/reference wrappers), or None."""
    while node is not None:
        if node.type == "function_declarator":
            return node
        node = _inner(node)
    return None


def _inner(declarator):
    """The declarator inside a pointer, array or reference declarator (a reference's has no field name)."""
    inner = declarator.child_by_field_name("declarator")
    if inner is None and declarator.type == "reference_declarator" and declarator.named_children:
        inner = declarator.named_children[-1]
    return inner


def _declarator_name(declarator, source: bytes) -> str | None:
    name = declarator.child_by_field_name("declarator")
    if name is None:
        return None
    return re.sub(r"[\s()*&]", "", _text(name, source)) or None  # (*fn) members: the pointer's name


def _bases(head: str) -> list[str]:
    """The short names of the bases in a class head ("class A : public B, private ns::C<int>")."""
    _, colon, bases = re.sub(r"<[^<>]*>", "", head).partition(":")
    if not colon or bases.startswith(":"):
        return []
    return [part.split()[-1].rpartition("::")[2] for part in bases.split(",") if part.split()]


def _field_name(declarator, source: bytes) -> str | None:
    """A data member's name under its declarator (pointer, reference, array, bit-field), or None."""
    while declarator is not None and declarator.type not in ("field_identifier", "identifier"):
        declarator = _inner(declarator)
    return _text(declarator, source) if declarator is not None else None


def _symbols_of(tree, source: bytes, path: str) -> list[Symbol]:
    out: list[Symbol] = []

    def add(kind, name, node, signature, defined):
        out.append(Symbol(kind, name, path, node.start_point.row + 1, node.end_point.row + 1, _one_line(signature), defined,
                          node.start_byte))

    def qualified(scope: list[str], name: str) -> str:
        return "::".join(scope + [name])

    def walk(node, scope: list[str], in_class: bool):
        for child in node.named_children:
            kind = child.type
            if kind == "namespace_definition":
                name = child.child_by_field_name("name")
                body = child.child_by_field_name("body")
                if body is not None:
                    walk(body, scope + ([_text(name, source)] if name is not None else []), False)
            elif kind in ("class_specifier", "struct_specifier", "union_specifier", "enum_specifier"):
                visit_type(child, scope)
            elif kind == "function_definition":
                declarator = _function_declarator(child.child_by_field_name("declarator"))
                name = _declarator_name(declarator, source) if declarator is not None else None
                body = child.child_by_field_name("body")
                if name:
                    head = source[child.start_byte:body.start_byte if body is not None else child.end_byte].decode("utf-8", "replace")
                    add("function", qualified(scope, name), child, head, True)
                type_node = child.child_by_field_name("type")
                if type_node is not None and type_node.type in ("class_specifier", "struct_specifier", "enum_specifier"):
                    visit_type(type_node, scope)
            elif kind in ("declaration", "field_declaration"):
                type_node = child.child_by_field_name("type")
                if type_node is not None and type_node.type in ("class_specifier", "struct_specifier", "union_specifier", "enum_specifier"):
                    visit_type(type_node, scope)
                for declarator in child.children_by_field_name("declarator"):
                    function = _function_declarator(declarator)
                    name = _declarator_name(function, source) if function is not None else None
                    if name:
                        add("function", qualified(scope, name), child, _text(child, source).rstrip(";"), False)
                    elif in_class and kind == "field_declaration" and (field := _field_name(declarator, source)):
                        add("field", qualified(scope, field), child, _text(child, source).rstrip(";"), False)
            elif kind in ("template_declaration", "linkage_specification", "declaration_list", "preproc_ifdef", "preproc_if",
                          "preproc_else", "preproc_elif", "field_declaration_list", "access_specifier"):
                walk(child, scope, in_class)
            elif kind in ("preproc_def", "preproc_function_def"):
                name = child.child_by_field_name("name")
                if name is not None:
                    add("macro", _text(name, source), child, _text(child, source).split("\n")[0], True)
            elif kind in ("type_definition", "alias_declaration"):
                declarator = child.child_by_field_name("declarator") or child.child_by_field_name("name")
                if declarator is not None:
                    add("typedef", qualified(scope, re.sub(r"\W+", "", _text(declarator, source).split("(")[0]) or "?"), child,
                        _text(child, source), True)

    def visit_type(node, scope: list[str]):
        name = node.child_by_field_name("name")
        body = node.child_by_field_name("body")
        if name is None or body is None:
            return  # forward declarations and anonymous types say nothing useful
        short = re.sub(r"\s+", "", _text(name, source))
        kind = node.type.removesuffix("_specifier")
        head = source[node.start_byte:body.start_byte].decode("utf-8", "replace")
        add(kind, qualified(scope, short), node, head, True)
        if kind == "enum":
            for value in body.named_children:
                if value.type == "enumerator":
                    value_name = value.child_by_field_name("name")
                    if value_name is not None:
                        add("enumerator", qualified(scope, _text(value_name, source)), value, _text(value, source), True)
        else:
            walk(body, scope + [short], True)

    walk(tree.root_node, [], False)
    return out


def _doc_sections(path: Path, relative: str) -> list[DocSection]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    heads = [(i, line.lstrip("#").strip()) for i, line in enumerate(lines) if re.match(r"#{1,4} \S", line)]
    if not heads or heads[0][0] != 0:
        heads.insert(0, (0, Path(relative).stem))
    sections = []
    for k, (start, title) in enumerate(heads):
        end = heads[k + 1][0] if k + 1 < len(heads) else len(lines)
        sections.append(DocSection(relative, title, start + 1, max(start + 1, end)))
    return sections


# ---------------------------------------------------------------- the index


def _source_files(root: Path) -> list[Path]:
    files = []
    for part in SOURCE_PARTS:
        base = root / part
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            relative = path.relative_to(root)
            if path.suffix in CPP_SUFFIXES and path.is_file() and not SKIPPED_DIRS & set(relative.parts):
                files.append(path)
    return sorted(files)


def _doc_files(root: Path) -> list[Path]:
    files = []
    for part in DOC_PARTS:
        base = root / part
        if base.is_file():
            files.append(base)
        elif base.is_dir():
            files += [p for p in base.rglob("*.md") if p.is_file()]
    return sorted(files)


def _cache_key(root: Path, files: Iterable[Path]) -> str:
    digest = hashlib.sha256(f"{INDEX_VERSION}\n{root.resolve()}\n".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()} {stat.st_size} {int(stat.st_mtime)}\n".encode())
    return digest.hexdigest()[:16]


class TreeIndex:
    """Symbols and documents of one MNN tree; a view may hide the native code of some op types."""

    def __init__(self, root: Path, symbols: Sequence[Symbol], docs: Sequence[DocSection],
                 hidden_files: Sequence[str] = (), hidden_symbols: Sequence[str] = ()):
        self.root = Path(root)
        self.symbols = tuple(symbols)
        self.docs = tuple(docs)
        self.hidden_files = tuple(hidden_files)
        self.hidden_symbols = tuple(hidden_symbols)
        self._hidden_re = re.compile("|".join(f"(?:{p})" for p in hidden_symbols)) if hidden_symbols else None
        self._by_short: dict[str, list[Symbol]] = {}
        for symbol in self.symbols:
            self._by_short.setdefault(symbol.short, []).append(symbol)
        self._parsed: dict[str, tuple] = {}

    # ------------------------------------------------------------ building

    @classmethod
    def build(cls, root: Path) -> TreeIndex:
        """Parse the tree (a few seconds on 2 cores)."""
        parser = _parser()
        symbols: list[Symbol] = []
        for path in _source_files(root):
            source = _prepared(path.read_bytes())
            symbols += _symbols_of(parser.parse(source), source, path.relative_to(root).as_posix())
        docs: list[DocSection] = []
        for path in _doc_files(root):
            docs += _doc_sections(path, path.relative_to(root).as_posix())
        return cls(root, symbols, docs)

    @classmethod
    def load(cls, settings: settings_module.Settings, root: Path | None = None) -> TreeIndex:
        """The index of the pinned tree, from the cache (built and stored on first use)."""
        from ...mnn import tree as tree_module

        s = settings
        try:
            root = Path(root) if root is not None else tree_module.locate(s)
        except tree_module.TreeError as error:
            raise TreeIndexError(str(error)) from None
        key = _cache_key(root, _source_files(root) + _doc_files(root))
        cached = s.cache_dir / "tree-index" / f"{key}.json"
        memo = _loaded.get(str(cached))
        if memo is not None:
            return memo
        if cached.is_file():
            data = json.loads(cached.read_text())
            index = cls(root, [Symbol(**s_) for s_ in data["symbols"]], [DocSection(**d) for d in data["docs"]])
        else:
            index = cls.build(root)
            cached.parent.mkdir(parents=True, exist_ok=True)
            staging = cached.with_suffix(".partial")
            staging.write_text(json.dumps({"root": str(root), "symbols": [asdict(x) for x in index.symbols],
                                           "docs": [asdict(d) for d in index.docs]}))
            staging.replace(cached)
        _loaded[str(cached)] = index
        return index

    def for_targets(self, targets: Iterable[Sequence]) -> TreeIndex:
        """A view that refuses to show the native implementation of these (op type, sub-type) targets."""
        files, symbols = list(self.hidden_files), list(self.hidden_symbols)
        for op_type in sorted({t[0] for t in targets}):
            files += [f"source/{p}" for p in NATIVE_FILES.get(op_type, ())]
            files += [f"source/backend/cpu/CPU{op_type}.*", f"source/geometry/Geometry{op_type}.*"]
            # A composite task's target is its ONNX operator: hide the converter's own rewrite of it.
            files += [f"tools/converter/source/optimizer/onnxextra/Onnx{op_type}.*", f"tools/converter/source/onnx/{op_type}Onnx.*"]
            files += [str(p.relative_to(self.root)) for p in _transform_files(self.root, op_type)]
            symbols += NATIVE_SYMBOLS.get(op_type, ())
        view = TreeIndex(self.root, self.symbols, self.docs, sorted(set(files)), sorted(set(symbols)))
        view._parsed = self._parsed
        return view

    def api_names(self) -> dict[str, frozenset[str]]:
        """The names that exist after the prefixes a whole-file kernel writes them with (for
        llm/identifiers.py): OpType_ and DataType_ values, Op::main_as_ accessors, and what the MNN
        namespace holds directly (classes, functions, enumerators, nested namespaces)."""
        op_types, data_types, accessors, in_mnn = set(), set(), set(), set()
        for symbol in self.symbols:
            if self.is_hidden(symbol):
                continue
            parts = symbol.name.split("::")
            if parts[0] != "MNN" or len(parts) < 2:
                continue
            short = parts[-1]
            if symbol.kind == "enumerator" and short.startswith("OpType_"):
                op_types.add(short.removeprefix("OpType_"))
            elif symbol.kind == "enumerator" and short.startswith("DataType_"):
                data_types.add(short.removeprefix("DataType_"))
            elif parts[-2:-1] == ["Op"] and short.startswith("main_as_"):
                accessors.add(short.removeprefix("main_as_"))
            in_mnn.add(parts[1])
        return {"OpType_": frozenset(op_types), "DataType_": frozenset(data_types), "main_as_": frozenset(accessors),
                "MNN::": frozenset(in_mnn)}

    def api_members(self) -> dict[str, frozenset[str]]:
        """Each MNN class or struct (by its short name, where that names one type) -> the members a
        `.` or `->` may name on it: its methods, data members and nested types, and its bases'
        (for llm/identifiers.py's member access)."""
        types: dict[str, list[Symbol]] = {}
        members: dict[str, set[str]] = {}
        for symbol in self.symbols:
            if symbol.name.startswith("MNN::") and not self.is_hidden(symbol):
                if symbol.kind in ("class", "struct", "union"):
                    types.setdefault(symbol.short, []).append(symbol)
                owner, _, short = symbol.name.rpartition("::")
                constructor = short == owner.rpartition("::")[2] or short.startswith("~")
                if symbol.kind in ("function", "field", "typedef", "enum", "class", "struct", "union") and not constructor:
                    members.setdefault(owner, set()).add(short)
        unique = {short: found[0] for short, found in types.items() if len({s.name for s in found}) == 1}

        def of(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
            names = set(members.get(name, ()))
            head = next((s.signature for s in types.get(name.rpartition("::")[2], ()) if s.name == name), "")
            for base in _bases(head):
                if base in unique and unique[base].name not in seen:
                    names |= of(unique[base].name, seen | {name})
            return names

        return {short: frozenset(of(symbol.name)) for short, symbol in unique.items()}

    # ------------------------------------------------------------ what is hidden

    def is_hidden_file(self, file: str) -> bool:
        lowered = file.lower()
        return any(fnmatch.fnmatch(lowered, pattern.lower()) for pattern in self.hidden_files)

    def is_hidden(self, symbol: Symbol) -> bool:
        if self.is_hidden_file(symbol.file):
            return True
        return bool(self._hidden_re and self._hidden_re.fullmatch(symbol.short)) and symbol.kind in ("function", "macro")

    def _hidden_range(self, file: str, start: int, end: int) -> bool:
        """Whether lines start..end of a file show hidden code."""
        if self.is_hidden_file(file):
            return True
        if self._hidden_re is None:
            return False
        return any(s.file == file and s.line <= end and s.end_line >= start and s.defined and self.is_hidden(s)
                   and s.kind == "function" for s in self.symbols)

    # ------------------------------------------------------------ lookups

    def lookup(self, query: str, limit: int = 5) -> list[Symbol]:
        """Symbols named `query` (a short name, or a qualified tail like Tensor::host), best first."""
        query = query.strip().removeprefix("MNN::").strip("()")
        parts = [p for p in query.split("::") if p]
        if not parts:
            return []
        found = [s for s in self._by_short.get(parts[-1], []) if s.name.endswith("::".join(parts)) and not self.is_hidden(s)]

        def rank(s: Symbol) -> tuple:
            header = s.file.endswith((".h", ".hpp"))
            return (s.name.split("::")[-len(parts):] == parts and s.name.count("::") <= len(parts),
                    s.kind in ("class", "struct", "enum", "macro"), header, s.file.startswith(("include/", "source/core/")),
                    s.file.startswith("source/backend/cpu/") and "/" not in s.file[len("source/backend/cpu/"):],
                    not s.file.startswith("schema/"), -len(s.name))

        return sorted(found, key=rank, reverse=True)[:limit]

    def similar(self, name: str, limit: int = 5, cutoff: float = 0.6) -> list[str]:
        """Names close to one that does not exist (for hallucinated APIs)."""
        short = name.strip().split("::")[-1]
        names = [n for n, symbols in self._by_short.items()  # data members are a class's business (members_like)
                 if any(not self.is_hidden(s) and s.kind != "field" for s in symbols)]
        return difflib.get_close_matches(short, names, n=limit, cutoff=cutoff)

    def members_like(self, cls: str, name: str, limit: int = 4) -> list[Symbol]:
        """Members of a class whose names are close to `name` (for "has no member named" errors)."""
        owners = [s.name for s in self.lookup(cls) if s.kind in ("class", "struct", "union")]
        if not owners:
            return []
        prefix = owners[0] + "::"
        members = {s.short: s for s in self.symbols if s.name.startswith(prefix) and s.name.count("::") == prefix.count("::")
                   and not self.is_hidden(s) and s.kind in ("function", "field", "typedef", "enum")}
        close = difflib.get_close_matches(name, list(members), n=limit, cutoff=0.4)
        return [members[c] for c in close]

    def find_file(self, name: str) -> list[str]:
        """Indexed files whose path ends with `name` (for include paths), visible ones only."""
        name = name.strip().strip('"<>')
        files = sorted({s.file for s in self.symbols})
        tail = Path(name).name
        return [f for f in files if f.endswith("/" + tail) and not self.is_hidden_file(f)][:5]

    def describe(self, query: str, max_lines: int = 40) -> str:
        """A readable answer for one query: a class's members, a function's signatures, a macro, or doc sections."""
        query = query.strip()
        if not re.fullmatch(r"[A-Za-z_][\w:~]*(\(\))?", query):
            return self.search_docs(query, max_lines=max_lines)
        symbols = self.lookup(query, limit=8)
        if not symbols:
            hidden = [s for s in self._by_short.get(query.split("::")[-1], []) if self.is_hidden(s)]
            if hidden:
                return f"{query}: {HIDDEN_NOTE}"
            close = self.similar(query)
            return f"{query}: no such name in MNN" + (f" (similar: {', '.join(close)})" if close else "")
        first = symbols[0]
        if first.kind in ("class", "struct", "union"):
            return f"// {first.location()}\n" + self.members(first, max_lines)
        if first.kind == "enum":
            return f"// {first.location()}\n" + self.source_of(first, max_lines)
        if first.kind == "macro":  # one text per definition (#if branches differ)
            texts = [f"// {s.location()}\n" + self.source_of(s, max_lines // 2) for s in symbols if s.kind == "macro"]
            return "\n".join(texts[:3])
        lines, seen = [], set()
        in_headers = [s for s in symbols if s.file.endswith((".h", ".hpp"))]
        for s in in_headers or symbols:
            if s.signature not in seen and s.kind == first.kind:
                seen.add(s.signature)
                lines.append(f"{s.signature};  // {s.location()}")
        return "\n".join(lines[:max_lines])

    def search_docs(self, words: str, limit: int = 2, max_lines: int = 40) -> str:
        """The document sections that best match some words (MNN's AGENTS.md, skills/, docs/)."""
        terms = [w.lower() for w in re.findall(r"\w{3,}", words)]
        if not terms:
            return f"{words!r}: nothing to search for"
        scored = []
        for section in self.docs:
            body = self._lines(section.file, section.line, min(section.end_line, section.line + 80)).lower()
            score = sum(3 for t in terms if t in section.title.lower()) + sum(body.count(t) for t in terms)
            if score:
                scored.append((score, section))
        scored.sort(key=lambda x: -x[0])
        if not scored:
            return f"{words!r}: no document section matches"
        out = []
        for _, section in scored[:limit]:
            end = min(section.end_line, section.line + max_lines // limit)
            out.append(f"// {section.file}:{section.line} — {section.title}\n{self._lines(section.file, section.line, end)}")
        return "\n".join(out)

    # ------------------------------------------------------------ source text

    def _lines(self, file: str, start: int, end: int) -> str:
        lines = (self.root / file).read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(lines[start - 1:end])

    def excerpt(self, file: str, start: int, end: int, numbered: bool = True) -> str:
        """Lines start..end of a tree file (1-based, inclusive); refuses hidden code."""
        file = self.relative(file)
        if file is None:
            return "not a file of the MNN tree"
        if self._hidden_range(file, start, end):
            return f"{file}:{start}-{end}: {HIDDEN_NOTE}"
        lines = (self.root / file).read_text(encoding="utf-8", errors="replace").splitlines()
        start, end = max(1, start), min(len(lines), end)
        if numbered:
            return "\n".join(f"{n:5d} | {lines[n - 1]}" for n in range(start, end + 1))
        return "\n".join(lines[start - 1:end])

    def relative(self, file: str) -> str | None:
        """A path as the index names it (relative to the root), from an absolute or include-style path."""
        path = Path(file)
        if path.is_absolute():
            try:
                return path.resolve().relative_to(self.root.resolve()).as_posix()
            except ValueError:
                return None
        if (self.root / path).is_file():
            return path.as_posix()
        for prefix in ("source", "include", "schema/current"):
            if (self.root / prefix / path).is_file():
                return (Path(prefix) / path).as_posix()
        return None

    def source_of(self, symbol: Symbol, max_lines: int = 40) -> str:
        """The symbol's own text (capped), unless hidden."""
        if self.is_hidden(symbol):
            return f"{symbol.name}: {HIDDEN_NOTE}"
        end = min(symbol.end_line, symbol.line + max_lines - 1)
        text = self._lines(symbol.file, symbol.line, end)
        return text + ("\n    // ... (cut)" if end < symbol.end_line else "")

    def _tree_of(self, file: str):
        if file not in self._parsed:
            source = _prepared((self.root / file).read_bytes())
            self._parsed[file] = (_parser().parse(source), source)
        return self._parsed[file]

    def members(self, symbol: Symbol, max_lines: int = 40) -> str:
        """A class or struct in compact form: its head and one line per member, bodies elided."""
        tree, source = self._tree_of(symbol.file)
        node = tree.root_node.descendant_for_byte_range(symbol.start_byte, symbol.start_byte + 1)
        while node is not None and node.type not in ("class_specifier", "struct_specifier", "union_specifier"):
            node = node.parent
        body = node.child_by_field_name("body") if node is not None else None
        if body is None:
            return self.source_of(symbol, max_lines)
        lines = [_one_line(source[node.start_byte:body.start_byte].decode("utf-8", "replace")) + " {"]
        for member in body.named_children:
            if member.type == "comment" or _FLATBUFFERS_PLUMBING.search(_text(member, source).split("{")[0]):
                continue
            if member.type == "access_specifier":
                lines.append(_text(member, source).strip().rstrip(":") + ":")
            elif member.type == "function_definition":
                inner = member.child_by_field_name("body")
                if inner is None or inner.type != "compound_statement":  # = default, = delete
                    lines.append("    " + _one_line(_text(member, source)))
                    continue
                head = source[member.start_byte:inner.start_byte].decode("utf-8", "replace")
                lines.append("    " + _one_line(head) + " { ... }")
            elif member.type in ("class_specifier", "struct_specifier") or (
                    member.type == "field_declaration" and member.child_by_field_name("type") is not None
                    and member.child_by_field_name("type").type in ("class_specifier", "struct_specifier", "enum_specifier")
                    and member.child_by_field_name("type").child_by_field_name("body") is not None):
                inner_type = member if member.type.endswith("_specifier") else member.child_by_field_name("type")
                inner_body = inner_type.child_by_field_name("body")
                lines.append("    " + _one_line(source[inner_type.start_byte:inner_body.start_byte].decode("utf-8", "replace")) + " { ... };")
            else:
                lines.append("    " + _one_line(_text(member, source)))
        lines.append("};")
        if len(lines) > max_lines:
            lines = lines[: max_lines - 1] + [f"    // ... {len(lines) - max_lines + 1} more members", "};"]
        return "\n".join(lines)

    def enclosing(self, file: str, line: int) -> Symbol | None:
        """The innermost function (else class) of the tree around a line, or None."""
        relative = self.relative(file)
        if relative is None:
            return None
        around = [s for s in self.symbols if s.file == relative and s.line <= line <= s.end_line
                  and s.kind in ("function", "class", "struct", "union", "enum", "macro")]
        if not around:
            return None
        functions = [s for s in around if s.kind in ("function", "macro") and s.end_line - s.line >= 2]
        classes = [s for s in around if s.kind in ("class", "struct", "union")]
        # A one-line declaration says less than its class: show the class then.
        pool = functions or classes or around
        return min(pool, key=lambda s: s.end_line - s.line)

    def context_for(self, file: str, line: int, max_lines: int = 40) -> dict | None:
        """The enclosing function or class of a tree location, as the Error Extractor reports it."""
        symbol = self.enclosing(file, line)
        if symbol is None:
            relative = self.relative(file)
            if relative is None:
                return None
            return {"file": relative, "line": line, "symbol": None, "code": self.excerpt(relative, line - 3, line + 3)}
        if self.is_hidden(symbol):
            return {"file": symbol.file, "line": line, "symbol": symbol.name, "code": HIDDEN_NOTE}
        code = self.members(symbol, max_lines) if symbol.kind in ("class", "struct", "union") else self.source_of(symbol, max_lines)
        return {"file": symbol.file, "line": symbol.line, "symbol": symbol.name, "code": code}


_loaded: dict[str, TreeIndex] = {}
