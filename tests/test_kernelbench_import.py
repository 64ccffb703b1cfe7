"""`mkbench tasks import`: KernelBench-format task files become mkbench tasks.

Good files are the paper tasks' own modules ([torch] of Abs, Softmax, Dense_Convolution_2D,
MatMul), laid out as a folder of category folders, plus one whose inputs cannot be read
from its source (they are stored); the tasks produced must match the built-in paper tasks
in operator, attributes, shapes, draws and tolerance. Broken files (syntax error, no
get_inputs, wrong arity, no single operator, a forward that never returns, a package this
machine lacks) each get a one-line error while the others still import; importing again gives
byte-identical files; without torch the command says so in one line. A file imported by itself
takes its folder's category and lands in the data folder, where `mkbench tasks` finds it. A
file that reaches for the network or writes outside its folder while it is imported gets
nowhere (the same file outside the jail does both), and the files beside it still import.
Every published file of the paper, imported and compared with its built-in twin:
test_kernelbench_published.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from mkbench.cli import main
from mkbench.run.config import RunConfig, select_tasks
from mkbench.tasks import get_task, task_roots
from mkbench.tasks.kernelbench import SMALL_CONSTANT, import_files
from mkbench.tasks.model import build_model, draw_inputs, reference_outputs
from mkbench.tasks.spec import load_suite, load_task

PAPER = Path(__file__).resolve().parents[1] / "tasks" / "paper"
BUILT_IN = {t.name: t for t in load_suite(PAPER, "paper")[0]}
GOOD = {"Unary": ["Abs"], "Activation": ["Softmax"], "Convolution": ["Dense_Convolution_2D"], "Matrix": ["MatMul"]}

pytestmark = pytest.mark.torch  # CI runs these where torch is installed, outside the appliance image

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed (pip install 'mkbench[torch]', CPU build): "
                                        "importing task files runs them with torch")

HEADER = "import torch\nimport torch.nn as nn\n\n\n"
BROKEN = {
    "syntax_error.py": HEADER + "class Model(nn.Module:\n    pass\n",
    "no_get_inputs.py": HEADER + textwrap.dedent("""\
        class Model(nn.Module):
            def forward(self, x):
                return torch.relu(x)


        def get_init_inputs():
            return []
        """),
    "wrong_arity.py": HEADER + textwrap.dedent("""\
        class Model(nn.Module):
            def forward(self, a, b):
                return a + b


        def get_inputs():
            return [torch.rand(4, 4)]


        def get_init_inputs():
            return []
        """),
    "no_single_operator.py": HEADER + textwrap.dedent("""\
        class Model(nn.Module):
            def forward(self, x):
                return torch.relu(x) + torch.sigmoid(x)


        def get_inputs():
            return [torch.randn(8, 16)]


        def get_init_inputs():
            return []
        """),
}
FOREVER = HEADER + textwrap.dedent("""\
    class Model(nn.Module):
        def forward(self, x):
            while True:
                x = x + 1


    def get_inputs():
        return [torch.rand(4)]


    def get_init_inputs():
        return []
    """)
# KernelBench style (module-level sizes), inputs drawn in a way no draw expression states.
STORED = HEADER + textwrap.dedent("""\
    batch_size = 16
    dim = 64


    class Model(nn.Module):
        def __init__(self, negative_slope):
            super().__init__()
            self.negative_slope = negative_slope

        def forward(self, x):
            return torch.nn.functional.leaky_relu(x, self.negative_slope)


    def get_inputs():
        x = torch.randn(batch_size, dim).abs().sqrt() - 0.5
        return [x]


    def get_init_inputs():
        return [0.2]
    """)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kernelbench")
    for category, names in GOOD.items():
        (root / "tasks" / category).mkdir(parents=True)
        for name in names:
            (root / "tasks" / category / f"{name}.py").write_text(BUILT_IN[name].torch_module)
    (root / "tasks" / "Activation" / "LeakyRelu_stored.py").write_text(STORED)
    (root / "broken").mkdir()
    for name, text in BROKEN.items():
        (root / "broken" / name).write_text(text)
    (root / "forever.py").write_text(FOREVER)
    return root


@pytest.fixture(scope="module")
def imported(files) -> tuple[Path, object]:
    """One CLI run over the category folders and the folder of broken files."""
    out = files / "out"
    result = CliRunner().invoke(main, ["tasks", "import", str(files / "tasks"), str(files / "broken"),
                                       "--out", str(out), "--workers", "2"])
    return out, result


def lines_by_file(output: str) -> dict[str, str]:
    lines = output.strip().splitlines()
    return {Path(line.split(": ", 1)[0]).name: line for line in lines}


@needs_torch
def test_each_file_gets_one_line_and_broken_ones_do_not_stop_the_others(files, imported):
    out, result = imported
    assert result.exit_code == 1, result.output  # some files failed
    lines = lines_by_file(result.output)
    assert len(result.output.strip().splitlines()) == 5 + len(BROKEN)
    for category, names in GOOD.items():
        for name in names:
            assert f"{category}/{name} (" in lines[f"{name}.py"] and "-> " in lines[f"{name}.py"], lines[f"{name}.py"]
            assert (out / category / f"{name}.toml").is_file()
    assert "inputs stored" in lines["LeakyRelu_stored.py"]
    assert lines["syntax_error.py"].endswith(": syntax error at line 5: invalid syntax")
    assert lines["no_get_inputs.py"].endswith(": missing get_inputs()")
    assert lines["wrong_arity.py"].endswith(": get_inputs() returns 1 tensors but Model.forward takes 2")
    assert lines["no_single_operator.py"].endswith(
        ": the export has 3 nodes computing on the inputs (Relu, Sigmoid, Add) and no single operator doing the work "
        "(Relu, Sigmoid): a kernel would not know what it replaces")
    for name in BROKEN:
        assert lines[name].startswith(str(files / "broken" / name) + ": ")
    assert not (out / "Imported").exists() or not list((out / "Imported").glob("*.toml"))


@needs_torch
@pytest.mark.parametrize("name", [n for names in GOOD.values() for n in names])
def test_imported_task_matches_the_built_in_one(files, imported, name):
    out, _ = imported
    built_in = BUILT_IN[name]
    task = load_task(out / built_in.category / f"{name}.toml")
    assert (task.suite, task.category, task.name, task.opset) == ("imported", built_in.category, name, 20)
    source_file = files / "tasks" / built_in.category / f"{name}.py"
    assert task.source == f"{built_in.category}/{name}.py sha256:{hashlib.sha256(source_file.read_bytes()).hexdigest()}"
    assert task.torch_module == source_file.read_text()

    assert task.operator == built_in.operator
    (node,) = task.nodes
    reference_node = next(n for n in built_in.nodes if n.op == built_in.operator)
    assert node.op == reference_node.op
    assert node.attributes.keys() == reference_node.attributes.keys()
    for key, value in reference_node.attributes.items():
        assert node.attributes[key] == pytest.approx(value), key
    assert [(i.shape, i.dtype, i.draw) for i in task.inputs] == [(i.shape, i.dtype, i.draw) for i in built_in.inputs]
    assert [(o.shape, o.dtype) for o in task.outputs] == [(o.shape, o.dtype) for o in built_in.outputs]
    assert {c.name: c.shape for c in task.constants} == {c.name: c.shape for c in built_in.constants}
    assert task.tolerance == built_in.tolerance

    # the module's own weights: data files beside the spec, small ones as values; the task builds and runs
    for constant in task.constants:
        if constant.size > SMALL_CONSTANT:
            assert constant.file == task.path.parent / f"{name}.{constant.name}.npy" and constant.value is None
        else:
            assert constant.value is not None and constant.file is None
    outputs = reference_outputs(task, draw_inputs(task, "check0"), build_model(task))
    assert [outputs[o.name].shape for o in task.outputs] == [o.shape for o in task.outputs]


@needs_torch
def test_inputs_that_cannot_be_read_are_stored(files, imported):
    out, _ = imported
    task = load_task(out / "Activation" / "LeakyRelu_stored.toml")
    assert task.operator == "LeakyRelu" and task.nodes[0].attributes["alpha"] == pytest.approx(0.2)
    assert task.init_args == "negative_slope=0.2"
    (x,) = task.inputs
    assert x.draw is None and x.file.name == "LeakyRelu_stored.x.npy" and x.shape == (16, 64)
    stored = np.load(x.file)
    assert np.array_equal(draw_inputs(task, "timing")["x"], stored)
    assert np.array_equal(draw_inputs(task, "check0")["x"], stored)
    assert stored.min() >= -0.5  # the file's own draw: sqrt(|randn|) - 0.5
    # a changed data file is caught
    tampered = files / "tampered"
    tampered.mkdir()
    for f in (out / "Activation").glob("LeakyRelu_stored*"):
        (tampered / f.name).write_bytes(f.read_bytes())
    np.save(tampered / "LeakyRelu_stored.x.npy", stored + 1)
    with pytest.raises(Exception, match="sha256"):
        draw_inputs(load_task(tampered / "LeakyRelu_stored.toml"))


@needs_torch
def test_importing_again_gives_byte_identical_files(files, imported, settings):
    out, _ = imported
    again = files / "again"
    results = import_files([files / "tasks"], settings, again, workers=2)
    assert all(r.ok for r in results), [r.line for r in results]
    first = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    second = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert first == second and any(p.suffix == ".npy" for p in first)
    for relative in first:
        assert (out / relative).read_bytes() == (again / relative).read_bytes(), relative


@needs_torch
def test_a_module_that_never_returns_is_stopped_with_its_whole_jail(files, settings):
    start = time.monotonic()
    (result,) = import_files([files / "forever.py"], settings, files / "out-forever", timeout=5)
    assert time.monotonic() - start < 30
    assert result.line == f"{files / 'forever.py'}: module did not return within 5 s"
    time.sleep(1)  # the jail's processes die with bwrap (--die-with-parent), not necessarily at once
    assert not [pid for pid, line in processes() if "kernelbench_child" in line and "forever.py" in line]


def processes() -> list[tuple[int, str]]:
    """(pid, command line) of every process of this machine."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")))
        except (ValueError, OSError):
            continue
    return found


