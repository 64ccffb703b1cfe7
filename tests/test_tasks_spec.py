"""Task specs: the paper's suite loads whole, and bad files are named with their field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mkbench.cli import main
from mkbench.tasks import all_tasks, get_task
from mkbench.tasks.draw import check_expression, draw
from mkbench.tasks.model import build_model, draw_inputs, reference_outputs
from mkbench.tasks.spec import TaskError, load_suite, load_task

PAPER_TASKS = Path(__file__).resolve().parents[2] / "shared" / "PAPER-TASKS.md"


def test_paper_suite_has_every_row_of_the_table():
    tasks, errors = all_tasks("paper")
    assert errors == []
    assert len(tasks) == 190
    if PAPER_TASKS.exists():
        names = {line.split(" | ")[0].strip("| ").strip() for line in PAPER_TASKS.read_text().splitlines()
                 if line.startswith("| ") and not line.startswith(("| task", "|---"))}
        assert names == {t.name for t in tasks}
    assert {t.category for t in tasks} == {"Unary", "Binary", "Trigonometry", "Activation", "Normalization", "Pooling",
                                           "Convolution", "Matrix", "Reduction", "Tensor", "Logic", "Others"}


def test_every_task_records_its_mnn_target_and_status():
    tasks, _ = all_tasks("paper")
    for task in tasks:
        assert task.status.runnable or task.status.reason, task.name
        if task.mnn is None:  # only where MNN's converter refuses the model
            assert not task.status.runnable and "converter refuses" in task.status.reason, task.name


def test_cli_lists_tasks_as_json():
    result = CliRunner().invoke(main, ["tasks", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 190
    abs_row = next(r for r in rows if r["name"] == "Abs")
    assert abs_row["targets"] == [["UnaryOp", "ABS"]] and abs_row["runnable"]


@pytest.mark.parametrize("field, replacement, message", [
    ('operator = "Abs"', 'operator = "Absolutely"', "field 'operator'"),
    ('dtype = "float32"', 'dtype = "float33"', "field 'dtype'"),
    ('shape = [16, 8, 256, 256]', 'shape = [16, -8, 256, 256]', "field 'shape'"),
    ('op = "Abs"', 'op = "NoSuchOp"', "unknown ONNX operator"),
    ('draw = "2.0 * rand - 1.0"', 'draw = "__import__(1)"', "field 'draw'"),
    ('name = "Abs"\n', '', "missing field 'name'"),
])
def test_bad_task_files_name_the_file_and_field(tmp_path, field, replacement, message):
    text = get_task("Abs").path.read_text()
    assert field in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(field, replacement, 1))
    with pytest.raises(TaskError) as error:
        load_task(bad)
    assert str(bad) in str(error.value) and message in str(error.value)


def test_one_bad_file_never_hides_the_others(tmp_path):
    (tmp_path / "good.toml").write_text(get_task("Abs").path.read_text())
    (tmp_path / "broken.toml").write_text("name = [unclosed")
    (tmp_path / "other.toml").write_text(get_task("Neg").path.read_text())
    tasks, errors = load_suite(tmp_path)
    assert sorted(t.name for t in tasks) == ["Abs", "Neg"]
    assert len(errors) == 1 and "broken.toml" in errors[0] and "not valid TOML" in errors[0]


def test_draws_are_seeded_and_follow_the_expression():
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    a = draw("2.0 * rand - 1.0", (1000,), "float32", rng_a)
    assert np.array_equal(a, draw("2.0 * rand - 1.0", (1000,), "float32", rng_b))
    assert a.min() >= -1 and a.max() < 1 and a.dtype == np.float32
    mask = draw("rand > 0.5", (1000,), "bool", rng_a)
    assert mask.dtype == bool and 300 < mask.sum() < 700
    ints = draw("randint(0, 64)", (1000,), "int64", rng_a)
    assert ints.min() >= 0 and ints.max() < 64
    with pytest.raises(ValueError):
        check_expression("open('x')")


def test_timing_and_check_sets_differ_but_are_reproducible():
    task = get_task("Softmax")
    timing, check = draw_inputs(task, "timing"), draw_inputs(task, "check0")
    assert not np.array_equal(timing["x"], check["x"])
    assert np.array_equal(check["x"], draw_inputs(task, "check0")["x"])


def test_reference_has_the_declared_shapes():
    for name in ["Abs", "Conv", "TopK_indices", "Unique_sorted_with_axis", "Stft", "LSTM"]:
        task = get_task(name)
        outputs = reference_outputs(task, draw_inputs(task), build_model(task))
        for spec in task.outputs:
            assert outputs[spec.name].shape == spec.shape, (name, spec.name)
            assert str(outputs[spec.name].dtype) == spec.dtype, (name, spec.name)
