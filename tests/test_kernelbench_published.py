"""The paper's published task files, imported one by one: 186 tasks, each equal to its built-in twin.

The published files are not in this repository. The [torch] module of every built-in paper spec
is written in their format, so the fixture writes them out as <Category>/<Name>.py (190 files),
except ROIAlign: its published file calls torchvision.ops.roi_align, and the spec's module is a
plain-torch rewrite of it (imported here too, as Others/ROIAlign_plain_torch.py). The import
runs once per module, with two workers, each file in the jail: 8 to 13 minutes on a 2-core
machine busy with other builds (load 3 to 5).

An imported task is compared with the built-in spec of the same name through the ONNX models
both build: the nodes (op types; attributes, with the schema's defaults filled in; wiring, up to
tensor names and node order), the constants' shapes and dtypes (and values, where the built-in
spec's are not random draws), the inputs' shapes, dtypes and draws, the outputs' shapes and
dtypes, the operator, the category and the tolerance. `tasks validate` on a sample gives each the
status of its twin, or a stricter one where the twin adds an edge draw the import cannot know.
"""

from __future__ import annotations

import importlib.util
import re
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx.defs
import pytest
from onnx import AttributeProto, helper, numpy_helper

from mkbench.tasks.kernelbench import import_files
from mkbench.tasks.model import build_model, constant_values
from mkbench.tasks.spec import Task, load_suite, load_task

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed (pip install 'mkbench[torch]', CPU build): "
                                        "importing task files runs them with torch")]

PAPER = Path(__file__).resolve().parents[1] / "tasks" / "paper"
BUILT_IN = {t.name: t for t in load_suite(PAPER, "paper")[0]}

# The published ROIAlign (the spec's module says which call it stands for).
ROIALIGN_PUBLISHED = textwrap.dedent("""\
    import torch
    import torch.nn as nn
    import torchvision


    class Model(nn.Module):
        def __init__(self, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
            super().__init__()
            self.output_size = output_size
            self.spatial_scale = spatial_scale
            self.sampling_ratio = sampling_ratio
            self.aligned = aligned

        def forward(self, x):
            rois = torch.tensor([[0.0, 2.5, 2.5, 12.5, 12.5]], dtype=x.dtype)
            return torchvision.ops.roi_align(x, rois, self.output_size, self.spatial_scale, self.sampling_ratio,
                                             self.aligned)


    def get_inputs():
        x = torch.rand(1, 16, 128, 128)
        return [x]


    def get_init_inputs():
        return [(7, 7), 1, 2, True]
    """)

# Refused, and why: Det's reference overflows fp32 as published (the built-in specs say so too);
# ROIAlign needs torchvision, which does not install beside this CPU torch.
REFUSED = {
    "Det": "PyTorch and the ONNX reference disagree: y: 1 non-finite values (first at ())",
    "Det_2d": "PyTorch and the ONNX reference disagree: y: 64 non-finite values (first at (0,))",
    "Det_3d": "PyTorch and the ONNX reference disagree: y: 512 non-finite values (first at (0, 0))",
    "ROIAlign": "the file needs the Python package torchvision, which is not installed here (No module named 'torchvision')",
}
# Where the built-in spec is not the export (the import keeps the export's), and why.
TWIN_DIFFERS = {
    "CumSum": "the axis is int32 in the export (torch writes dim as an int32 Constant); the built-in spec's int64 "
              "is a guess, the paper's table gives no type",
}
RANDOM_DRAW = re.compile(r"\b(rand|randn|randint|uniform)\b")


@pytest.fixture(scope="module")
def published(tmp_path_factory, session_settings) -> tuple[dict, dict, float]:
    """The 190 files imported (plus the plain-torch ROIAlign): (results by name, tasks by name, seconds)."""
    root = tmp_path_factory.mktemp("published")
    for task in BUILT_IN.values():
        (root / task.category).mkdir(exist_ok=True)
        (root / task.category / f"{task.name}.py").write_text(ROIALIGN_PUBLISHED if task.name == "ROIAlign" else task.torch_module)
    (root / "Others" / "ROIAlign_plain_torch.py").write_text(BUILT_IN["ROIAlign"].torch_module)
    start = time.monotonic()
    results = import_files([root], session_settings, workers=2)
    seconds = time.monotonic() - start
    by_name = {r.source.stem: r for r in results}
    tasks = {name: load_task(r.task_path) for name, r in by_name.items() if r.ok}
    return by_name, tasks, seconds


def test_186_of_the_190_import_and_the_others_say_why(published):
    results, tasks, seconds = published
    assert len(results) == 191
    refused = {name: r.error for name, r in results.items() if not r.ok}
    assert refused == {**REFUSED, "ROIAlign_plain_torch": refused.get("ROIAlign_plain_torch")}
    assert refused["ROIAlign_plain_torch"].startswith("the export has 19 nodes computing on the inputs (Gather, ")
    assert refused["ROIAlign_plain_torch"].endswith("no single operator doing the work (Gather, ReduceMean, Concat): "
                                                    "a kernel would not know what it replaces")
    assert len(tasks) == 186 and set(tasks) == set(BUILT_IN) - set(REFUSED)
    print(f"190 published files imported in {seconds:.0f} s")


