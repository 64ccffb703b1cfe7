"""run-all: selection, the queue per device, resume after kill -9, lost devices, provenance.

The generators here are stubs defined in this file (fast and deterministic) and registered the
way any generator is, through run.GENERATORS; the devices are the real host, or stub devices
where a test needs a device to vanish.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mkbench import run, store
from mkbench import settings as settings_module
from mkbench.store import rows
from mkbench.agents import AttemptResult
from mkbench.cli import main
from mkbench.devices import DeviceLost, DeviceNotFound, store_device
from mkbench.judge.verdict import Verdict
from mkbench.llm.chat import Message



# ---------------------------------------------------------------- stub generators


class FixedVerdict:
    """Returns a verdict without judging: correct at 1.25x, except tasks named in `wrong`.
    Optionally records an evaluation row mid-attempt (as the judge would) and sleeps."""

    def __init__(self, name: str = "stub", mode: str = "whole-file", sleep: float = 0.0, record: bool = False,
                 wrong: tuple[str, ...] = (), device_calls: bool = False):
        self.name, self.mode, self.sleep, self.record, self.wrong, self.device_calls = name, mode, sleep, record, wrong, device_calls

    def solve(self, task, device, chat, budget, row) -> AttemptResult:
        started = time.monotonic()
        evaluation_id = None
        if self.device_calls:
            device.run(["true"], cwd=".", timeout=10)  # a stub device raises DeviceLost here
        if self.record:
            evaluation_id = rows.record_evaluation(row.db, {
                "run_id": row.run_id, "task": task.name, "task_sha256": task.sha256, "kind": "cpu-execution",
                "device_id": store_device(row.db, device), "candidate_sha256": "0" * 64, "candidate": "// stub",
                "verdict": "correct", "reason": "", "speedup": 1.25, "timing_reportable": int(not device.emulated),
                "judge_settings": {}, "stage_seconds": {}, "flags": []})
        time.sleep(self.sleep)
        correct = task.name not in self.wrong
        verdict = Verdict("correct" if correct else "wrong-values", "", task.name, device.serial, True, correct,
                          speedup=1.25 if correct else None, timing_reportable=correct, evaluation_id=evaluation_id)
        return AttemptResult(task.name, self.name, self.mode, device.serial, None, (verdict,), verdict, 0, 0, 0,
                             time.monotonic() - started, "solved" if correct else "rounds")


class Chatty(FixedVerdict):
    """Asks the model once per task (a replay backend answers) and keeps the answer's length."""

    def solve(self, task, device, chat, budget, row) -> AttemptResult:
        answer = chat([Message("user", f"write {task.name}")], seed=1, max_tokens=64)
        result = super().solve(task, device, chat, budget, row)
        return AttemptResult(**{**result.__dict__, "llm_calls": 1, "prompt_tokens": 7, "completion_tokens": len(answer.text)})


class Broken(FixedVerdict):
    def solve(self, task, device, chat, budget, row) -> AttemptResult:
        raise RuntimeError("the MNN tree is missing")


@pytest.fixture
def generators(monkeypatch):
    """Register stub generators for one test; returns the register function."""
    added = []

    def add(name: str, make, uses_llm: bool = False) -> None:
        added.append(name)
        run.register(name, make, uses_llm=uses_llm)

    yield add
    for name in added:
        run.GENERATORS.pop(name, None)


def quiet():
    return run.Progress(stream=open(os.devnull, "w"), quiet=True)


def items_of(db, run_id):
    return [(a["task"], a["generator"], a["mode"], a["device_id"], a["status"])
            for a in db.query("SELECT * FROM attempts WHERE run_id = ? ORDER BY id", [run_id])]


# ---------------------------------------------------------------- selection


