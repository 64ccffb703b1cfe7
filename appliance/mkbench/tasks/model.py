"""A task's ONNX model, its seeded inputs, and its reference outputs.

The model is built from the spec with onnx's helpers, with constants drawn once from the
task's seed (so the model is the same file every time); inputs are drawn per named set
("timing", "check0", "check1", ...) from seeds derived from the task's seed, so correctness
inputs are always different from the ones timed. References come from onnx's own
ReferenceEvaluator, on the host, never from the process that runs a candidate.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .draw import draw
from .spec import Task, TaskError, TensorSpec

IR_VERSION = 9  # what MNN 3.6.1's converter reads; opset comes from the task
CHECK_SETS = 3  # correctness draws per evaluation, after the timed loop


def _dtype_to_onnx(dtype: str) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _set_seed(task: Task, set_name: str) -> int:
    # Stable across Python runs (unlike hash()), distinct per set.
    digest = hashlib.sha256(f"{task.seed}:{set_name}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def constant_values(task: Task) -> dict[str, np.ndarray]:
    """The task's constants (weights, axes, ...): literal, or drawn from the task's seed."""
    rng = np.random.default_rng(task.seed)
    values = {}
    for spec in task.constants:
        values[spec.name] = _materialise(spec, rng)
    return values


def _materialise(spec: TensorSpec, rng: np.random.Generator) -> np.ndarray:
    if spec.file is not None:
        return load_file(spec)
    if spec.value is not None:
        return np.array(spec.value, dtype=np.dtype(spec.dtype)).reshape(spec.shape)
    return draw(spec.draw, spec.shape, spec.dtype, rng)


def load_file(spec: TensorSpec) -> np.ndarray:
    """A tensor stored beside its spec (imported tasks): the same array for every input set,
    checked against the spec's sha256, shape and dtype."""
    raw = spec.file.read_bytes()
    if hashlib.sha256(raw).hexdigest() != spec.file_sha256:
        raise TaskError(f"{spec.file}: sha256 differs from the spec's (the data file was changed)")
    array = np.load(io.BytesIO(raw), allow_pickle=False)
    if array.shape != spec.shape or array.dtype != np.dtype(spec.dtype):
        raise TaskError(f"{spec.file}: holds {list(array.shape)} {array.dtype}, the spec says {list(spec.shape)} {spec.dtype}")
    return array


def draw_inputs(task: Task, set_name: str = "timing") -> dict[str, np.ndarray]:
    """One named set of inputs. The "timing" set uses the task's own seed; the "edge" set
    draws from each input's check_draw where the spec gives one."""
    rng = np.random.default_rng(task.seed if set_name == "timing" else _set_seed(task, set_name))
    inputs = {}
    for spec in task.inputs:
        if set_name == "edge" and spec.check_draw:
            inputs[spec.name] = draw(spec.check_draw, spec.shape, spec.dtype, rng)
        else:
            inputs[spec.name] = _materialise(spec, rng)
    return inputs


def correctness_sets(task: Task) -> list[str]:
    """The input sets checked after the timed loop, in order."""
    sets = [f"check{i}" for i in range(CHECK_SETS - 1)]
    return sets + ["edge"] if any(spec.check_draw for spec in task.inputs) else sets + [f"check{CHECK_SETS - 1}"]


def build_model(task: Task) -> onnx.ModelProto:
    """The task's ONNX model, checked by onnx.checker (raises onnx.checker.ValidationError)."""
    constants = constant_values(task)
    nodes = [helper.make_node(n.op, list(n.inputs), list(n.outputs), **_attributes(n.attributes))
             for n in task.nodes]
    graph = helper.make_graph(
        nodes,
        f"mkbench_{task.name}",
        [helper.make_tensor_value_info(t.name, _dtype_to_onnx(t.dtype), list(t.shape)) for t in task.inputs],
        [helper.make_tensor_value_info(t.name, _dtype_to_onnx(t.dtype), list(t.shape)) for t in task.outputs],
        initializer=[numpy_helper.from_array(constants[c.name], c.name) for c in task.constants],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", task.opset)],
                              producer_name="mkbench")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _attributes(attributes: dict) -> dict:
    out = {}
    for key, value in attributes.items():
        if key == "to" and isinstance(value, str):  # Cast(to=float16) as written in the paper
            value = helper.np_dtype_to_tensor_dtype(np.dtype({"float": "float32", "bool": "bool"}.get(value, value)))
        if key == "value" and isinstance(value, list):  # ConstantOfShape's value: int64 or float32
            array = np.array(value)
            value = numpy_helper.from_array(array.astype(np.int64 if array.dtype.kind == "i" else np.float32))
        out[key] = value
    return out


def reference_outputs(task: Task, inputs: dict[str, np.ndarray], model: onnx.ModelProto | None = None) -> dict[str, np.ndarray]:
    """The reference outputs for one input set, by onnx.reference.ReferenceEvaluator."""
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(model or build_model(task), new_ops=_reference_fixes())
    results = evaluator.run(None, inputs)
    return {spec.name: np.asarray(value) for spec, value in zip(task.outputs, results)}


def _reference_fixes() -> list:
    """Replacements for ReferenceEvaluator kernels that cannot run the suite's shapes.

    onnx 1.17+'s GatherElements uses numpy.choose, which takes at most 64 choices (the
    Tensor/GatherElements task gathers over 64); take_along_axis is the same definition.
    """
    from onnx.reference.op_run import OpRun

    class GatherElements(OpRun):
        def _run(self, data, indices, axis=None):
            axis = axis or 0
            indices = np.where(indices < 0, indices + data.shape[axis], indices)
            return (np.take_along_axis(data, indices, axis=axis),)

    return [GatherElements]