def test_without_torch_the_command_says_so_in_one_line(tmp_path):
    """The child runs with a `torch` that cannot be imported (a stand-in package on
    PYTHONPATH that raises ImportError), as on a machine without the extra."""
    hidden = tmp_path / "no-torch" / "torch"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named torch (hidden by the test)')\n")
    task_file = tmp_path / "Abs.py"
    task_file.write_text(BUILT_IN["Abs"].torch_module)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hidden.parent), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-m", "mkbench.cli", "tasks", "import", str(task_file), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "mkbench: torch is not installed: pip install 'mkbench[torch]' (CPU build) to import task files"]
    assert not (tmp_path / "out").exists()


def module(forward: str, inputs: str, args: str = "x") -> str:
    """A KernelBench-format file: forward(self, <args>) returns <forward>; get_inputs returns [<inputs>]."""
    return HEADER + textwrap.dedent(f"""\
        class Model(nn.Module):
            def forward(self, {args}):
                return {forward}


        def get_inputs():
            return [{inputs}]


        def get_init_inputs():
            return []
        """)


@needs_torch
def test_a_file_by_itself_takes_its_folders_category_and_lands_where_tasks_are_found(files, settings):
    (files / "loose").mkdir(exist_ok=True)
    (files / "loose" / "Abs.py").write_text(BUILT_IN["Abs"].torch_module)
    result = CliRunner().invoke(main, ["tasks", "import", str(files / "tasks" / "Activation" / "Softmax.py"),
                                       str(files / "loose" / "Abs.py")])
    assert result.exit_code == 0, result.output
    imported = settings.home / "tasks" / "imported"
    assert (imported / "Activation" / "Softmax.toml").is_file()  # the folder is one of the paper's categories
    assert (imported / "Imported" / "Abs.toml").is_file()  # "loose" is not
    assert not (Path(__file__).resolve().parents[1] / "tasks" / "imported").exists()  # nothing in the source tree

    listed = CliRunner().invoke(main, ["tasks", "list", "--suite", "imported", "--json"])
    assert sorted((r["name"], r["category"]) for r in json.loads(listed.output)) == [("Abs", "Imported"), ("Softmax", "Activation")]
    assert get_task("imported:Softmax", task_roots(settings)).path == imported / "Activation" / "Softmax.toml"
    assert get_task("Softmax", task_roots(settings)).suite == "paper"  # the built-in one first
    config = dataclasses.replace(RunConfig(), suite="imported", tasks=("Softmax",))
    assert [(t.suite, t.name) for t in select_tasks(config, settings)] == [("imported", "Softmax")]


