"""The runner's command line (mnn/runner/runner.cpp, linked once per native build and once per
runner candidate): one function, so every caller runs it the same way."""

from __future__ import annotations


def runner_argv(runner: str, model: str, sets: str, out: str, warmup: int, iterations: int | None, rotate: int, seed: int,
                config: dict, until_stopped: int | None = None) -> list[str]:
    """argv for one run: the model, the folder of input sets (the first `rotate` are timed), where
    outputs go, the warm-up runs, then N timed runs (`iterations`) or timed runs until the guard's
    stop flag (`until_stopped`: at most that many), the perturbation seed, and the run settings
    (threads, precision, MNN hints) of tasks.artifacts.run_settings. Every run of an evaluation has
    this shape."""
    count = ["--iterations", str(iterations)] if until_stopped is None else ["--until-stopped", str(until_stopped)]
    argv = [runner, "--model", model, "--sets", sets, "--out", out, "--warmup", str(warmup), *count,
            "--rotate", str(rotate), "--perturb", str(seed), "--threads", str(config["threads"]), "--precision", config["precision"]]
    for name, value in sorted(config["hints"].items()):
        argv += ["--hint", f"{name}={value}"]
    return argv
