"""The `mkbench` command: parse options, call one library function, print.

No logic lives here. Each area has its group; a command prints a table by default and
JSON with --json where a machine reads it. The settings are read here, once per invocation
(`main` puts them in click's context object), and passed down to every library call.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

import click

from . import __version__
from . import settings as settings_module


def fail(message: str) -> None:
    """Stop with a one-line error (exit 2), the way every command reports bad input."""
    click.echo(f"mkbench: {message}", err=True)
    sys.exit(2)


def echo_json(value) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _sigterm_as_ctrl_c() -> None:
    """`docker stop` and `kill` send SIGTERM: every command ends the way Ctrl-C ends it (a run lets
    the items in progress finish and stays resumable; a second one stops at once)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


@click.group()
@click.version_option(__version__, prog_name="mkbench")
@click.pass_context
def main(ctx: click.Context) -> None:
    """MobileKernelBench: judge LLM-written MNN CPU kernels on phones, and MoKA, the agent that writes them."""
    _sigterm_as_ctrl_c()
    ctx.obj = settings_module.load()


# ---------------------------------------------------------------- doctor
@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_obj
def doctor(s: settings_module.Settings, as_json: bool) -> None:
    """What is present and what is missing, one line each."""
    from .doctor import run_checks

    checks = run_checks(s)
    if as_json:
        echo_json([c.__dict__ for c in checks])
        return
    for c in checks:
        click.echo(f"{'ok  ' if c.ok else 'MISS'}  {c.name:<28} {c.detail}")


# ---------------------------------------------------------------- tasks
@main.group()
def tasks() -> None:
    """The task suite: list, show, validate, import."""


def _load_tasks(s: settings_module.Settings, suite: str, names: tuple[str, ...] = (), category: str | None = None):
    from .tasks import all_tasks, task_roots

    found, errors = all_tasks(None if suite == "all" else suite, task_roots(s))
    for error in errors:
        click.echo(f"mkbench: bad task file: {error}", err=True)
    if names:
        unknown = set(names) - {t.name for t in found}
        if unknown:
            fail(f"no task named {', '.join(sorted(unknown))} in suite {suite!r}")
        found = [t for t in found if t.name in names]
    if category:
        found = [t for t in found if t.category.lower() == category.lower()]
    return found, errors


@tasks.command("list")
@click.option("--suite", default="paper", show_default=True, help="paper, extra, imported, or all")
@click.option("--category", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def tasks_list(s: settings_module.Settings, suite: str, category: str | None, as_json: bool) -> None:
    """Every task with its operator, category, kind and status."""
    found, _ = _load_tasks(s, suite, category=category)
    rows = [{"name": t.name, "suite": t.suite, "category": t.category, "operator": t.operator,
             "kind": t.mnn.kind if t.mnn else None, "targets": [list(x) for x in t.mnn.targets] if t.mnn else [],
             "runnable": t.status.runnable, "status": "runnable" if t.status.runnable else t.status.reason,
             "judgeable": t.status.judgeable, "judge_reason": t.status.judge_reason,
             "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in t.inputs]}
            for t in found]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['name']:<44} {r['category']:<14} {r['operator']:<22} {r['kind'] or '-':<14} "
                   f"{'ok' if r['runnable'] else r['status'][:70]}")
    operators = {r["operator"] for r in rows}
    click.echo(f"{len(rows)} tasks over {len(operators)} operators, {sum(r['runnable'] for r in rows)} runnable, "
               f"{sum(bool(r['judgeable']) for r in rows)} judgeable by today's judge")