def test_config_file_then_flags(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('tasks = "smoke"\ngenerators = ["one-shot", "moka"]\ndevices = ["host"]\n[budget]\nrounds = 3\n')
    config = run.RunConfig.build(path, {"devices": "host,emulator", "pool": None})
    assert config.tasks == ("smoke",) and config.generators == ("one-shot", "moka")
    assert config.devices == ("host", "emulator") and config.budget == {"rounds": 3} and config.pool is False
    with pytest.raises(run.RunError, match="unknown run setting taks"):
        run.RunConfig.build(None, {"taks": "smoke"})
    with pytest.raises(run.RunError, match="unknown generator"):
        run.RunConfig.build(None, {"generators": ["two-shot"]})
    with pytest.raises(run.RunError, match="budget takes"):
        run.RunConfig.build(None, {"budget": {"round": 3}})
    assert run.RunConfig().key() == run.RunConfig(workers_per_device=2).key() != run.RunConfig(tasks=("smoke",)).key()


def test_every_published_run_config_selects_judgeable_tasks(settings):
    """The README's run commands name these files: each must load and select what it says."""
    configs = sorted((Path(__file__).parents[1] / "tasks" / "runs").glob("*.toml"))
    assert configs
    for path in configs:
        config = run.RunConfig.build(path)
        tasks = run.select_tasks(config, settings)
        assert tasks and len(tasks) == len(config.tasks), path.name


def test_smoke_subset_is_judgeable_and_spans_single_and_multi_op_tasks(settings):
    tasks = run.select_tasks(run.RunConfig(tasks=("smoke",)), settings)
    assert [t.name for t in tasks] == list(run.SMOKE)
    assert all(t.status.runnable and t.status.judgeable is not False for t in tasks)
    assert {t.mnn.kind for t in tasks} == {"cpu-execution", "composite", "geometry"}
    assert len({t.category for t in tasks}) == len(tasks)
    default = run.select_tasks(run.RunConfig(), settings)
    assert len(default) > 150 and all(run.judgeable(t) for t in default)
    with pytest.raises(run.RunError, match="not judgeable"):
        run.select_tasks(run.RunConfig(tasks=("Det",)), settings)  # not runnable: its reference overflows fp32
    unary = run.select_tasks(run.RunConfig(categories=("unary",)), settings)
    assert unary and {t.category for t in unary} == {"Unary"}
    with pytest.raises(run.RunError, match="no task Nope"):
        run.select_tasks(run.RunConfig(tasks=("Sin", "Nope")), settings)


# ---------------------------------------------------------------- a run, and the same command again


def test_a_run_is_not_resumed_with_other_prompts_or_generator_code(generators, monkeypatch, settings):
    generators("stub", lambda mode, config, settings: FixedVerdict(mode=mode))
    first = run.run_all(run.RunConfig(tasks=("Sin",), generators=("stub",), devices=("host",)), settings, progress=quiet())
    assert run.resume(first.run_id, settings, progress=quiet()).done_now == 0  # same code: nothing to do, no complaint
    monkeypatch.setattr(run.start, "generators_fingerprint", lambda: "0" * 64)
    with pytest.raises(run.RunError, match="generators' code or prompts changed"):
        run.resume(first.run_id, settings, progress=quiet())


def test_run_all_finishes_then_the_same_command_redoes_nothing(generators, settings):
    generators("stub", lambda mode, config, settings: FixedVerdict(mode=mode, wrong=("CumSum",)))
    config = run.RunConfig(tasks=("smoke",), generators=("stub",), devices=("host",))
    first = run.run_all(config, settings, progress=quiet())
    assert (first.status, first.planned, first.finished, first.done_now, first.pending) == ("finished", 6, 6, 6, 0)
    again = run.run_all(config, settings, progress=quiet())
    assert again.run_id == first.run_id and again.done_now == 0 and again.status == "finished"
    db = store.open_db(settings.db_path)
    assert len(items_of(db, first.run_id)) == 6
    other = run.run_all(config, settings, new=True, progress=quiet())
    assert other.run_id != first.run_id and other.done_now == 6
    infos = run.list_runs(settings)
    assert {i.id for i in infos} == {first.run_id, other.run_id} and all(i.finished == 6 for i in infos)


def test_provenance_is_recorded(generators, settings):
    generators("stub", lambda mode, config, settings: FixedVerdict(mode=mode))
    summary = run.run_all(run.RunConfig(tasks=("Sin",), generators=("stub",)), settings, progress=quiet())
    shown = run.show_run(summary.run_id, settings)
    prov = shown["provenance"]
    assert prov["mkbench_version"] and prov["mnn"]["commit"] == settings_module.MNN_COMMIT
    assert prov["suite"]["hash"] == shown["suite_hash"] and prov["suite"]["tasks"] == 1
    assert "host" in prov["toolchains"] and "host" in prov["devices"]
    assert prov["devices"]["host"]["fingerprint"]["abi"] == "x86_64"
    assert prov["judge"]["threads"] == 1 and prov["model"] is None
    assert shown["config"]["tasks"][0] == {"name": "Sin", "category": "Trigonometry", "kind": "cpu-execution", "operator": "Sin"}
    assert shown["devices"][0]["status"] == "active"


def test_llm_calls_are_recorded_and_attached_to_their_attempts(generators, tmp_path, settings):
    replay = tmp_path / "answers.jsonl"
    replay.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"write {name}"}],
                                          "completion": f"```cpp\n// {name}\n```", "prompt_tokens": 7}) + "\n"
                              for name in run.SMOKE))
    generators("chatty", lambda mode, config, settings: Chatty("chatty", mode), uses_llm=True)
    summary = run.run_all(run.RunConfig(tasks=("smoke",), generators=("chatty",), model=f"replay:{replay}"),
                          settings, progress=quiet())
    db = store.open_db(settings.db_path)
    calls = list(db.query("SELECT llm_calls.attempt_id, attempts.task FROM llm_calls JOIN attempts ON attempts.id = llm_calls.attempt_id"))
    assert sorted(c["task"] for c in calls) == sorted(run.SMOKE)
    assert run.show_run(summary.run_id, settings)["provenance"]["model"]["backend"] == "replay"