@needs_torch
def test_forward_inputs_named_like_the_output_are_kept(tmp_path, settings):
    """KernelBench's files often take forward(self, x, y): the graph's output must not be named y
    (Mul_bcast lost its y; BitwiseOr, exported by torch.export, named two tensors y)."""
    (tmp_path / "Binary").mkdir()
    (tmp_path / "Binary" / "Mul_xy.py").write_text(module("torch.mul(x, y)", "torch.randn(8, 64, 64), torch.randn(64)", "x, y"))
    (tmp_path / "Binary" / "BitwiseOr_xy.py").write_text(module(
        "torch.bitwise_or(x, y)", "torch.randint(0, 256, (8, 16), dtype=torch.int32), "
                                  "torch.randint(0, 256, (8, 16), dtype=torch.int32)", "x, y"))
    results = import_files([tmp_path / "Binary"], settings, tmp_path / "out", workers=2)
    assert all(r.ok for r in results), [r.line for r in results]
    for result, op in zip(results, ["BitwiseOr", "Mul"]):
        task = load_task(result.task_path)
        assert [i.name for i in task.inputs] == ["x", "y"] and task.category == "Binary"
        assert [(n.op, n.inputs) for n in task.nodes] == [(op, ("x", "y"))]
        assert [o.name for o in task.outputs] == ["out"]