@tasks.command("validate")
@click.argument("names", nargs=-1)
@click.option("--suite", default="paper", show_default=True)
@click.option("--workers", default=2, show_default=True, help="parallel worker processes")
@click.option("--write", is_flag=True, help="record the findings ([mnn], [status]) in the spec files")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def tasks_validate(s: settings_module.Settings, names: tuple[str, ...], suite: str, workers: int, write: bool, as_json: bool) -> None:
    """Check every task: model, reference, onnx node tests, MNN conversion, native MNN."""
    from . import validate as task_validate

    found, errors = _load_tasks(s, suite, names)
    if write and (refusal := task_validate.write_refusal(found)):
        fail(refusal)
    checks = task_validate.validate(found, s, workers)
    if write:
        for task, check in zip(found, checks):
            task_validate.findings_to_spec(task, check)
        found, errors = _load_tasks(s, suite, names)
    summary = task_validate.summarise(found, checks, written=write)
    if as_json:
        echo_json({"summary": summary.__dict__, "tasks": [task_validate.to_json(c) for c in checks]})
    else:
        for line in summary.failures:
            click.echo(f"FAIL  {line}")
        for line in summary.not_runnable:
            click.echo(f"not runnable  {line}")
        for line in summary.not_judgeable:
            click.echo(f"not judgeable {line}")
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(summary.runnable_by_kind.items()))
        judged = ", ".join(f"{k} {v}" for k, v in sorted(summary.judgeable_by_kind.items()))
        click.echo(f"{summary.tasks} tasks: {summary.runnable} runnable ({kinds}); "
                   f"reference cross-checked against onnx node tests for {summary.node_test_tasks}; "
                   f"native MNN ran {summary.native_checked}, agrees on {summary.native_agrees}; "
                   f"judgeable now: {sum(summary.judgeable_by_kind.values())} ({judged or 'no host build to tell'}); "
                   f"{len(summary.failures) + len(errors)} failures")
    if summary.failures or errors:
        sys.exit(1)


@tasks.command("show")
@click.argument("name")
@click.pass_obj
def tasks_show(s: settings_module.Settings, name: str) -> None:
    """One task: its spec, its PyTorch module and its MNN target."""
    from .tasks import TaskError, get_task, task_roots

    try:
        task = get_task(name, task_roots(s))
    except TaskError as error:
        fail(str(error))
    click.echo(task.path.read_text())


@tasks.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="where the tasks are written  [default: MKBENCH_HOME/tasks/imported, where `mkbench tasks` finds them]")
@click.option("--timeout", default=120.0, show_default=True, help="seconds one file may take to build, run and export")
@click.option("--workers", default=1, show_default=True, help="files imported at once")
@click.pass_obj
def tasks_import(s: settings_module.Settings, paths: tuple[str, ...], out_dir: str | None, timeout: float, workers: int) -> None:
    """Import task files in KernelBench's format (a file, a folder of them, or a folder of category folders).

    A file's category is its folder's name when that is one of the paper's categories
    (Activation/Celu.py), else Imported. Each file runs in the candidates' sandbox: no network,
    nothing writable but its own folder."""
    from pathlib import Path

    from .sandbox import SandboxUnavailable
    from .tasks.kernelbench import TorchMissing, import_files

    try:
        results = import_files([Path(p) for p in paths], s, Path(out_dir) if out_dir else None, timeout, workers)
    except (TorchMissing, SandboxUnavailable) as error:
        fail(str(error))
    for result in results:
        click.echo(result.line)
    if any(not r.ok for r in results):
        sys.exit(1)


# ---------------------------------------------------------------- mnn
@main.group()
def mnn() -> None:
    """The pinned MNN tree and its builds."""


@mnn.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def mnn_status(s: settings_module.Settings, as_json: bool) -> None:
    """The tree and each target's build: present, missing, and how to get them."""
    from .mnn import build as mnn_build

    rows = mnn_build.status(s)
    if as_json:
        echo_json([r.__dict__ for r in rows])
        return
    for r in rows:
        click.echo(f"{r.target:<6} {'built' if r.built else 'not built':<10} {r.toolchain:<40} {r.detail}")


@mnn.command("build")
@click.option("--target", "targets", multiple=True, type=click.Choice(["host", "arm64"]), default=("host",),
              show_default=True)