# ---------------------------------------------------------------- kill -9 at any moment


KILLED_RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_run import FixedVerdict
    from mkbench import run
    from mkbench.cli import main
    run.register("sleepy", lambda mode, config, settings: FixedVerdict("sleepy", mode, sleep=0.25, record=True), uses_llm=False)
    run.register("sleepy2", lambda mode, config, settings: FixedVerdict("sleepy2", mode, sleep=0.1, record=True), uses_llm=False)
    main(["run-all", "--tasks", "smoke", "-g", "sleepy", "-g", "sleepy2", "--device", "host", "--quiet"])
""")


def test_killed_midway_and_rerun_loses_and_repeats_nothing(tmp_path, mkbench_home, settings):
    """kill -9 the run at random moments, re-run the same command until it finishes: every item
    has exactly one finished attempt and every row written before a kill is still there."""
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN.format(tests=str(Path(__file__).parent)))
    db_path = mkbench_home / "mkbench.sqlite"
    seen_attempts: dict[int, tuple] = {}
    seen_evaluations: set[int] = set()
    kills = 0
    for round_number in range(30):
        process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env=os.environ | {"MKBENCH_HOME": str(mkbench_home)})
        if round_number < 4:  # kill at a moment that moves: before, during and between items
            deadline = time.monotonic() + 0.6 + 0.45 * round_number
            while time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.02)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
        output = process.communicate(timeout=120)[0].decode()
        db = store.open_db(db_path)
        for a in db.query("SELECT * FROM attempts"):
            key = (a["task"], a["generator"], a["mode"], a["device_id"], a["status"], a["best_evaluation_id"])
            assert seen_attempts.setdefault(a["id"], key) == key  # nothing recorded changes or goes
        evaluations = {r["id"] for r in db.query("SELECT id FROM evaluations")}
        assert seen_evaluations <= evaluations
        seen_evaluations = evaluations
        assert set(seen_attempts) == {a["id"] for a in db.query("SELECT id FROM attempts")}
        if process.returncode == 0:
            break
        assert process.returncode == -signal.SIGKILL, output
    assert kills >= 2, "the run finished before it could be killed: make the stub slower"
    runs = list(db.query("SELECT id, status FROM runs"))
    assert len(runs) == 1 and runs[0]["status"] == "finished"
    finished = [(t, g, m, d) for t, g, m, d, s in items_of(db, runs[0]["id"]) if s == "finished"]
    assert len(finished) == len(set(finished)) == 12  # 6 tasks x 2 generators, each exactly once
    for a in db.query("SELECT best_evaluation_id FROM attempts WHERE status = 'finished'"):
        assert a["best_evaluation_id"] in evaluations
    # An attempt a kill cut short stays as it was, running: the CSV calls it cut short; the resume made a new one.
    assert {a["status"] for a in db.query("SELECT status FROM attempts")} <= {"finished", "running"}


TERMINATED_RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_run import FixedVerdict
    from mkbench import run
    from mkbench.cli import main
    run.register("slow", lambda mode, config, settings: FixedVerdict("slow", mode, sleep=1.5, record=True), uses_llm=False)
    main(["run-all", "--tasks", "Sin,Cos,Tan", "-g", "slow", "--device", "host", "--quiet"])
""")


