"""The operator's definition in the task block: its attributes in words, and for reductions,
normalisations and composites ONNX's own reference implementation (never MNN's)."""

from __future__ import annotations

import numpy as np
from mkbench.agents import make_generator, prompts
from mkbench.agents.modes import make_mode
from mkbench.agents.tools import definition
from mkbench.tasks import get_task


def test_a_normalisation_shows_onnxs_reference_code_and_its_attributes_in_words():
    block = prompts.task_block(get_task("LayerNorm_vision"), framework=False)
    assert "- axis = -1: the last dimension of x [1, 196, 768] (768 values)" in block
    assert "- epsilon = 1e-05: added to the variance before the square root" in block
    assert "as ONNX's reference implementation (opset 20) writes it" in block
    code = block.split("```python\n")[-1].split("```")[0]
    # the helper the class calls comes with it, so the formula is all there, without comments
    assert "def _layer_normalization(" in code and "variance_eps = variance + epsilon" in code
    assert not any(line.strip().startswith("#") for line in code.splitlines())
    assert len(code.splitlines()) <= definition.MAX_LINES + 1


def test_the_shown_code_is_the_judges_reference():
    """What the prompt shows computes what the judge compares against (the same onnx function)."""
    task = get_task("LayerNorm_vision")
    code = definition.definition(task)
    namespace = {"np": np, "OpRun": object}
    exec("def _layer_normalization" + code.split("\ndef _layer_normalization")[1], namespace)
    x = np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32)
    y = namespace["_layer_normalization"](x, np.ones(8, np.float32), np.zeros(8, np.float32), axis=-1, epsilon=1e-5)[0]
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    assert np.allclose(y, expected, atol=1e-5)


def test_a_reduction_names_the_axes_its_constant_input_gives():
    block = prompts.task_block(get_task("ReduceProd_1d"), framework=False)
    assert "- axes = [0]: the last dimension of x [4096] (4096 values)" in block
    assert "- keepdims = 0: the reduced dimensions are removed" in block
    assert "np.prod(data, axis=axes" in block


def test_a_composite_shows_its_definition_and_an_elementwise_task_none():
    composite = prompts.task_block(get_task("LogSoftmax_axis_2"), framework=False)
    assert "class LogSoftmax(" in composite and "- axis = 2: the last dimension of x [8, 32, 64] (64 values)" in composite
    plain = prompts.task_block(get_task("Tanh"), framework=False)
    assert "reference implementation" not in plain and "attributes" not in plain
    pooling = prompts.task_block(get_task("AveragePool_2d_strides"), framework=False)
    assert "- strides = " in pooling and "reference implementation" not in pooling  # attributes for every op


def test_the_ablation_leaves_it_out(settings):
    task = get_task("LayerNorm_vision")
    assert make_generator("moka-no-definition", "scaffolded").definition is False
    assert "reference implementation" not in make_mode("scaffolded", task, settings, definition=False).base()["task"]
    assert "reference implementation" in make_mode("scaffolded", task, settings).base()["task"]