@click.option("--converter", is_flag=True, help="also MNNConvert from the tree (about 20 minutes cold on 2 cores)")
@click.pass_obj
def mnn_build_command(s: settings_module.Settings, targets: tuple[str, ...], converter: bool) -> None:
    """Build (or reuse) MNN's CPU library and our runner for each target, and MNNConvert (minutes, once)."""
    from .mnn import build as mnn_build
    from .mnn import converter_build
    from .mnn.tree import TreeError

    for target in targets:
        try:
            native = mnn_build.build_native(target, s)
        except (TreeError, mnn_build.BuildError, RuntimeError) as error:
            fail(f"{target}: {str(error).splitlines()[0]}")
        click.echo(f"{target}: {native.directory}")
    if converter:
        try:
            click.echo(f"converter: {converter_build.build_converter(s).converter}")
        except (TreeError, mnn_build.BuildError, RuntimeError) as error:
            fail(f"converter: {str(error).splitlines()[0]}")


@mnn.command("fetch")
@click.pass_obj
def mnn_fetch(s: settings_module.Settings) -> None:
    """Clone the pinned MNN tag (needs a network; offline it says how to supply the tree)."""
    from .mnn import tree
    from .mnn.tree import TreeError

    try:
        click.echo(tree.fetch(s))
    except TreeError as error:
        fail(str(error))


# ---------------------------------------------------------------- devices
@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--server", "servers", multiple=True, metavar="HOST:PORT", help="also ask this remote adb server")
@click.pass_context
def devices(ctx: click.Context, as_json: bool, servers: tuple[str, ...]) -> None:
    """Phones over adb, the emulator and the host (with no subcommand: list them)."""
    if ctx.invoked_subcommand is not None:
        return
    from .devices import survey

    s = ctx.obj
    from .devices.fingerprint import summary

    try:
        reports = survey(s, servers)
    except (RuntimeError, ValueError) as error:
        fail(str(error))
    if as_json:
        echo_json([r.__dict__ for r in reports])
        return
    for r in reports:
        if r.fingerprint is None:
            click.echo(f"{r.name:<24} {r.state:<12} {r.detail}")
            continue
        fp = r.fingerprint
        kind = "emulated" if fp["emulated"] else "real"
        click.echo(f"{r.name:<24} {r.state:<12} {fp['abi']:<10} {kind:<9} {fp.get('model') or '?'} | "
                   f"{fp.get('soc') or '?'} | Android {fp.get('android_version') or '-'} | {summary(fp)}")


@devices.command("show")
@click.argument("name")
@click.pass_obj
def devices_show(s: settings_module.Settings, name: str) -> None:
    """The full fingerprint of one device (JSON)."""
    from .devices import DeviceLost, DeviceNotFound, get_device

    try:
        echo_json(get_device(name, s).fingerprint())
    except (DeviceNotFound, DeviceLost, RuntimeError, ValueError) as error:
        fail(str(error))


# ---------------------------------------------------------------- emulator
@main.group()
def emulator() -> None:
    """The mkbench emulator: an arm64 'phone' on loopback for labs without one (correctness only)."""


def _emulator_line(e) -> str:
    if not e.running:
        return f"emulator on port {e.port}: stopped"
    return f"emulator {e.serial}: running (pid {e.pid}), adb {e.adb_state or 'no server'}, sandbox {e.sandbox}, log {e.log}"


@emulator.command("start")
@click.option("--port", type=int, default=5599, show_default=True)
@click.option("--sandbox", type=click.Path(file_okay=False), help="folder standing in for the device's / (default: under MKBENCH_HOME)")
@click.option("--no-connect", is_flag=True, help="do not `adb connect` it")
@click.pass_obj
def emulator_start(s: settings_module.Settings, port: int, sandbox: str | None, no_connect: bool) -> None:
    """Start the emulator in the background and attach it to the adb server."""
    from pathlib import Path

    from .devices import emulator_ctl

    try:
        started = emulator_ctl.start(s, port, Path(sandbox) if sandbox else None, connect=not no_connect)
    except RuntimeError as error:
        fail(str(error))
    click.echo(_emulator_line(started))


@emulator.command("stop")
@click.option("--port", type=int, default=5599, show_default=True)
@click.pass_obj
def emulator_stop(s: settings_module.Settings, port: int) -> None:
    """Detach the emulator from adb and stop it."""
    from .devices import emulator_ctl

    click.echo(_emulator_line(emulator_ctl.stop(s, port)))