def _attempts_begun(db_path: Path) -> bool:
    """Has a run begun an attempt? (read without migrating: the run's own process owns the schema)"""
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM attempts").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def test_sigterm_ends_a_run_the_way_ctrl_c_does(tmp_path, mkbench_home, settings):
    """`docker stop` sends SIGTERM: the item in progress finishes, the run stops resumable, and the
    same command finishes it with each item done exactly once."""
    script = tmp_path / "terminated_run.py"
    script.write_text(TERMINATED_RUN.format(tests=str(Path(__file__).parent)))
    env = os.environ | {"MKBENCH_HOME": str(mkbench_home)}
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    db_path = mkbench_home / "mkbench.sqlite"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _attempts_begun(db_path):  # until the first item is being worked on
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 3, output  # stopped, not finished
    assert "stopped by Ctrl-C or SIGTERM" in output
    db = store.open_db(db_path)
    statuses = [a["status"] for a in db.query("SELECT status FROM attempts")]
    assert statuses and set(statuses) == {"finished"} and len(statuses) < 3  # the item in progress ended finished
    again = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    finished = [a["task"] for a in db.query("SELECT task FROM attempts WHERE status = 'finished'")]
    assert sorted(finished) == ["Cos", "Sin", "Tan"]


# ---------------------------------------------------------------- lost devices


class StubDevice:
    """A device that answers until its owner pulls it (then raises DeviceLost, as adb does)."""

    abi = "x86_64"
    emulated = False

    def __init__(self, serial: str, fail_after: int | None = None):
        self.serial = serial
        self.fail_after = fail_after
        self.calls = 0
        self.attached = True
        self.busy = threading.Lock()
        self.overlaps = 0
        self.evaluations = 0

    def fingerprint(self) -> dict:
        if not self.attached:
            raise DeviceLost(f"{self.serial}: device offline")
        return {"serial": self.serial, "abi": self.abi, "emulated": self.emulated, "model": "stub"}

    def run(self, argv, cwd, timeout, pin_big_cores=True):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            self.attached = False
        if not self.attached:
            raise DeviceLost(f"{self.serial}: device offline")
        time.sleep(0.05)

    def workdir(self, run_name: str) -> str:
        if not self.busy.acquire(blocking=False):
            self.overlaps += 1
            self.busy.acquire()
        self.evaluations += 1
        return f"/data/local/tmp/{run_name}"

    def remove(self, remote: str) -> None:
        self.busy.release()


@pytest.fixture
def stub_devices(monkeypatch):
    devices: dict[str, StubDevice] = {}

    def get_device(name: str, settings):
        device = devices.get(name)
        if device is None:
            raise DeviceNotFound(f"no device {name}")
        if not device.attached:
            raise DeviceLost(f"{name}: offline")
        return device

    monkeypatch.setattr(run.start, "get_device", get_device)
    monkeypatch.setattr(run.workers, "get_device", get_device)
    return devices


