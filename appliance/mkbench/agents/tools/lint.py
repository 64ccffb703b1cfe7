"""The lint pass: refuse, before compiling, what the model must not write into a scaffold.

    problem = check(code, scaffold)   # None when the functions may be spliced in, else one line why not

The scaffold owns everything MNN-specific, so the model's code may not include headers, define
macros, touch MNN (namespaces, classes, the registration), redefine the scaffold's names or its
own functions, or write to an input (const_cast, casting the const away, assigning through an
input pointer, memcpy/memset into one). A composite's function is written in MNN's Express API,
so there only the headers, macros, the transform, its registration and the scaffold's names are
refused: each scaffold says what it refuses (kinds/). Every required function must be defined once, with the
stated number of parameters. A rejected sample counts as a failed compile.
"""

from __future__ import annotations

import re

from ...kinds.scaffold import Scaffold

_WRITERS = {"memcpy", "memset", "memmove", "std::memcpy", "std::memset", "std::memmove", "std::fill", "std::copy"}


def _parse(code: str):
    import tree_sitter
    import tree_sitter_cpp

    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_cpp.language()))
    source = code.encode()
    return parser.parse(source), source


def _text(node, source: bytes) -> str:
    return source[node.start_byte:node.end_byte].decode("utf-8", "replace")


def _definitions(root, source: bytes) -> list[tuple[str, int, object]]:
    """(name, parameter count, node) of every function defined in the code."""
    found = []

    def walk(node):
        for child in node.named_children:
            if child.type == "function_definition":
                declarator = child.child_by_field_name("declarator")
                while declarator is not None and declarator.type != "function_declarator":
                    declarator = declarator.child_by_field_name("declarator")
                if declarator is not None:
                    name = re.sub(r"\s+", "", _text(declarator.child_by_field_name("declarator"), source))
                    parameters = declarator.child_by_field_name("parameters")
                    count = len([p for p in parameters.named_children if p.type.endswith("parameter_declaration")]) if parameters else 0
                    found.append((name, count, child))
            elif child.type in ("namespace_definition", "declaration_list", "template_declaration", "linkage_specification"):
                walk(child)

    walk(root)
    return found


def _base(node, source: bytes) -> str | None:
    """The variable an lvalue writes through: x in x[i], *x, *(x + i), x->f."""
    while node is not None:
        if node.type == "identifier":
            return _text(node, source)
        if node.type in ("subscript_expression", "field_expression") or node.type == "pointer_expression":
            node = node.child_by_field_name("argument")
        elif node.type == "parenthesized_expression":
            node = node.named_children[0] if node.named_children else None
        elif node.type == "binary_expression":
            node = node.child_by_field_name("left")
        else:
            return None
    return None


def _writes_to_input(root, source: bytes, read_only: set[str]) -> str | None:
    """The first write through a read-only parameter, as a one-line reason."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "assignment_expression":
            target = _base(node.child_by_field_name("left"), source)
            left = node.child_by_field_name("left")
            if target in read_only and left is not None and left.type != "identifier":
                return f"do not write to the input {target} (line {node.start_point.row + 1}): it is read-only"
        elif node.type == "update_expression":
            argument = node.child_by_field_name("argument")
            if argument is not None and argument.type != "identifier" and _base(argument, source) in read_only:
                return f"do not write to the input {_base(argument, source)} (line {node.start_point.row + 1}): it is read-only"
        elif node.type == "cast_expression":
            value = node.child_by_field_name("value")
            kind = node.child_by_field_name("type")
            if value is not None and value.type == "identifier" and _text(value, source) in read_only \
                    and kind is not None and "const" not in _text(kind, source):
                return f"do not cast away the const of the input {_text(value, source)} (line {node.start_point.row + 1})"
        elif node.type == "call_expression":
            function = node.child_by_field_name("function")
            arguments = node.child_by_field_name("arguments")
            if function is not None and _text(function, source) in _WRITERS and arguments is not None and arguments.named_children:
                target = _base(arguments.named_children[0], source)
                if target in read_only:
                    return f"do not write to the input {target} with {_text(function, source)} (line {node.start_point.row + 1})"
        stack.extend(node.named_children)
    return None


def _without_comments(code: str) -> str:
    """The code with comments and string literals blanked (newlines kept, so line numbers hold)."""
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))
    return re.sub(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"', blank, code, flags=re.DOTALL)


_SYSTEM_INCLUDE = re.compile(r"^[ \t]*#[ \t]*include[ \t]*<[^>\n]+>[^\n]*(\n|$)", re.MULTILINE)


def without_system_includes(code: str | None) -> tuple[str | None, int]:
    """The code without its `#include <...>` lines, and how many there were. The scaffold includes
    the standard headers and SIMD intrinsics before the model's code, which sits inside a
    namespace where an include does harm; small models write them anyway (most of the lint
    rejections of a run's Accelerator rounds), so they are dropped rather than refused. A header
    the scaffold lacks then shows as the compile error it causes. `#include "..."` is still refused."""
    if not code:
        return code, 0
    return _SYSTEM_INCLUDE.subn("", code)


def check(code: str | None, scaffold: Scaffold) -> str | None:
    """None if the code may be spliced into the scaffold, else a one-line reason to reject it."""
    if not code or not code.strip():
        return "no C++ code block in the answer: answer with the functions in one ```cpp block"
    bare = _without_comments(code)
    for pattern, reason in scaffold.forbidden:
        match = pattern.search(bare)
        if match:
            return f"{reason} (line {bare.count(chr(10), 0, match.start()) + 1})"
    root, source = _parse(code)
    definitions = _definitions(root.root_node, source)
    names = [d[0] for d in definitions]
    for function in scaffold.functions:
        wanted = function.signature.split("(", 1)[1].rstrip(")").split(",")
        count = len([p for p in wanted if p.strip()])
        found = [d for d in definitions if d[0] == function.name]
        if not found:
            return f"define {function.name} exactly as stated: {function.signature}"
        if len(found) > 1:
            return f"{function.name} is defined {len(found)} times: define it once"
        if found[0][1] != count:
            return f"{function.name} takes {count} parameters, not {found[0][1]}: {function.signature}"
    for name in set(names):
        if names.count(name) > 1 and name not in scaffold.names:
            return f"{name} is defined {names.count(name)} times: define it once"
    for name, _, node in definitions:
        function = next((f for f in scaffold.functions if f.name == name), None)
        if function is None:
            continue
        problem = _writes_to_input(node, source, set(function.read_only))
        if problem:
            return problem
    return None