@emulator.command("status")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_obj
def emulator_status(s: settings_module.Settings, as_json: bool) -> None:
    """Every emulator this MKBENCH_HOME started: running or not, and its adb state."""
    from .devices import emulator_ctl

    statuses = emulator_ctl.status_all(s)
    if as_json:
        echo_json([e.__dict__ for e in statuses])
        return
    for e in statuses or [emulator_ctl.status(s)]:
        click.echo(_emulator_line(e))


# ---------------------------------------------------------------- models
@main.group()
def models() -> None:
    """Local GGUF models: install, list, add."""


@models.command("install")
@click.argument("name", required=False)
@click.pass_obj
def models_install(s: settings_module.Settings, name: str | None) -> None:
    """Download, join and verify a manifest model (the default model if no NAME)."""
    from .llm.models import ModelError, install

    try:
        installed = install(name, s, progress=click.echo)
    except ModelError as error:
        fail(str(error))
    click.echo(f"{installed.name}: verified, {installed.path}")


@models.command("list")
@click.option("--verify", is_flag=True, help="rehash every file, not only those that changed")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_obj
def models_list(s: settings_module.Settings, verify: bool, as_json: bool) -> None:
    """Known, installed and found models, and whether each file is verified."""
    from .llm.models import ModelError, list_models

    try:
        statuses = list_models(s, verify=verify)
    except ModelError as error:
        fail(str(error))
    if as_json:
        echo_json([s.__dict__ for s in statuses])
        return
    for s in statuses:
        size = f"{s.size / 2**20:7.0f} MiB" if s.size else " " * 11
        click.echo(f"{s.state:<12} {'*' if s.default else ' '} {s.name:<40} {size}  {s.path if s.state == 'verified' else s.detail}")


@models.command("add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", help="name to register it under (default: the file name)")
@click.option("--chat-format", default="", help="llama-cpp-python chat format, for a GGUF without a chat template")
@click.option("--context-length", type=int, help="context length (default: the GGUF's)")
@click.pass_obj
def models_add(s: settings_module.Settings, path: str, name: str | None, chat_format: str, context_length: int | None) -> None:
    """Register a GGUF file (checked for corruption and truncation, then hashed)."""
    from pathlib import Path

    from .llm.models import ModelError, add

    try:
        added = add(Path(path), s, name=name, chat_format=chat_format, context_length=context_length)
    except ModelError as error:
        fail(str(error))
    click.echo(f"{added.name}: registered, sha256 {added.sha256}, {added.path}")


# ---------------------------------------------------------------- eval
@main.command("eval")
@click.option("--task", "task_name", required=True, help="task name (see `mkbench tasks list`)")
@click.option("--kernel", "kernel_path", required=True, type=click.Path(dir_okay=False), help="the candidate C++ file")
@click.option("--device", "device_name", default="host", show_default=True, help="host, qemu-arm64, or an adb serial")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def eval_command(s: settings_module.Settings, task_name: str, kernel_path: str, device_name: str, as_json: bool) -> None:
    """Judge one candidate kernel on one task and device, and store the verdict."""
    from pathlib import Path

    from . import store
    from .devices import get_device
    from .judge.evaluate import evaluate
    from .tasks import TaskError, get_task, task_roots

    try:
        task = get_task(task_name, task_roots(s))
        source = Path(kernel_path).read_text()
        device = get_device(device_name, s)
        db = store.open_db(s.db_path)
        verdict = evaluate(task, source, device, s, db=db)
    except (TaskError, OSError, LookupError, RuntimeError) as error:
        fail(str(error).splitlines()[0] if str(error) else type(error).__name__)
    if as_json:
        echo_json({k: v for k, v in verdict.__dict__.items() if k != "compiler_output"})
    else:
        click.echo(verdict.line())
        if verdict.verdict == "compile-error":
            click.echo(verdict.compiler_output[-3000:], err=True)
        for flag in verdict.flags:
            click.echo(f"flag: {flag}")
    sys.exit(0 if verdict.correct else 1)