def test_a_lost_device_in_a_pooled_run_hands_its_items_to_another(generators, stub_devices, settings):
    stub_devices["stub-a"] = StubDevice("stub-a", fail_after=2)
    stub_devices["stub-b"] = StubDevice("stub-b")
    generators("stub", lambda mode, config, settings: FixedVerdict(mode=mode, sleep=0.05, device_calls=True))
    config = run.RunConfig(tasks=("smoke",), generators=("stub",), devices=("stub-a", "stub-b"), pool=True,
                           reconnect_seconds=0.5)
    summary = run.run_all(config, settings, progress=quiet())
    assert (summary.status, summary.finished, summary.pending) == ("finished", 6, 0)
    assert summary.lost_devices == ("stub-a",)
    db = store.open_db(settings.db_path)
    by_device, lost = {}, []
    for task, _, _, device, status in items_of(db, summary.run_id):
        (by_device.setdefault(device, []) if status == "finished" else lost).append(task)
    ids = {r["serial"]: r["device_id"] for r in db.query("SELECT serial, device_id FROM run_devices")}
    assert len(by_device[ids["stub-a"]]) == 2 and len(by_device[ids["stub-b"]]) == 4
    assert sorted(sum(by_device.values(), [])) == sorted(run.SMOKE)  # each task finished once: nothing lost or repeated
    # The attempt the device was lost in ended failed (a fault of the harness), and its item was done again.
    failed = list(db.query("SELECT summary FROM attempts WHERE run_id = ? AND status = 'failed'", [summary.run_id]))
    assert len(lost) == len(failed) == 1 and json.loads(failed[0]["summary"])["error"].startswith("device lost")


def test_a_lost_device_waits_for_resume_while_the_others_finish(generators, stub_devices, settings):
    stub_devices["stub-a"] = StubDevice("stub-a", fail_after=1)
    stub_devices["stub-b"] = StubDevice("stub-b")
    generators("stub", lambda mode, config, settings: FixedVerdict(mode=mode, device_calls=True))
    config = run.RunConfig(tasks=("smoke",), generators=("stub",), devices=("stub-a", "stub-b"), reconnect_seconds=0.3)
    summary = run.run_all(config, settings, progress=quiet())
    assert summary.status == "interrupted" and summary.lost_devices == ("stub-a",)
    assert (summary.planned, summary.finished, summary.pending) == (12, 7, 5)  # b did its 6, a did 1 before it went
    assert "run resume" in summary.message
    stub_devices["stub-a"].attached, stub_devices["stub-a"].fail_after = True, None  # plugged back in
    again = run.run_all(config, settings, progress=quiet())  # the same command resumes the same run
    assert again.run_id == summary.run_id and (again.status, again.finished, again.done_now) == ("finished", 12, 5)
    db = store.open_db(settings.db_path)
    statuses = [status for *_, status in items_of(db, summary.run_id)]
    assert statuses.count("finished") == 12 and statuses.count("failed") == 1  # the attempt cut short by the loss


def test_every_device_lost_ends_the_run_instead_of_hanging(generators, stub_devices, settings):
    stub_devices["stub-a"] = StubDevice("stub-a", fail_after=1)
    stub_devices["stub-b"] = StubDevice("stub-b", fail_after=2)
    generators("stub", lambda mode, config, settings: FixedVerdict(mode=mode, device_calls=True))
    started = time.monotonic()
    summary = run.run_all(run.RunConfig(tasks=("smoke",), generators=("stub",), devices=("stub-a", "stub-b"),
                                        reconnect_seconds=0.3), settings, progress=quiet())
    assert time.monotonic() - started < 10
    assert (summary.status, summary.finished, summary.pending) == ("interrupted", 3, 9)
    assert set(summary.lost_devices) == {"stub-a", "stub-b"}