@pytest.mark.parametrize("name", sorted(set(BUILT_IN) - set(REFUSED)))
def test_the_imported_task_is_its_built_in_twin(published, name):
    _, tasks, _ = published
    task, twin = tasks[name], BUILT_IN[name]
    assert (task.suite, task.category, task.operator, task.opset, task.seed) == (
        "imported", twin.category, twin.operator, twin.opset, twin.seed)
    assert task.tolerance == twin.tolerance
    assert [(i.shape, i.dtype, i.draw) for i in task.inputs] == [(i.shape, i.dtype, i.draw) for i in twin.inputs]
    assert [(o.shape, o.dtype) for o in task.outputs] == [(o.shape, o.dtype) for o in twin.outputs]
    ours, theirs = graph_signature(task), graph_signature(twin, random_constants_free=True)
    assert len(task.nodes) == len(twin.nodes)
    if name in TWIN_DIFFERS:
        assert not same(theirs, ours), f"{name} now equals its twin: drop it from TWIN_DIFFERS"
        assert same(theirs, ours, int32_is_int64=True)
    else:
        assert same(theirs, ours), f"\nimported {ours}\ntwin     {theirs}"


def graph_signature(task: Task, random_constants_free: bool = False) -> list:
    """Each graph output as the expression that computes it: (op, attributes, argument expressions,
    output slot), down to ("input", index) and ("constant", shape, dtype, values or None). Values are
    None for a random draw when random_constants_free (the twin draws its weights, the import has
    the module's)."""
    model = build_model(task)
    values = constant_values(task)
    constants = {c.name: c for c in task.constants}
    inputs = {t.name: i for i, t in enumerate(task.inputs)}
    makers = {o: (node, slot) for node in model.graph.node for slot, o in enumerate(node.output) if o}

    def expression(name: str):
        if name == "":
            return ("absent",)
        if name in inputs:
            return ("input", inputs[name])
        if name in constants:
            spec = constants[name]
            free = random_constants_free and spec.draw is not None and RANDOM_DRAW.search(spec.draw)
            return ("constant", spec.shape, spec.dtype, None if free else tuple(np.asarray(values[name]).ravel().tolist()))
        node, slot = makers[name]
        schema = onnx.defs.get_schema(node.op_type, task.opset)
        attributes = {k: attribute(a.default_value) for k, a in schema.attributes.items() if a.default_value.type}
        attributes.update({a.name: attribute(a) for a in node.attribute})
        return (node.op_type, tuple(sorted(attributes.items())), tuple(expression(i) for i in node.input), slot)

    return [expression(o.name) for o in task.outputs]


def attribute(proto):
    value = helper.get_attribute_value(proto)
    if proto.type == AttributeProto.FLOAT:
        return float(np.float32(value))
    if proto.type in (AttributeProto.FLOATS, AttributeProto.INTS):
        return tuple(float(np.float32(v)) if proto.type == AttributeProto.FLOATS else v for v in value)
    if proto.type == AttributeProto.STRING:
        return value.decode()
    if proto.type == AttributeProto.STRINGS:
        return tuple(v.decode() for v in value)
    if proto.type == AttributeProto.TENSOR:
        array = numpy_helper.to_array(value)
        return ("tensor", str(array.dtype), array.shape, tuple(array.ravel().tolist()))
    return value


def same(twin, imported, int32_is_int64: bool = False) -> bool:
    """Signatures equal, with floats to the paper table's 6 significant digits (HardSigmoid's
    alpha is 0.166667 there) and a twin's free constant values matching any."""
    if isinstance(twin, (tuple, list)) and isinstance(imported, (tuple, list)):
        if twin[:1] == ("constant",) and imported[:1] == ("constant",):
            dtypes = {twin[2], imported[2]}
            same_dtype = len(dtypes) == 1 or (int32_is_int64 and dtypes == {"int32", "int64"})
            return (twin[1] == imported[1] and same_dtype
                    and (twin[3] is None or np.allclose(np.array(twin[3], float), np.array(imported[3], float),
                                                        rtol=1e-6, atol=1e-6)))
        return len(twin) == len(imported) and all(same(a, b, int32_is_int64) for a, b in zip(twin, imported))
    if isinstance(twin, float) or isinstance(imported, float):
        return bool(np.isclose(twin, imported, rtol=1e-5, atol=0))
    return twin == imported


# Every twin of several nodes (the imports the graph normalisation made), every twin with an edge
# draw, and CumSum (whose axis differs); the whole suite is in the README (23 minutes).
VALIDATED = sorted(name for name, twin in BUILT_IN.items() if name not in REFUSED and (
    len(twin.nodes) > 1 or any(i.check_draw for i in twin.inputs) or name == "CumSum"))


@pytest.mark.parametrize("name", VALIDATED)
def test_validation_gives_the_imported_task_its_twins_status(published, session_settings, mnn_root, name):
    pytest.importorskip("_tools", reason="the MNN wheel (pip install MNN==3.6.1) is needed to convert models")
    from mkbench.kinds.probe import host_runner
    from mkbench.validate import check_task

    _, tasks, _ = published
    check, twin = check_task(tasks[name], session_settings, host_runner(session_settings)), BUILT_IN[name]
    if any(i.check_draw for i in twin.inputs) and not check.runnable:  # stricter: the twin's edge draw is unknowable
        assert twin.status.runnable and check.reason.startswith("degenerate as published: ")
        return
    assert (check.runnable, check.reason.split(":")[0], check.kind, check.targets) == (
        twin.status.runnable, twin.status.reason.split(":")[0], twin.mnn.kind, twin.mnn.targets)
    if check.runnable:
        assert check.judgeable == twin.status.judgeable
