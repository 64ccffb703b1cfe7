"""The operator's definition as ONNX's own reference implementation writes it, and the task's
attributes spelled out: what the model needs beyond a PyTorch module to get a reduction, a
normalisation or a composite right.

    definition(task)    # the Python of onnx.reference's kernel for the task's op ("" when none)
    attributes(task)    # one line per attribute: "axis = -1: the last dimension of x [1, 196, 768] (768 values)"

Why: the small model's failures on these tasks were wrong formulas (LogSoftmax as
log(x) - sum(log(x))), a convolution without its padding, a reduction over the wrong axis. A
PyTorch module says `torch.nn.LayerNorm(768)`; the reference implementation says which axes,
where epsilon goes and how the variance is taken. It is ONNX's code (the judge's reference),
never MNN's: the benchmark measures writing a kernel, not copying MNN's.
"""

from __future__ import annotations

import inspect
import re

from ...tasks.spec import Task

MAX_LINES = 60  # the definition's budget in the prompt (a small model's context is short)
# Categories whose prompts carry the definition (and every composite task: an operator MNN
# decomposes is one whose semantics are easy to get wrong).
CATEGORIES = ("Reduction", "Normalization")


def wanted(task: Task) -> bool:
    """Does the task's prompt carry the operator's definition?"""
    return task.category in CATEGORIES or (task.mnn is not None and task.mnn.kind == "composite")


def _reference_class(task: Task):
    from onnx.reference.ops import load_op

    try:
        return load_op("", task.operator, task.opset)
    except Exception:  # onnx raises several kinds for an op or version it lacks
        return None


def _own_code(cls) -> list:
    """The classes of its hierarchy whose code is the op's (defined in onnx.reference.ops.op_*)."""
    return [c for c in inspect.getmro(cls) if getattr(inspect.getmodule(c), "__name__", "").startswith("onnx.reference.ops.op_")]


def definition(task: Task) -> str:
    """onnx.reference's kernel for the task's operator at its opset: its classes' code and the
    module's helper functions they call, up to MAX_LINES ("" when onnx has none)."""
    cls = _reference_class(task)
    if cls is None:
        return ""
    pieces: list[str] = []
    seen: set[str] = set()
    pending = list(_own_code(cls))
    while pending and sum(p.count("\n") + 1 for p in pieces) < MAX_LINES:
        item = pending.pop(0)
        try:
            source = inspect.getsource(item)
        except (OSError, TypeError):
            continue
        if source in seen:
            continue
        seen.add(source)
        pieces.append(_without_comments(source))
        module = inspect.getmodule(item)
        for name in dict.fromkeys(re.findall(r"\b(_?[A-Za-z]\w*)\b", source)):  # helpers of the same module it names
            helper = getattr(module, name, None)
            if inspect.isfunction(helper) and inspect.getmodule(helper) is module:
                pending.append(helper)
    lines = "\n\n".join(pieces).splitlines()
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES] + ["    # ... (shortened)"]
    return "\n".join(lines)


def _without_comments(source: str) -> str:
    """The code without its comment-only and blank lines (they cost a small model's context)."""
    return "\n".join(line for line in source.rstrip().splitlines() if line.strip() and not line.strip().startswith("#"))


def _dims(task: Task) -> dict[str, tuple]:
    return {t.name: tuple(t.shape) for t in (*task.inputs, *task.constants, *task.outputs)}


def _axis_words(axis: int, name: str, shape: tuple) -> str:
    rank = len(shape)
    if rank == 0 or not -rank <= axis < rank:
        return f"{axis}"
    k = axis % rank
    where = "the last dimension" if k == rank - 1 else f"dimension {k}"
    return f"{axis}: {where} of {name} {list(shape)} ({shape[k]} values)"


def attributes(task: Task) -> str:
    """The attributes of the task's operator node, each in words where the words help."""
    node = next((n for n in task.nodes if n.op == task.operator), None)
    if node is None:
        return ""
    dims = _dims(task)
    first = node.inputs[0] if node.inputs else ""
    shape = dims.get(first, ())
    constants = {c.name: c for c in task.constants}
    values = dict(node.attributes)
    if "axes" not in values and len(node.inputs) > 1 and node.op.startswith("Reduce"):
        given = constants.get(node.inputs[1])
        if given is not None and given.value is not None:
            values["axes"] = list(given.value)
    lines = []
    for key, value in sorted(values.items()):
        if key == "axis" and isinstance(value, int):
            text = _axis_words(value, first, shape)
        elif key == "axes" and isinstance(value, list):
            text = f"{value}: " + ", ".join(_axis_words(int(a), first, shape).split(": ", 1)[-1] for a in value)
        elif key == "keepdims":
            text = f"{value}: " + ("the reduced dimensions stay, with length 1" if value else "the reduced dimensions are removed")
        elif key == "epsilon":
            text = f"{value:g}: added to the variance before the square root"
        elif key == "pads" and isinstance(value, list) and len(shape) > 2:
            half = len(value) // 2
            text = (f"{value}: zeros added before ({value[:half]}) and after ({value[half:]}) each spatial dimension "
                    f"of {first} {list(shape)} (dimensions {', '.join(str(2 + i) for i in range(half))})")
        elif key == "auto_pad":
            text = {"SAME_UPPER": "SAME_UPPER: pad so that output = ceil(input / stride), the odd extra zero at the end",
                    "SAME_LOWER": "SAME_LOWER: pad so that output = ceil(input / stride), the odd extra zero at the start",
                    "VALID": "VALID: no padding"}.get(value, str(value))
        else:
            text = str(value)
        lines.append(f"{key} = {text}")
    if node.op.startswith("Reduce") and "axes" not in values:
        lines.append("axes not given: every dimension is reduced" if not values.get("noop_with_empty_axes") else
                     "axes not given and noop_with_empty_axes = 1: the input is returned as it is")
    return "\n".join(lines)
