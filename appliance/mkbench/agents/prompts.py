"""Prompt templates: one file per role and mode under agents/prompts/, rendered to chat messages
(a kind of kernel's own texts, its system prompt and worked example, live beside it in kinds/).

A template is Markdown with `$name` placeholders (string.Template) and two section marks:

    <<<system>>>
    You are ...
    <<<user>>>
    $task
    ...

Every prompt of one task and mode starts with the same system text and the same task block, so
a backend that caches prompt prefixes (llama.cpp) does not process them again round after round.
"""

from __future__ import annotations

import json
import string
from functools import cache
from pathlib import Path

from ..kinds import kind_of
from ..llm.chat import Message
from ..tasks.spec import Task

PROMPTS_DIR = Path(__file__).parent / "prompts"
_SECTION = "<<<"


@cache
def template(file: str) -> str:
    """The text of prompts/<file>.md."""
    path = PROMPTS_DIR / f"{file}.md"
    if not path.is_file():
        raise FileNotFoundError(f"no prompt template {path.name} in {PROMPTS_DIR}")
    return path.read_text(encoding="utf-8")


def render(file: str, **values) -> list[Message]:
    """The messages of a template with its placeholders filled (a missing value raises KeyError)."""
    text = string.Template(template(file)).substitute(values)
    messages = []
    for block in text.split(_SECTION)[1:]:
        role, _, content = block.partition(">>>")
        messages.append(Message(role.strip(), content.strip("\n") + "\n"))
    if not messages:
        raise ValueError(f"prompt template {file}.md has no <<<system>>> or <<<user>>> section")
    return messages


def text(file: str, **values) -> str:
    """A template used as a fragment (no sections): the task block, examples."""
    return string.Template(template(file)).substitute(values).strip("\n")


# ---------------------------------------------------------------- the task as the model sees it


def _shape(tensor) -> str:
    return f"{tensor.name}: {tensor.dtype} {list(tensor.shape)}"


def problem_of(task: Task) -> str:
    """The problem: the task's PyTorch module when it has one, else a description built from its ONNX nodes."""
    if task.torch_module:
        return f"```python\n{task.torch_module.strip()}\n```"
    lines = [f"ONNX graph (opset {task.opset}):"]
    constants = {c.name: c for c in task.constants}
    for node in task.nodes:
        attributes = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(node.attributes.items()))
        arguments = []
        for name in node.inputs:
            c = constants.get(name)
            arguments.append(f"{name}={list(c.value)}" if c is not None and c.value is not None and len(c.value) <= 8 else name)
        lines.append(f"  {', '.join(node.outputs)} = {node.op}({', '.join(arguments)}{'; ' + attributes if attributes else ''})")
    return "\n".join(lines)


def semantics(task: Task) -> str:
    """The operator's attributes in words, and for reductions, normalisations and composites ONNX's
    own reference implementation of it (tools/definition.py); "" when there is neither."""
    from .tools import definition

    parts = []
    if spelled := definition.attributes(task):
        parts.append(f"The {task.operator} node's attributes (fixed for this task: write their values, they are not "
                     f"variables of your code):\n" + "\n".join(f"- {line}" for line in spelled.splitlines()))
    if definition.wanted(task) and (code := definition.definition(task)):
        parts.append(f"What {task.operator} computes, as ONNX's reference implementation (opset {task.opset}) writes it "
                     f"(the judge's reference):\n```python\n{code}\n```")
    return "\n\n".join(parts)


def task_block(task: Task, framework: bool = True, definition: bool = True) -> str:
    """The fixed description of a task that opens every prompt about it (MNN's side only when
    the model writes the framework part itself, in whole-file mode); with `definition`, the
    operator's semantics after the problem (an ablation turns it off)."""
    tolerance = f"|out - ref| <= {task.tolerance.atol:g} + {task.tolerance.rtol:g} * |ref|"
    mnn = f"Correct when, for every output value: {tolerance}"
    if framework:
        kind = kind_of(task)
        # A composite's converted graph is the output of MNN's own transform for the operator,
        # i.e. its native implementation: such a kind's graph is not shown.
        converted = ", ".join(task.mnn.converted_ops) if kind.shows_converted_graph else ""
        what = kind.task_line(task)
        mnn = f"MNN 3.6.1 converts the model to: {converted}\n{what}\n{mnn}" if converted else f"{what}\n{mnn}"
    problem = problem_of(task)
    if definition and (extra := semantics(task)):
        problem = f"{problem}\n\n{extra}"
    return text("task", name=task.name, category=task.category, operator=task.operator, problem=problem,
                inputs="; ".join(_shape(t) for t in task.inputs), outputs="; ".join(_shape(t) for t in task.outputs), mnn=mnn)
