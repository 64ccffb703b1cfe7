"""Validation with real onnx node tests, the real MNN converter and native MNN."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from mkbench.cli import main
from mkbench.tasks import get_task
from mkbench.validate import check_node_tests, check_task

pytest.importorskip("_tools", reason="the MNN wheel (pip install MNN==3.6.1) is needed to convert models")


def test_a_sound_task_converts_to_one_cpu_execution_and_native_mnn_agrees(settings):
    check = check_task(get_task("Abs"), settings)
    assert check.runnable and check.problems == ()
    assert check.kind == "cpu-execution" and check.targets == (("UnaryOp", "ABS"),)
    assert check.native_ok and check.native_max_abs_error == 0.0
    assert check.node_tests >= 1


def test_converter_rewrites_are_recorded_as_composite(settings):
    check = check_task(get_task("Softplus_2d"), settings)
    assert check.kind in ("composite", "cpu-execution")
    assert check.converted_ops


def test_native_disagreement_is_reported_with_the_figure(settings):
    check = check_task(get_task("ReduceL2_2d_input"), settings)  # MNN 3.6.1 drops ReduceL2's axes input at opset 18+
    assert not check.runnable and "native MNN disagrees" in check.reason and "shape" in check.reason


def test_overflowing_reference_is_not_runnable(settings):
    check = check_task(get_task("Det_3d"), settings)
    assert not check.runnable and "not finite" in check.reason


def test_degenerate_task_is_flagged(settings):
    # Running mean 0, variance 1, scale 1, bias 0: the published BatchNorm is x / sqrt(1 + 1e-5).
    check = check_task(get_task("BatchNormalization"), settings)
    assert not check.runnable and "degenerate as published" in check.reason and "copying input x" in check.reason


def test_edge_draw_makes_a_degenerate_distribution_judgeable(settings):
    # Published inputs are rand >= 0, on which Relu is the identity; the edge set draws negatives.
    task = get_task("Relu")
    assert any(i.check_draw for i in task.inputs)
    assert check_task(task, settings).runnable


def test_reference_reproduces_onnx_node_tests():
    count, failures = check_node_tests("Softmax")
    assert count >= 1 and failures == []


def test_validate_command_matches_the_recorded_status():
    result = CliRunner().invoke(main, ["tasks", "validate", "Abs", "Det", "ReduceL2", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "3 tasks: 1 runnable" in result.output and "0 failures" in result.output


def test_write_refuses_the_built_in_specs_of_an_installed_mkbench(tmp_path, monkeypatch):
    """An installed mkbench (the appliance image) carries its specs read-only: --write stops before
    validating, in one line naming a source checkout; specs elsewhere (the data folder's) are written."""
    from mkbench import settings as settings_module
    from mkbench.validate import write_refusal

    packaged = tmp_path / "site-packages" / "mkbench" / "shipped"
    shutil.copytree(settings_module.BUILTIN_TASKS / "paper" / "Unary", packaged / "tasks" / "paper" / "Unary")
    monkeypatch.setattr(settings_module, "PACKAGED", packaged)
    monkeypatch.setenv("MKBENCH_TASKS", str(packaged / "tasks"))
    spec = packaged / "tasks" / "paper" / "Unary" / "Abs.toml"
    before = spec.read_text()

    result = CliRunner().invoke(main, ["tasks", "validate", "Abs", "--write"])
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and "built-in task specs" in line and "source checkout" in line and "Abs" in line
    assert spec.read_text() == before

    mine = tmp_path / "home" / "tasks"
    shutil.copytree(settings_module.BUILTIN_TASKS / "paper" / "Unary", mine / "paper" / "Unary")
    assert write_refusal([get_task("Abs", mine)]) == ""