@needs_torch
@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed here")
def test_a_file_that_needs_a_package_this_machine_lacks_is_refused_in_one_line(tmp_path, settings):
    path = tmp_path / "ROIAlign.py"
    path.write_text("import torchvision\n" + BUILT_IN["Abs"].torch_module)
    (result,) = import_files([path], settings, tmp_path / "out")
    assert result.line == (f"{path}: the file needs the Python package torchvision, which is not installed here "
                           "(No module named 'torchvision')")


ESCAPING = HEADER + textwrap.dedent("""\
    import socket
    from pathlib import Path

    HOST, PORT, MARKERS = {host!r}, {port}, {markers!r}


    def escape():
        try:
            with socket.create_connection((HOST, PORT), timeout=2) as connection:
                connection.sendall(b"out")
        except OSError:
            pass
        for marker in MARKERS:
            try:
                Path(marker).parent.mkdir(parents=True, exist_ok=True)
                Path(marker).write_text("out")
            except OSError:
                pass


    class Model(nn.Module):
        def forward(self, x):
            escape()
            return torch.relu(x)


    def get_inputs():
        escape()
        return [torch.randn(4, 8)]


    def get_init_inputs():
        return []
    """)


@needs_torch
@pytest.mark.parametrize("jailed", [True, False], ids=["jailed", "unjailed"])
def test_a_file_that_reaches_out_during_import_gets_nowhere(tmp_path, settings, jailed):
    """The file connects to a server on this machine's loopback and writes beside itself, into
    /tmp, into the home folder and into MKBENCH_HOME. In the jail none of it arrives and the
    file beside it still imports; unjailed (MKBENCH_SANDBOX=off), all of it does, which shows
    the probes work."""
    tag = os.urandom(6).hex()
    markers = [tmp_path / "tasks" / f"beside-{tag}", Path("/tmp") / f"mkbench-escape-{tag}",
               Path.home() / f".mkbench-escape-{tag}", settings.home / f"escape-{tag}"]
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        (tmp_path / "tasks").mkdir()
        (tmp_path / "tasks" / "Escaping.py").write_text(ESCAPING.format(host="127.0.0.1", port=server.getsockname()[1],
                                                                       markers=[str(m) for m in markers]))
        (tmp_path / "tasks" / "Abs.py").write_text(BUILT_IN["Abs"].torch_module)
        try:
            results = import_files([tmp_path / "tasks"], dataclasses.replace(settings, sandbox=jailed),
                                   tmp_path / "out", workers=2)
            connections = []
            while True:
                try:
                    connections.append(server.accept()[0].recv(16))
                except TimeoutError:
                    break
            reached = [m for m in markers if m.exists()]
        finally:
            for marker in markers:
                marker.unlink(missing_ok=True)
    assert all(r.ok for r in results), [r.line for r in results]  # Abs beside it imports
    if jailed:
        assert connections == [] and reached == []
    else:
        assert connections and set(reached) == set(markers)


@needs_torch
def test_a_file_that_leaves_a_link_for_the_importer_to_read_is_refused(tmp_path, settings):
    """The parent reads the child's files as root: one swapped for a link at exit is not followed."""
    path = tmp_path / "Linked.py"
    path.write_text("import atexit\nimport os\n\n" + textwrap.dedent("""\
        def swap():
            os.remove("outputs.npz")
            os.symlink("/etc/hostname", "outputs.npz")


        atexit.register(swap)
        """) + BUILT_IN["Abs"].torch_module)
    (result,) = import_files([path], settings, tmp_path / "out")
    assert result.line == f"{path}: the import process left outputs.npz as something other than a plain file"
