"""Conversion and a whole evaluation make no network attempt (MNN-NOTES: the wheel's `MNN.tools`
pip-installs a logging SDK and uploads usage logs; mkbench must never reach it).

Each command runs in a network namespace with no interfaces (`unshare -n`: an attempt fails instead
of leaking) under `strace -f -e trace=connect`, and the test asserts that no process connected, or
tried to, to an AF_INET/AF_INET6 address. Local (AF_UNIX) sockets are allowed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from mkbench import settings as settings_module
from mkbench.tasks import get_task
from mkbench.tasks import model as task_model

pytestmark = pytest.mark.slow

ABS_EXAMPLE = settings_module.SHIPPED / "mnn" / "examples" / "abs_candidate.cpp"


def _sandbox_problem() -> str | None:
    """Why `unshare -n strace ...` cannot run here (None when it can)."""
    for tool in ("unshare", "strace"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {'util-linux' if tool == 'unshare' else 'strace'})"
    probe = subprocess.run(["unshare", "-n", "strace", "-f", "-qq", "-e", "trace=connect", "-o", "/dev/null", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot run unshare -n + strace here (needs root or CAP_SYS_ADMIN and ptrace): {probe.stderr.strip()[:200]}"
    return None


@pytest.fixture
def sandbox():
    problem = _sandbox_problem()
    if problem:
        pytest.skip(problem)


def run_offline(argv: list[str], trace: Path, timeout: float) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run argv with no network and every connect() traced; returns the result and the AF_INET(6) connects."""
    command = ["unshare", "-n", "strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect", "-o", str(trace), *argv]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    connects = [line for line in trace.read_text().splitlines() if "AF_INET" in line]  # AF_INET6 too
    return result, connects


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def test_the_probe_sees_a_connect(sandbox, tmp_path):
    """The check itself works: a real connect attempt is seen (and fails: there is no network)."""
    code = "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=2)\nexcept OSError:\n    pass\n"
    _, connects = run_offline(python(code), tmp_path / "trace", 60)
    assert connects and "192.0.2.1" in connects[0]


def test_conversion_makes_no_network_attempt(sandbox, mnn_settings, tmp_path):
    from mkbench.mnn import converter_build as converter

    converter.build_converter(mnn_settings)  # outside the sandbox: a first build is not what is tested
    onnx_path = tmp_path / "task.onnx"
    onnx.save(task_model.build_model(get_task("Softplus_2d")), onnx_path)
    code = ("import sys\nfrom pathlib import Path\nfrom mkbench import settings\n"
            "from mkbench.mnn.conversion import convert, converted_ops\n"
            "tool = sys.argv[3] if len(sys.argv) > 3 else None\ns = settings.load()\n"
            "convert(Path(sys.argv[1]), Path(sys.argv[2]), s, tool)\nconverted_ops(Path(sys.argv[2]), s, tool)\n")
    for name, extra in (("tree", []), ("wheel", ["wheel"])):
        result, connects = run_offline(python(code, str(onnx_path), str(tmp_path / f"{name}.mnn"), *extra),
                                       tmp_path / f"{name}.trace", 600)
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
        assert (tmp_path / f"{name}.mnn").is_file()
        assert connects == [], f"{name} conversion tried the network: {connects[:3]}"


def test_evaluation_makes_no_network_attempt(sandbox, mnn_settings, tmp_path):
    from mkbench.mnn import build
    from mkbench.mnn import converter_build as converter

    # The builds are shared and slow; make sure they exist before the sandboxed run.
    build.build_native("host", mnn_settings)
    converter.build_converter(mnn_settings)
    argv = python("import sys\nfrom mkbench.cli import main\nsys.exit(main())",
                  "eval", "--task", "Abs", "--kernel", str(ABS_EXAMPLE), "--device", "host")
    result, connects = run_offline(argv, tmp_path / "eval.trace", 1800)
    assert result.returncode == 0, f"eval failed offline: {(result.stdout + result.stderr)[-2000:]}"
    assert connects == [], f"the evaluation tried the network: {connects[:3]}"
