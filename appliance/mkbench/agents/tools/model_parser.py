"""The Model Parser: the task's ONNX node beside the MNN ops it was converted to, and the mismatch.

    view = parse(task, verdict)     # {"onnx": [...], "mnn": [...], "mismatch": {...}}
    render(view)                     # compact JSON for the Debugger's prompt

The MNN side comes from the converted model the judge runs (the converter's JSON dump of the
task's .mnn, cached), so attribute and shape differences between the two are visible: a
dropped keepdims, an axis counted from the end, an input that became a parameter. For a
composite task that graph is what MNN's own transform for the operator makes (its native
implementation, which the agents never see), so only the ONNX side and the mismatch are given.
"""

from __future__ import annotations

import json
import subprocess

from ... import settings as settings_module
from ...judge.verdict import Verdict
from ...kinds import kind_of
from ...tasks.spec import Task

_SMALL = 16  # constant values and parameter lists up to this length are shown in full


def _short(value):
    if isinstance(value, list) and len(value) > _SMALL:
        return value[:_SMALL] + [f"... {len(value)} values"]
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    return value


def onnx_side(task: Task) -> list[dict]:
    """The task's ONNX nodes with their input and output shapes, constants and attributes."""
    tensors = {t.name: t for t in task.inputs + task.constants + task.outputs}
    nodes = []
    for node in task.nodes:
        def describe(name: str) -> dict:
            t = tensors.get(name)
            if t is None:
                return {"name": name}
            entry = {"name": name, "shape": list(t.shape), "dtype": t.dtype}
            if t.value is not None:
                entry["value"] = _short(list(t.value))
            return entry

        nodes.append({"op": node.op, "attributes": dict(node.attributes), "inputs": [describe(n) for n in node.inputs if n],
                      "outputs": [describe(n) for n in node.outputs]})
    return nodes


def _dump(task: Task, settings: settings_module.Settings) -> dict | None:
    """The converter's JSON of the task's .mnn model (cached), or None when it cannot be had."""
    from ...mnn import conversion
    from ...tasks import artifacts

    cached = settings.cache_dir / "model-parser" / f"{task.name}-{task.sha256[:16]}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    try:
        graph = conversion.model_json(artifacts.prepare(task, settings).mnn_model, settings)
    except (OSError, ValueError, RuntimeError, subprocess.SubprocessError):  # the Debugger still gets the ONNX side
        return None
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(graph))
    return graph


def mnn_side(task: Task, settings: settings_module.Settings) -> list[dict]:
    """The converted model's compute ops: type, sub-type parameters, inputs (constants inline), outputs."""
    graph = _dump(task, settings)
    if graph is None:
        return [{"op": label} for label in (task.mnn.converted_ops if task.mnn else ())]
    names = graph.get("tensorName", [])
    constants = {}
    for op in graph.get("oplists", []):
        if op.get("type") == "Const":
            main = op.get("main") or {}
            values = next((main[k] for k in ("float32s", "int32s", "int64s") if k in main), None)
            for index in op.get("outputIndexes", []):
                constants[index] = {"dims": main.get("dims", []), "value": _short(values)}
    ops = []
    for op in graph.get("oplists", []):
        if op.get("type") in ("Input", "Const"):
            continue
        inputs = []
        for index in op.get("inputIndexes", []):
            name = names[index] if 0 <= index < len(names) else str(index)
            inputs.append({"name": name, **constants[index]} if index in constants else {"name": name})
        ops.append({"op": op.get("type"), "params": _short(op.get("main") or {}), "inputs": inputs,
                    "outputs": [names[i] if 0 <= i < len(names) else str(i) for i in op.get("outputIndexes", [])]})
    return ops


def parameter_tables(task: Task, settings: settings_module.Settings) -> dict[str, str]:
    """op type -> the flatbuffers table of its parameters (main_type) in the converted model."""
    graph = _dump(task, settings) or {}
    return {op["type"]: op["main_type"] for op in graph.get("oplists", []) if op.get("main_type") and op.get("type")}


def parse(task: Task, settings: settings_module.Settings, verdict: Verdict | None = None) -> dict:
    """ONNX node(s), converted MNN ops (unless they are MNN's own rewrite of the op: a composite's),
    and the verdict's mismatch (largest errors and where)."""
    shown = kind_of(task).shows_converted_graph
    view = {"onnx": onnx_side(task), "mnn": mnn_side(task, settings) if shown else [],
            "targets": [f"{op}:{sub}" if sub else op for op, sub in (task.mnn.targets if task.mnn else ())]}
    if verdict is not None:
        view["mismatch"] = {"verdict": verdict.verdict, "reason": verdict.reason, "max_abs_error": verdict.max_abs_error,
                            "max_rel_error": verdict.max_rel_error, "tolerance": {"atol": task.tolerance.atol,
                                                                                 "rtol": task.tolerance.rtol}}
    return view


def _tensor(entry: dict) -> str:
    text = entry["name"]
    if "shape" in entry:
        text += f": {entry.get('dtype', '')} {entry['shape']}"
    if "dims" in entry:
        text += f" (constant {entry['dims']})"
    if entry.get("value") is not None:
        text += f" = {json.dumps(entry['value'])}"
    return text


def render(view: dict) -> str:
    """One line per ONNX node and MNN op, then the mismatch: compact enough for a small model."""
    lines = []
    for node in view.get("onnx", []):
        lines.append(f"ONNX {node['op']}({', '.join(_tensor(i) for i in node['inputs'])})"
                     f"{' ' + json.dumps(node['attributes']) if node['attributes'] else ''}"
                     f" -> {', '.join(_tensor(o) for o in node['outputs'])}")
    for op in view.get("mnn", []):
        if "params" not in op:
            lines.append(f"MNN  {op['op']}")
            continue
        lines.append(f"MNN  {op['op']}({', '.join(_tensor(i) for i in op['inputs'])})"
                     f"{' ' + json.dumps(op['params']) if op['params'] else ''} -> {', '.join(op['outputs'])}")
    if view.get("targets"):
        lines.append(f"the kernel serves: {', '.join(view['targets'])}")
    mismatch = view.get("mismatch")
    if mismatch:
        errors = ", ".join(f"{k.replace('_', ' ')} {mismatch[k]:.3g}" for k in ("max_abs_error", "max_rel_error")
                           if isinstance(mismatch.get(k), (int, float)))
        lines.append(f"mismatch: {mismatch['verdict']}: {mismatch['reason']}" + (f" ({errors})" if errors else "")
                     + f"; allowed: atol {mismatch['tolerance']['atol']:g}, rtol {mismatch['tolerance']['rtol']:g}")
    return "\n".join(lines)
