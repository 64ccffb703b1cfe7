"""The runner's command line (mnn/runner/runner.cpp, linked once per native build and once per
runner candidate): one function, so every caller runs it the same way."""

from __future__ import annotations


def runner_argv(runner: str, model: str, inputs: str, out: str, warmup: int, iterations: int, config: dict) -> list[str]:
    """argv for one run: the model, its input sets, where outputs go, the warm-up and timed
    iterations, and the run settings (threads, precision, MNN hints) of tasks.artifacts.run_settings."""
    argv = [runner, "--model", model, "--inputs", inputs, "--out", out,
            "--warmup", str(warmup), "--iterations", str(iterations), "--threads", str(config["threads"]),
            "--precision", config["precision"]]
    for name, value in sorted(config["hints"].items()):
        argv += ["--hint", f"{name}={value}"]
    return argv