# ---------------------------------------------------------------- selftest
@main.command()
@click.argument("device_name", metavar="DEVICE")
@click.option("--task", "task_names", multiple=True, help="tasks to time (default: a spread of kinds)")
@click.option("--pairs", default=None, type=int, help="twin runs per task (default: until the interval is within ±3% or the timing budget is spent)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def selftest(s: settings_module.Settings, device_name: str, task_names: tuple[str, ...], pairs: int | None, as_json: bool) -> None:
    """The noise floor: native MNN timed against itself with the judge's own series (evaluations
    of these tasks on this device then reuse it); speedups whose interval overlaps it are parity."""
    from . import store
    from .devices import get_device
    from .judge import selftest as selftest_module
    from .report import store_noise_floors
    from .tasks import TaskError, get_task, task_roots

    try:
        device = get_device(device_name, s)
        tasks_to_time = [get_task(n, task_roots(s)) for n in (task_names or selftest_module.DEFAULT_TASKS)]
    except (TaskError, LookupError) as error:
        fail(str(error))
    floors = []
    for task in tasks_to_time:
        try:
            floor = selftest_module.measure(task, device, s, pairs)
        except RuntimeError as error:
            click.echo(f"{task.name}: {str(error).splitlines()[0]}", err=True)
            continue
        floors.append(floor)
        if not as_json:
            click.echo(f"{floor.task:<14} native/native {floor.speedup:.3f}  band {floor.low:.3f}-{floor.high:.3f}"
                       f"  ({floor.median_ms:.4g} ms, {floor.pairs} runs, {floor.stopped_by}, {floor.seconds:.0f} s)"
                       f"{'' if floor.reportable else '  [emulated: not reportable]'}")
    store_noise_floors(store.open_db(s.db_path), device, floors, {t.name: t for t in tasks_to_time}, s)
    if as_json:
        echo_json([f.__dict__ for f in floors])
    elif floors:
        low, high = min(f.low for f in floors), max(f.high for f in floors)
        click.echo(f"noise floor on {device.serial}: speedups within {low:.3f}-{high:.3f} are parity")


# ---------------------------------------------------------------- show
@main.command()
@click.argument("attempt_id", type=int)
@click.option("--full", is_flag=True, help="whole prompts and answers, not only their openings")
@click.option("--json", "as_json", is_flag=True, help="the attempt, its steps and LLM calls as JSON")
@click.pass_obj
def show(s: settings_module.Settings, attempt_id: int, full: bool, as_json: bool) -> None:
    """Replay one attempt's trajectory: every prompt, answer, tool call, lint result and verdict."""
    from . import store
    from .agents import trajectory

    db = store.open_db(s.db_path)
    try:
        if as_json:
            echo_json(trajectory.load(db, attempt_id))
        else:
            click.echo(trajectory.render(db, attempt_id, full=full), nl=False)
    except trajectory.AttemptNotFound as error:
        fail(str(error))


# ---------------------------------------------------------------- run / report / export
def _run_summary_exit(summary) -> None:
    sys.exit(0 if summary.status == "finished" else 3)


@main.command("run-all")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="a TOML run config (flags override it)")
@click.option("--suite", default=None, help="paper (default), extra, imported, or all")
@click.option("--tasks", "task_words", default=None, help="all (every runnable task, the default), smoke, or names: Sin,Cos")
@click.option("--category", "categories", multiple=True, help="keep only this category (repeatable)")
@click.option("--generator", "-g", "generators", multiple=True, help="one-shot (default), pass@k, moka, moka-no-tree, moka-no-errors, moka-no-accel (repeatable)")
@click.option("--mode", "modes", multiple=True, help="whole-file (default) or scaffolded (repeatable)")
@click.option("--model", default=None, help="LLM backend, e.g. llama.cpp (default model) or openai:URL?model=NAME")
@click.option("--device", "-d", "devices", multiple=True, help="host (default), emulator, qemu-arm64, all, or an adb serial (repeatable)")
@click.option("--pool/--no-pool", default=None, help="devices share one queue instead of each doing every item")
@click.option("--budget", "budget_items", multiple=True, metavar="KEY=VALUE", help="calls, tokens, seconds, rounds, samples")
@click.option("--workers-per-device", type=int, default=None, help="workers per phone (the host always has one)")
@click.option("--new", is_flag=True, help="start a new run even if one with this selection exists")
@click.option("--run-id", default=None, help="name the new run")
@click.option("--quiet", "-q", is_flag=True, help="one plain line per item (for logs), no progress bars")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@click.pass_obj
def run_all_command(s: settings_module.Settings, config_path, suite, task_words, categories, generators, modes, model, devices, pool, budget_items,
                    workers_per_device, new, run_id, quiet, as_json) -> None:
    """Run every selected task x generator x device, resuming this selection's run if it stopped."""
    from pathlib import Path

    from .run import Progress, RunConfig, RunError, run_all

    try:
        budget = {}
        for item in budget_items:
            key, sep, value = item.partition("=")
            if not sep:
                fail(f"--budget takes KEY=VALUE, got {item!r}")
            budget[key.strip()] = float(value) if key.strip() == "seconds" else int(value)
        overrides = {"suite": suite, "tasks": task_words, "categories": list(categories) or None,
                     "generators": list(generators) or None, "modes": list(modes) or None, "model": model,
                     "devices": list(devices) or None, "pool": pool, "budget": budget or None,
                     "workers_per_device": workers_per_device}
        config = RunConfig.build(Path(config_path) if config_path else None, overrides)
        summary = run_all(config, s, new=new, run_id=run_id, progress=Progress(quiet=quiet))
    except (RunError, ValueError) as error:
        fail(str(error))
    if as_json:
        echo_json(summary.__dict__)
    _run_summary_exit(summary)