def test_a_lost_device_that_comes_back_goes_on(generators, stub_devices, settings):
    device = stub_devices["stub-a"] = StubDevice("stub-a", fail_after=2)
    generators("stub", lambda mode, config, settings: FixedVerdict(mode=mode, device_calls=True))

    def plug_back_in():
        while device.attached:
            time.sleep(0.05)
        time.sleep(0.3)
        device.fail_after, device.attached = None, True

    helper = threading.Thread(target=plug_back_in)
    helper.start()
    summary = run.run_all(run.RunConfig(tasks=("smoke",), generators=("stub",), devices=("stub-a",), reconnect_seconds=30),
                          settings, progress=quiet())
    helper.join()
    assert (summary.status, summary.finished) == ("finished", 6)
    db = store.open_db(settings.db_path)
    assert list(db.query("SELECT status, detail FROM run_devices"))[0]["status"] == "active"


# ---------------------------------------------------------------- scheduling and failures


class Evaluating(FixedVerdict):
    """Generates (sleeps), then holds the device the way evaluate() does: workdir ... remove."""

    solving = 0
    most_solving = 0
    span: list[float] = []  # the first start and every end
    lock = threading.Lock()

    def solve(self, task, device, chat, budget, row) -> AttemptResult:
        with Evaluating.lock:
            Evaluating.solving += 1
            Evaluating.most_solving = max(Evaluating.most_solving, Evaluating.solving)
            Evaluating.span = Evaluating.span or [time.monotonic()]
        time.sleep(0.15)  # the LLM and the build
        workdir = device.workdir(f"{task.name}-{device.worker}")
        try:
            time.sleep(0.1)  # the measurement
        finally:
            device.remove(workdir)
        with Evaluating.lock:
            Evaluating.solving -= 1
            Evaluating.span.append(time.monotonic())
        return super().solve(task, device, chat, budget, row)


def test_one_evaluation_at_a_time_per_device_while_generation_overlaps(generators, stub_devices, settings):
    device = stub_devices["stub-a"] = StubDevice("stub-a")
    generators("evaluating", lambda mode, config, settings: Evaluating("evaluating", mode))
    summary = run.run_all(run.RunConfig(tasks=("smoke",), generators=("evaluating",), devices=("stub-a",),
                                        workers_per_device=2), settings, progress=quiet())
    elapsed = Evaluating.span[-1] - Evaluating.span[0]
    assert summary.finished == 6 and device.evaluations == 6
    assert Evaluating.most_solving == 2  # two workers served the phone at once...
    assert device.overlaps == 0  # ...but never two evaluations on it at once
    assert elapsed < 6 * 0.25  # generation overlapped measurement (one after the other: 6 x 0.25 s)


def test_failed_attempts_are_recorded_stop_the_run_and_are_retried_on_resume(generators, settings):
    generators("broken", lambda mode, config, settings: Broken("broken", mode))
    config = run.RunConfig(tasks=("smoke",), generators=("broken",), failures_in_a_row=3)
    summary = run.run_all(config, settings, progress=quiet())
    assert summary.status == "interrupted" and summary.failed == 3 and summary.finished == 0
    assert "3 failed attempts in a row" in summary.message and "MNN tree is missing" in summary.message
    db = store.open_db(settings.db_path)
    rows = list(db.query("SELECT status, summary FROM attempts"))
    assert [r["status"] for r in rows] == ["failed"] * 3
    assert json.loads(rows[0]["summary"])["error"] == "RuntimeError: the MNN tree is missing"
    run.GENERATORS["broken"] = run.GeneratorEntry(lambda mode, config, settings: FixedVerdict("broken", mode), uses_llm=False)  # fixed
    again = run.resume(summary.run_id, settings, progress=quiet())
    assert (again.status, again.finished, again.failed, again.done_now) == ("finished", 6, 0, 6)


def test_a_missing_generator_stops_before_the_run_starts(generators, settings):
    def unavailable(mode, config, settings):
        raise run.RunError("generator mkbench.agents.nothing.Nothing is not available (No module named 'nothing')")

    generators("unwired", unavailable)
    with pytest.raises(run.RunError, match="not available"):
        run.run_all(run.RunConfig(tasks=("Sin",), generators=("unwired",)), settings, progress=quiet())
    assert store.open_db(settings.db_path)["runs"].count == 0


