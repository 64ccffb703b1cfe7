"""One task's files on one device, and its runs: what evaluate() (native against candidate) and
selftest (native against native) share."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..devices import Device, DeviceLost, RunResult
from ..mnn.runner import runner_argv
from . import timing

TARGET_RUN_MS = 300.0  # work per timed run on a real device: more narrows the noise
MIN_RUN_TIMEOUT = 60.0  # seconds a run may take before the kernel is judged never to return
HOT_CELSIUS = 50.0  # above this (any thermal zone) a phone cools down before the next timed run
COOL_DOWN_SECONDS = 120.0  # the longest wait for it


def target_of(device: Device) -> str:
    """The build target that runs on a device."""
    return "host" if device.abi == "x86_64" else "arm64"


def run_failure(result: RunResult, side: str) -> tuple[str, str] | None:
    """(verdict, reason) for a run that did not finish cleanly, else None."""
    if result.timed_out:
        return "timeout", f"the {side} run did not return within {result.seconds:.0f} s"
    if result.signal:
        return "crash", f"the {side} run was killed by signal {result.signal}"
    if result.exit_code != 0:
        last = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or [""])[-1]
        return "crash", f"the {side} runner exited with {result.exit_code}: {last[:200]}"
    return None


class DeviceSession:
    """One task's files on one device: runners, model and inputs pushed once, runs numbered.

    Shared by evaluate() (native vs candidate) and selftest (native vs native).
    """

    def __init__(self, device: Device, artifacts, runners: dict[str, Path], config: dict, name: str, local: Path,
                 models: dict[str, Path] | None = None):
        """models: a .mnn per label where the sides run different models (a composite candidate's
        converter makes its own); by default every side runs the task's model."""
        self.device, self.artifacts, self.config, self.local = device, artifacts, config, local
        self.workdir = device.workdir(name)
        self.counter: dict[str, int] = {}
        self.models = {label: "task.mnn" for label in runners}
        for label, path in runners.items():
            device.push(path, f"{self.workdir}/{label}_runner")
        device.push(artifacts.mnn_model, f"{self.workdir}/task.mnn")
        for label, path in (models or {}).items():
            self.models[label] = f"{label}.mnn"
            device.push(path, f"{self.workdir}/{label}.mnn")
        for path in sorted(artifacts.inputs.rglob("*.npy")):
            device.push(path, f"{self.workdir}/inputs/{path.relative_to(artifacts.inputs).as_posix()}")
        # The same timing inputs without the correctness sets, for runs that are only timed.
        for path in sorted((artifacts.inputs / "timing").glob("*.npy")):
            device.push(path, f"{self.workdir}/timing_inputs/timing/{path.name}")

    def run(self, label: str, warmup: int, iterations: int, timeout: float,
            check: bool = False) -> tuple[RunResult, dict | None, Path]:
        """Run one runner (with the correctness sets when check=True); on success pull its
        outputs and report into a local folder."""
        index = self.counter.get(label, 0)
        self.counter[label] = index + 1
        out = f"{self.workdir}/out-{label}-{index}"
        inputs = f"{self.workdir}/{'inputs' if check else 'timing_inputs'}"
        argv = runner_argv(f"{self.workdir}/{label}_runner", f"{self.workdir}/{self.models[label]}", inputs, out, warmup,
                           iterations, self.config)
        before = self.cool_down()
        result = self.device.run(argv, cwd=self.workdir, timeout=timeout)
        after = self.device.read_state()
        target = self.local / f"{label}-{index}"
        report = None
        if result.exit_code == 0 and not result.timed_out:
            self.device.pull(out, target)
            report_path = target / "report.json"
            report = json.loads(report_path.read_text()) if report_path.exists() else None
            if report is not None:
                report["device_state"] = {"before": before, "after": after}
        return result, report, target

    def cool_down(self) -> dict:
        """Wait while the device is hot (TVM's habit: phones throttle near 90 °C); returns
        the state the run starts from."""
        waited = 0.0
        state = self.device.read_state()
        while _hottest(state) >= HOT_CELSIUS and waited < COOL_DOWN_SECONDS and not self.device.emulated:
            time.sleep(5.0)
            waited += 5.0
            state = self.device.read_state()
        if waited:
            state = {**state, "cooled_down_seconds": waited}
        return state

    def calibrate(self, label: str = "native") -> tuple[int, int, float]:
        """(warmup, iterations, timeout) so one timed run does about TARGET_RUN_MS of work.

        Emulated devices run once, untimed: their timings are never reported."""
        if self.device.emulated:
            return 0, 1, 3600.0
        probe, report, _ = self.run(label, 1, 3, timeout=600)
        failure = run_failure(probe, label)
        if failure or report is None:
            raise RuntimeError(f"native MNN failed: {failure[1] if failure else 'the runner wrote no report'}")
        per_iteration = max(min(report["times_ms"]), 1e-3)
        iterations = timing.iterations_for(per_iteration, TARGET_RUN_MS)
        warmup = max(2, iterations // 10)
        return warmup, iterations, max(MIN_RUN_TIMEOUT, 20 * probe.seconds * max(1, iterations / 3))

    def close(self) -> None:
        try:
            self.device.remove(self.workdir)
        except DeviceLost:
            raise
        except Exception:
            pass


def _hottest(state: dict) -> float:
    temperatures = [t for t in (state.get("temperatures_c") or {}).values() if isinstance(t, (int, float))]
    return max(temperatures, default=0.0)


