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


def draw_inputs(task: Task, set_name: str = "timing", seed: int | None = None) -> dict[str, np.ndarray]:
    """One named set of inputs. The "timing" set uses the task's own seed; the "edge" set
    draws from each input's check_draw where the spec gives one. With `seed`, the same
    distributions drawn afresh (the judge's draws made per evaluation)."""
    if seed is not None:
        rng = np.random.default_rng(seed)
    else:
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


def reference_values(task: Task, inputs: dict[str, np.ndarray], model: onnx.ModelProto | None = None) -> dict[str, np.ndarray]:
    """Every value of the reference run on one input set, by name: the inputs, the constants and
    every node's outputs (what a test of one node of a larger graph feeds it and expects of it)."""
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(model or build_model(task), new_ops=_reference_fixes())
    return {name: np.asarray(value) for name, value in evaluator.run(None, inputs, intermediate=True).items()}


def _reference_fixes() -> list:
    """Replacements for ReferenceEvaluator kernels that cannot run the suite's shapes or get them
    wrong (each found by the PyTorch cross-check, where MNN and PyTorch agree with each other).

    GatherElements: onnx 1.17+ uses numpy.choose, which takes at most 64 choices (the
    Tensor/GatherElements task gathers over 64); take_along_axis is the same definition.
    ConvTranspose with group > 1: onnx adds the first group's bias to every group; run each group
    on its own (its channels, weights and bias) and concatenate.
    AveragePool with ceil_mode: onnx shifts the last window; the last window instead starts at
    o * stride - pad_begin and is cut at the padded input's end, dividing by the elements it
    covers inside the padded input (count_include_pad) or inside the input (as PyTorch, ORT, MNN).
    """
    from onnx.reference.op_run import OpRun
    from onnx.reference.ops.op_average_pool import AveragePool_19 as ReferenceAveragePool
    from onnx.reference.ops.op_conv_transpose import ConvTranspose as ReferenceConvTranspose

    class GatherElements(OpRun):
        def _run(self, data, indices, axis=None):
            axis = axis or 0
            indices = np.where(indices < 0, indices + data.shape[axis], indices)
            return (np.take_along_axis(data, indices, axis=axis),)

    class ConvTranspose(ReferenceConvTranspose):
        def _run(self, X, W, B=None, group=None, **attributes):
            group = group or 1
            if group == 1:
                return super()._run(X, W, B, group=1, **attributes)
            xs, ws = np.split(X, group, axis=1), np.split(W, group, axis=0)
            bs = np.split(B, group) if B is not None else [None] * group
            outputs = [super(ConvTranspose, self)._run(x, w, b, group=1, **attributes)[0] for x, w, b in zip(xs, ws, bs)]
            return (np.concatenate(outputs, axis=1),)

    class AveragePool(ReferenceAveragePool):
        def _run(self, x, auto_pad=None, ceil_mode=None, count_include_pad=None, dilations=None, kernel_shape=None,
                 pads=None, strides=None):
            spatial = x.ndim - 2
            if not ceil_mode or (auto_pad not in (None, "NOTSET")) or any(d != 1 for d in (dilations or [1] * spatial)):
                return super()._run(x, auto_pad=auto_pad, ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                                    dilations=dilations, kernel_shape=kernel_shape, pads=pads, strides=strides)
            return (_average_pool_ceil(x, list(kernel_shape), list(strides or [1] * spatial),
                                       list(pads or [0] * 2 * spatial), bool(count_include_pad)),)

    return [GatherElements, ConvTranspose, AveragePool]


def _average_pool_ceil(x: np.ndarray, kernel: list, strides: list, pads: list, count_include_pad: bool) -> np.ndarray:
    """N-d average pooling with ceil_mode=1 (see _reference_fixes)."""
    import itertools
    import math

    spatial = x.ndim - 2
    sizes = x.shape[2:]
    begins, ends = pads[:spatial], pads[spatial:]
    out_sizes = []
    for size, k, s, pb, pe in zip(sizes, kernel, strides, begins, ends):
        out = math.ceil((size + pb + pe - k) / s) + 1
        if (out - 1) * s >= size + pb:  # a window must start inside the input or its left padding
            out -= 1
        out_sizes.append(out)
    result = np.zeros(x.shape[:2] + tuple(out_sizes), dtype=np.float64)
    for position in itertools.product(*(range(o) for o in out_sizes)):
        window, padded_count, valid_count = [], 1, 1
        for o, size, k, s, pb, pe in zip(position, sizes, kernel, strides, begins, ends):
            start = o * s - pb
            stop = min(start + k, size + pe)
            lo, hi = max(start, 0), min(stop, size)
            window.append(slice(lo, hi))
            padded_count *= stop - start
            valid_count *= hi - lo
        total = x[(slice(None), slice(None), *window)].astype(np.float64).sum(axis=tuple(range(2, x.ndim)))
        result[(slice(None), slice(None), *position)] = total / (padded_count if count_include_pad else valid_count)
    return result.astype(x.dtype)