def test_progress_lines_and_bars():
    import io

    log = io.StringIO()
    progress = run.Progress(stream=log, quiet=True)
    item = run.WorkItem("Sin", "stub", "whole-file", "host")
    progress.begin("r1", {"stub @ host": (4, 1)}, {"stub @ host": 1})
    progress.item("stub @ host", run.ItemDone(item, "host", "finished", "correct 1.25x", 60.0))
    text = log.getvalue()
    assert "run r1: 4 items, 3 to do" in text and "[2/4] stub @ host: Sin on host: correct 1.25x (60 s), ETA 2 min" in text
    live = io.StringIO()
    bars = run.Progress(stream=live, live=True)
    bars.begin("r1", {"stub @ host": (4, 1)}, {"stub @ host": 1})
    bars.item("stub @ host", run.ItemDone(item, "host", "finished", "correct 1.25x", 60.0))
    assert "[##########..........]    2/4    correct 1 · other 0 · failed 0, ETA 2 min" in live.getvalue()


# ---------------------------------------------------------------- the commands


def test_cli_run_all_list_resume_show_report_export(generators, tmp_path, settings):
    generators("stub", lambda mode, config, settings: FixedVerdict(mode=mode, wrong=("CumSum", "ReduceL1")))
    config = tmp_path / "run.toml"
    config.write_text('tasks = "smoke"\ngenerators = ["stub"]\n')
    runner = CliRunner()
    result = runner.invoke(main, ["run-all", "--config", str(config), "--quiet", "--json"])
    assert result.exit_code == 0, result.output + result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    assert "6/6 items finished" in result.stderr
    listed = runner.invoke(main, ["run", "list"])
    assert run_id in listed.output and "finished" in listed.output and "6/6" in listed.output
    resumed = runner.invoke(main, ["run", "resume", run_id, "--quiet"])
    assert resumed.exit_code == 0 and "0 done now" in resumed.stderr
    assert json.loads(runner.invoke(main, ["run", "show", run_id]).output)["id"] == run_id
    report = runner.invoke(main, ["report", "--no-plots", "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output + report.stderr
    assert "By generator" in report.output and "66.7" in report.output  # FCR: 4 of 6
    assert (tmp_path / "report" / "report.md").is_file()
    exported = runner.invoke(main, ["export", "--format", "csv", run_id, "--out", str(tmp_path / "csv")])
    assert exported.exit_code == 0 and (tmp_path / "csv" / f"{run_id}-attempts.csv").is_file()
    missing = runner.invoke(main, ["run", "resume", "nope"])
    assert missing.exit_code == 2 and "no run 'nope'" in missing.stderr


# ---------------------------------------------------------------- a generator that records its own attempt


class Recording:
    """Records through agents.attempt.Attempt, as the real generators do (a fake judge stands in
    for the compiler and the device): the row opens as running and is closed by finish()."""

    def __init__(self, name: str, mode: str, give_up: bool = False):
        self.name, self.mode, self.give_up = name, mode, give_up

    def solve(self, task, device, chat, budget, row) -> AttemptResult:
        from mkbench.agents.attempt import Attempt, Candidate

        def judge(task, source, device, settings, db=None, worker="0", run_id=None):
            assert worker == device.worker  # the run's worker name reaches the build folder
            return Verdict("correct", "", task.name, device.serial, True, True, speedup=1.5, timing_reportable=True)

        attempt = Attempt.start(self.name, self.mode, task, device, chat, budget, row, judge=judge, worker=device.worker)
        attempt.judge(Candidate("// code", "// code"))
        return attempt.finish("llm-error: server down" if self.give_up else "solved")


def test_a_generator_recording_its_own_attempt(generators, tmp_path, settings):
    replay = tmp_path / "none.jsonl"
    replay.write_text("")
    generators("recording", lambda mode, config, settings: Recording("recording", mode), uses_llm=True)
    summary = run.run_all(run.RunConfig(tasks=("Sin", "TopK_sorted"), generators=("recording",), model=f"replay:{replay}"),
                          settings, progress=quiet())
    assert (summary.status, summary.finished) == ("finished", 2)
    db = store.open_db(settings.db_path)
    rows = list(db.query("SELECT status, summary FROM attempts"))
    assert [r["status"] for r in rows] == ["finished", "finished"]  # one row each: the generator's, completed
    assert json.loads(rows[0]["summary"])["best_verdict"]["speedup"] == 1.5
    from mkbench import report

    result = report.build_report(db, summary.run_id)
    assert result.by_generator[0].fcr == 1.0 and result.by_generator[0].fast[1.0] == 1.0
    generators("quitter", lambda mode, config, settings: Recording("quitter", mode, give_up=True), uses_llm=True)
    quit_summary = run.run_all(run.RunConfig(tasks=("Sin",), generators=("quitter",), model=f"replay:{replay}"),
                               settings, progress=quiet())
    assert (quit_summary.finished, quit_summary.failed) == (0, 1)  # the generator's "failed" stands


# ---------------------------------------------------------------- recheck on another device

SIN = (Path(__file__).parent.parent / "mnn" / "examples" / "abs_candidate.cpp").read_text().replace(
    "std::fabs(src[i])", "std::sin(src[i])")
SIN_X86_ONLY = SIN.replace("dst[i] = std::sin(src[i]);",
                           "#if defined(__x86_64__)\n                dst[i] = std::sin(src[i]);\n#else\n"
                           "                dst[i] = src[i];\n#endif")


class Judging(FixedVerdict):
    """Judges one fixed kernel with the real judge."""

    def __init__(self, name: str, source: str, mode: str, settings):
        super().__init__(name, mode)
        self.source, self.settings = source, settings

    def solve(self, task, device, chat, budget, row) -> AttemptResult:
        from mkbench.judge.evaluate import evaluate

        verdict = evaluate(task, self.source, device, self.settings, db=row.db, run_id=row.run_id)
        return AttemptResult(task.name, self.name, self.mode, device.serial, None, (verdict,), verdict, 0, 0, 0, 0.0,
                             "solved" if verdict.correct else "rounds")


@pytest.mark.slow
def test_recheck_judges_a_host_runs_correct_kernels_on_arm64(generators, mnn_settings):
    settings = mnn_settings
    """A kernel correct on the host only because of an x86 branch is caught by the arm64 recheck;
    the report counts the rechecks in a note, and a second recheck judges nothing again."""
    generators("portable", lambda mode, config, settings: Judging("portable", SIN, mode, settings))
    generators("x86-only", lambda mode, config, settings: Judging("x86-only", SIN_X86_ONLY, mode, settings))
    summary = run.run_all(run.RunConfig(tasks=("Sin",), generators=("portable", "x86-only"), devices=("host",)),
                          settings, progress=quiet())
    db = store.open_db(settings.db_path)
    assert [a["status"] for a in db.query("SELECT status FROM attempts WHERE run_id = ?", [summary.run_id])] == ["finished"] * 2

    lines = []
    rows = run.recheck(summary.run_id, "qemu-arm64", settings, echo=lines.append)
    assert {(r["generator"], r["verdict"]) for r in rows} == {("portable", "correct"), ("x86-only", "wrong-values")}
    assert len(lines) == 2 and all("correct on host" in line for line in lines)
    count = db.conn.execute("SELECT COUNT(*) FROM evaluations WHERE run_id = ?", [summary.run_id]).fetchone()[0]
    assert [r["verdict"] for r in run.recheck(summary.run_id, "qemu-arm64", settings)] == [r["verdict"] for r in rows]
    assert db.conn.execute("SELECT COUNT(*) FROM evaluations WHERE run_id = ?", [summary.run_id]).fetchone()[0] == count

    from mkbench.report import build_report
    notes = build_report(db, summary.run_id).notes
    assert "rechecked on qemu-arm64: portable (whole-file) 1/1, x86-only (whole-file) 0/1 of the correct kernels are correct there too" in notes
    by_generator = {m.group[0]: m for m in build_report(db, summary.run_id).by_generator}
    assert by_generator["x86-only"].fcr == 1.0  # the run's own metrics stay those of its device