@main.group()
def run() -> None:
    """Runs of generators over tasks and devices: list, resume, recheck, show."""


@run.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def run_list(s: settings_module.Settings, as_json: bool) -> None:
    """Every run, newest first, with how far it got."""
    import time

    from .run import list_runs

    runs = list_runs(s)
    if as_json:
        echo_json([r.__dict__ for r in runs])
        return
    for r in runs:
        click.echo(f"{r.id:<24} {time.strftime('%Y-%m-%d %H:%M', time.localtime(r.created_at))}  {r.status:<12} "
                   f"{r.finished:>4}/{r.planned:<4} finished, {r.failed} failed  {','.join(r.generators)} on {','.join(r.devices)}, "
                   f"{r.tasks} tasks")
    if not runs:
        click.echo("no runs yet: `mkbench run-all`")


@run.command("resume")
@click.argument("run_id")
@click.option("--quiet", "-q", is_flag=True, help="one plain line per item (for logs), no progress bars")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def run_resume(s: settings_module.Settings, run_id: str, quiet: bool, as_json: bool) -> None:
    """Continue a run where it stopped: redo nothing finished."""
    from .run import Progress, RunError, resume

    try:
        summary = resume(run_id, s, progress=Progress(quiet=quiet))
    except RunError as error:
        fail(str(error))
    if as_json:
        echo_json(summary.__dict__)
    _run_summary_exit(summary)


@run.command("recheck")
@click.argument("run_id")
@click.option("--device", "-d", "serial", default="qemu-arm64", show_default=True,
              help="where to judge again: qemu-arm64, an adb serial, host")
@click.pass_obj
def run_recheck(s: settings_module.Settings, run_id: str, serial: str) -> None:
    """Judge a run's correct kernels again on another device (arm64 correctness for a host run);
    the report counts the rechecks in its notes."""
    from .run import RunError, recheck

    try:
        rows = recheck(run_id, serial, s, echo=click.echo)
    except (RunError, LookupError) as error:  # an unknown run or device
        fail(str(error))
    kept = sum(r["verdict"] == "correct" for r in rows)
    click.echo(f"{kept} of {len(rows)} correct kernels of {run_id} are correct on {serial} too")


@run.command("show")
@click.argument("run_id")
@click.pass_obj
def run_show(s: settings_module.Settings, run_id: str) -> None:
    """A run's config, provenance (versions, MNN, toolchains, model, devices) and device states (JSON)."""
    from .run import RunError, show_run

    try:
        echo_json(show_run(run_id, s))
    except RunError as error:
        fail(str(error))


