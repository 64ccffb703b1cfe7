"""run-all: every selected task × generator × mode × device, from nothing to a results table.

    config = RunConfig.build(Path("run.toml"), {"devices": ["host", "emulator"]})   # TOML, then flags
    summary = run_all(config, settings)      # the same config again finds its run and resumes it
    summary = resume("20260101-120000-3fa2c1", settings)

The package, one module per concern:
    config.py      RunConfig, the generators a run can name, selecting tasks and devices
    plan.py        work items, what is finished, how a run stands (RunSummary)
    start.py       run_all and resume: the run's row, provenance and resume checks, the model
    provenance.py  what a reader needs to reproduce the run
    workers.py     one worker per device: items from the queue, faults, lost devices
    work_queue.py  pending items per slot, items in flight
    sharing.py     what workers share: the machine, a device, the model, the call log
    progress.py    the terminal: a bar per stage, or one line per event
    recheck.py     a run's correct kernels judged again on another device
    listing.py     `run list`, `run show`
"""

from .config import GENERATORS, HOST, SMOKE, GeneratorEntry, RunConfig, RunError, judgeable, register, resolve_devices, select_tasks
from .listing import RunInfo, list_runs, show_run
from .plan import POOL, RunSummary, WorkItem, finished_items, plan
from .progress import ItemDone, Progress
from .provenance import generators_fingerprint, provenance
from .recheck import recheck
from .start import resume, run_all

__all__ = ["GENERATORS", "HOST", "POOL", "SMOKE", "GeneratorEntry", "ItemDone", "Progress", "RunConfig", "RunError", "RunInfo",
           "RunSummary", "WorkItem", "finished_items", "generators_fingerprint", "judgeable", "list_runs", "plan", "provenance",
           "recheck", "register", "resolve_devices", "resume", "run_all", "select_tasks", "show_run"]
