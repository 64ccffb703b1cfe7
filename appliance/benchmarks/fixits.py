"""How many of a run's failed builds the compiler's own fix-its repair (what MoKA now tries first).

    python appliance/benchmarks/fixits.py stratified-12            # every distinct failed build of the run
    python appliance/benchmarks/fixits.py stratified-12 --limit 5

Each distinct candidate of the run whose verdict was compile-error is built again (the judge now
asks the compiler for parseable fix-its), the fix-its that fall in the model's code are applied
as MoKA applies them (`agents.tools.fixits.fix`), put back into the judged source (MoKA lints and
splices scaffolded code again; an older run's scaffold may differ from today's), and the fixed
candidate is judged on the host. Nothing is stored. Prints a line per candidate
and the totals: failed builds, with fix-its in the model's code, built after, correct after.
This replays the model's real mistakes; it does not say what MoKA's later rounds would have done.
"""

from __future__ import annotations

import argparse

from mkbench import settings as settings_module
from mkbench import store
from mkbench.agents.attempt import Candidate
from mkbench.agents.tools import fixits
from mkbench.kinds.scaffold import BEGIN_MARK, END_MARK
from mkbench.devices import get_device
from mkbench.judge.evaluate import evaluate
from mkbench.llm.chat import extract_code
from mkbench.tasks import get_task

WORKER = "fixits-benchmark"  # its own build folders: never waits on (or holds up) a run's worker


class InOriginal:
    """Puts fixed code back where it was in the judged source, so an older run's scaffold stays
    the one around it (today's scaffold may differ); the lint pass is not run again."""

    def __init__(self, source: str, region: tuple[int, int] | None):
        self.lines, self.region = source.splitlines(), region

    def candidate(self, answer: str) -> Candidate:
        code = extract_code(answer)
        if self.region is None:
            return Candidate(code, code)
        first, last = self.region
        source = "\n".join(self.lines[:first - 1] + code.strip("\n").splitlines() + self.lines[last:]) + "\n"
        return Candidate(code, source, None, self.region)


def as_candidate(source: str) -> tuple[str, Candidate]:
    """(mode, candidate) of a judged source: scaffolded when it carries the scaffold's marks."""
    lines = source.splitlines()
    begin = next((n for n, line in enumerate(lines, 1) if line.strip() == BEGIN_MARK), None)
    end = next((n for n, line in enumerate(lines, 1) if line.strip() == END_MARK), None)
    if begin is None or end is None:
        return "whole-file", Candidate(source, source)
    return "scaffolded", Candidate("\n".join(lines[begin:end - 1]), source, None, (begin + 1, end - 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    s = settings_module.load()
    db = store.open_db(s.db_path)
    rows = db.conn.execute("SELECT task, candidate FROM evaluations WHERE run_id = ? AND verdict = 'compile-error' "
                           "GROUP BY candidate_sha256 ORDER BY MIN(id)", [args.run]).fetchall()[: args.limit]
    host = get_device("host", s)
    totals = {"failed builds": 0, "with fix-its": 0, "built after": 0, "correct after": 0}
    for task_name, source in rows:
        task = get_task(task_name)
        mode_name, candidate = as_candidate(source)
        before = evaluate(task, source, host, s, worker=WORKER)
        totals["failed builds"] += 1
        fixed, edits = fixits.fix(candidate, before.compiler_output, InOriginal(source, candidate.region))
        if fixed is None:
            print(f"{task_name} ({mode_name}): no fix-it in the model's code; {before.reason[:100]}")
            continue
        totals["with fix-its"] += 1
        after = evaluate(task, fixed.source, host, s, worker=WORKER) if fixed.source else None
        verdict = after.verdict if after else f"lint: {fixed.rejected}"
        totals["built after"] += bool(after and after.compiled)
        totals["correct after"] += bool(after and after.correct)
        print(f"{task_name} ({mode_name}): {'; '.join(edits)} -> {verdict}"
              f"{': ' + after.reason[:100] if after and not after.correct else ''}")
    print(", ".join(f"{name} {count}" for name, count in totals.items()))


if __name__ == "__main__":
    main()