@main.command()
@click.argument("run_id", required=False)
@click.option("--p", "ps", multiple=True, type=float, help="fast_p thresholds (default 0.5, 1.0, 1.5; repeatable)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="where report.md and the plots go (default MKBENCH_HOME/reports/RUN)")
@click.option("--markdown", is_flag=True, help="print the Markdown instead of the terminal table")
@click.option("--no-plots", is_flag=True, help="skip the PNG plots")
@click.option("--json", "as_json", is_flag=True, help="the metrics as JSON")
@click.option("--from", "export_dir", type=click.Path(exists=True, file_okay=False),
              help="rebuild it from a run's export (`mkbench export`: RUN-run.json, RUN-attempts.csv) instead of the database")
@click.pass_obj
def report(s: settings_module.Settings, run_id: str | None, ps: tuple[float, ...], out_dir: str | None, markdown: bool, no_plots: bool,
           as_json: bool, export_dir: str | None) -> None:
    """The paper's metrics for a run (the newest by default): table, Markdown, plots."""
    from pathlib import Path

    from . import store
    from .report import DEFAULT_PS, format_table, write_report

    try:
        db = None if export_dir else store.open_db(s.db_path)
        result, markdown_path, plots, message = write_report(db, run_id, Path(out_dir) if out_dir else None, s.home,
                                                             ps or DEFAULT_PS, plots=not no_plots,
                                                             export=Path(export_dir) if export_dir else None)
    except LookupError as error:
        fail(str(error).strip("'\""))
    if as_json:
        echo_json({"run_id": result.run_id, "status": result.status, "notes": result.notes,
                   "by_generator": [m.__dict__ for m in result.by_generator],
                   "by_device": [m.__dict__ for m in result.by_device],
                   "by_category": [m.__dict__ for m in result.by_category]})
        return
    click.echo(markdown_path.read_text() if markdown else format_table(result), nl=False)
    click.echo(f"wrote {markdown_path}" + "".join(f", {p.name}" for p in plots), err=True)
    if message:
        click.echo(message, err=True)


@main.command()
@click.argument("run_id", required=False)
@click.option("--format", "fmt", type=click.Choice(["csv"]), default="csv", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="folder for the files (default MKBENCH_HOME/exports)")
@click.option("--full", is_flag=True, help="also the large text fields: candidate source, compiler output, prompts, answers")
@click.pass_obj
def export(s: settings_module.Settings, run_id: str | None, fmt: str, out_dir: str | None, full: bool) -> None:
    """Export a run's attempts (one row each) and its LLM calls (one row each) as CSV, and what it planned
    (RUN-run.json): enough for `mkbench report --from FOLDER` to rebuild its tables."""
    from pathlib import Path

    from . import store
    from .report import export_csv

    try:
        paths = export_csv(store.open_db(s.db_path), run_id, Path(out_dir) if out_dir else None, s.home, full)
    except LookupError as error:
        fail(str(error).strip("'\""))
    for path in paths:
        click.echo(path)


# ---------------------------------------------------------------- appliance
@main.group()
def appliance() -> None:
    """The appliance image: build it once, run it (air-gapped), save it for and load it on an offline machine."""


def _appliance_run_options(command, image, data, network, adb_server, privileged, env, checkout, read_only, cap_add):
    from pathlib import Path

    from .image import RunOptions

    pairs = []
    for item in env:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--env takes KEY=VALUE, got {item!r}")
        pairs.append((key, value))
    return RunOptions(command=tuple(command), image=image, data=data, network=network, adb_server=adb_server,
                      privileged=privileged, env=tuple(pairs), checkout=Path(checkout) if checkout else None,
                      read_only=read_only, cap_add=tuple(cap_add))


def _container_options(function):
    """The options `run` and `shell` share: which image, where the data lives, network, USB, sandbox."""
    for option in reversed([
        click.option("--image", default="mkbench:latest", show_default=True),
        click.option("--data", default="mkbench-data", show_default=True,
                     help="the data folder (/data): a named volume, or a host folder (a path)"),
        click.option("--network", type=click.Choice(["none", "host"]), default="none", show_default=True,
                     help="host: for an LLM server on the network"),
        click.option("--adb-server", metavar="HOST:PORT", help="use the host's adb server instead of one inside (implies --network host)"),
        click.option("--privileged", is_flag=True, help="a privileged container (instead of the sandbox's security options)"),
        click.option("--env", "-e", multiple=True, metavar="KEY=VALUE", help="a variable for mkbench (MKBENCH_LLM, ...)"),
        click.option("--checkout", type=click.Path(exists=True, file_okay=False), help="mount this source checkout read-only (for `test`)"),
        click.option("--read-only/--writable", "read_only", default=True, show_default=True,
                     help="the image's file system (everything mkbench makes goes to /data)"),
        click.option("--cap-add", multiple=True, metavar="CAPABILITY", help="a capability on top (the tests' network namespaces)"),
    ]):
        function = option(function)
    return function


@appliance.command("build")
@click.option("--tag", default="mkbench:latest", show_default=True)
@click.option("--base", default="debian:bookworm-slim", show_default=True,
              help="the Debian bookworm base; where it is missing and no registry answers, one is made with debootstrap")
@click.option("--model", default=None, help="the manifest model baked in (default: the manifest's default)")
@click.option("--target", default=None, help="a Dockerfile stage to stop at")
@click.option("--ndk", type=click.Path(exists=True, file_okay=False), default=None, envvar="ANDROID_NDK_HOME",
              help="an unzipped Android NDK for arm64 builds  [default: $ANDROID_NDK_HOME]")
@click.option("--ca-bundle", type=click.Path(dir_okay=False), default=None, envvar=["PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"],
              help="CA certificates pip trusts while building  [default: $PIP_CERT, $REQUESTS_CA_BUNDLE or $SSL_CERT_FILE]")
@click.option("--mirror", default=None, help="the Debian mirror for debootstrap (default: this machine's apt mirror)")
@click.pass_obj
def appliance_build(s: settings_module.Settings, tag, base, model, target, ndk, ca_bundle, mirror) -> None:
    """Build the image: Debian toolchains, Python dependencies, the MNN builds, the model, mkbench."""
    from pathlib import Path

    from .image import ApplianceError, BuildOptions, build

    options = BuildOptions(tag=tag, base=base, model=model, target=target, ndk=Path(ndk) if ndk else None,
                           ca_bundle=Path(ca_bundle) if ca_bundle else None, mirror=mirror)
    try:
        build(options, s, say=click.echo)
    except (ApplianceError, LookupError) as error:
        fail(str(error))


@appliance.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@_container_options
@click.option("--dry-run", is_flag=True, help="print the docker command instead of running it")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def appliance_run(dry_run, command, **container) -> None:
    """Run a mkbench COMMAND in the image (default: run-all), e.g. `mkbench appliance run run-all --tasks smoke -d emulator`."""
    import shlex

    from .image import ApplianceError, container_spec, run

    options = _appliance_run_options(command or ("run-all",), **container)
    try:
        spec = container_spec(options)
        if dry_run:
            click.echo(shlex.join(spec.argv()))
            return
        sys.exit(run(spec))
    except ApplianceError as error:
        fail(str(error))


@appliance.command("shell")
@_container_options
def appliance_shell(**container) -> None:
    """A shell in the image, with the same data, devices and options as `run`."""
    from .image import ApplianceError, container_spec, shell

    try:
        shell(container_spec(_appliance_run_options(("shell",), **container)))
    except ApplianceError as error:
        fail(str(error))


@appliance.command("save")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--image", default="mkbench:latest", show_default=True)
def appliance_save(path: str, image: str) -> None:
    """Save the image to a tarball, with its sha256 in PATH.sha256, to carry to an offline machine."""
    from pathlib import Path

    from .image import ApplianceError, save

    try:
        save(image, Path(path), say=click.echo)
    except ApplianceError as error:
        fail(str(error))


@appliance.command("load")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--sha256", "expected", default=None, help="the tarball's sha256 (default: from PATH.sha256)")
def appliance_load(path: str, expected: str | None) -> None:
    """Load a saved image, after checking its sha256."""
    from pathlib import Path

    from .image import ApplianceError, load

    try:
        load(Path(path), expected, say=click.echo)
    except ApplianceError as error:
        fail(str(error))


if __name__ == "__main__":
    main()
