"""How much of a run's prompts the model reads again, and what keeping more KV states would spare.

    python appliance/benchmarks/prompt_reuse.py levers-8 [--generator moka] [--n-batch 256]

Issue #20 asks to keep a prompt's KV state between MoKA rounds that share its prefix. Today the
in-process backend keeps one context and reuses the prefix a prompt shares with the one before
it, in whole batches aligned to position 0 (llm/llamacpp.py: that keeps answers independent of
what ran before). When MoKA switches roles (Coder, Debugger, Accelerator) the previous prompt
often shares less with the next one than an earlier prompt of the same attempt does. This
replays a run's recorded prompts through the model's own chat template and tokenizer (nothing is
generated) and counts, per attempt, the prompt tokens that must be evaluated:

  previous   the backend's rule: the prefix shared with the previous prompt, in whole batches
  any        a cache of every earlier prompt's state in the attempt: the longest shared prefix
             with any of them, in whole batches (the most that keeping KV states could spare)

next to what the run recorded (steps' evaluated_prompt_tokens; samples decoded together count
their prompt once). Prints a line per attempt and the totals.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict

from mkbench import settings as settings_module
from mkbench import store
from mkbench.llm.chat import Message
from mkbench.llm.llamacpp import LlamaCppBackend


def shared(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def evaluated(tokens: list[int], earlier: list[list[int]], n_batch: int) -> int:
    """Tokens to evaluate when the longest aligned prefix shared with one of `earlier` is kept."""
    best = max((shared(tokens, e) for e in earlier), default=0)
    keep = min(best, len(tokens) - 1) // n_batch * n_batch  # the last token is always computed
    return len(tokens) - keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_id")
    parser.add_argument("--generator", default="moka", help="generators whose name starts with this (default: moka)")
    parser.add_argument("--n-batch", type=int, default=256, help="the backend's batch size (mkbench's default)")
    args = parser.parse_args()
    settings = settings_module.load()
    db = store.open_db(settings.db_path)
    calls = db.conn.execute(
        "SELECT a.id, a.task, a.generator, l.prompt FROM llm_calls l JOIN attempts a ON a.id = l.attempt_id "
        "WHERE a.run_id = ? AND a.generator LIKE ? ORDER BY l.id", [args.run_id, args.generator + "%"]).fetchall()
    if not calls:
        raise SystemExit(f"no LLM calls of {args.generator}* in run {args.run_id}")
    recorded = defaultdict(int)
    for attempt_id, content in db.conn.execute(
            "SELECT s.attempt_id, s.content FROM steps s JOIN attempts a ON a.id = s.attempt_id "
            "WHERE a.run_id = ? AND a.generator LIKE ?", [args.run_id, args.generator + "%"]):
        recorded[attempt_id] += json.loads(content).get("evaluated_prompt_tokens") or 0
    backend = LlamaCppBackend.load(None, settings, n_ctx=512, n_threads=1)  # tokenizer and template only
    per_attempt: dict[int, dict] = {}
    earlier: dict[int, list[list[int]]] = defaultdict(list)
    for attempt_id, task, generator, prompt in calls:
        tokens = backend.prompt_tokens(tuple(Message(m["role"], m["content"]) for m in json.loads(prompt)))
        row = per_attempt.setdefault(attempt_id, {"task": task, "generator": generator, "calls": 0, "tokens": 0,
                                                  "previous": 0, "any": 0, "recorded": recorded[attempt_id]})
        seen = earlier[attempt_id]
        row["calls"] += 1
        row["tokens"] += len(tokens)
        row["previous"] += evaluated(tokens, seen[-1:], args.n_batch)
        row["any"] += evaluated(tokens, seen, args.n_batch)
        seen.append(tokens)
    backend.close()
    print(f"{'generator':20s} {'task':28s} {'calls':>5s} {'prompt':>8s} {'recorded':>9s} {'previous':>9s} {'any':>8s}")
    total = defaultdict(int)
    for row in per_attempt.values():
        print(f"{row['generator']:20s} {row['task']:28s} {row['calls']:5d} {row['tokens']:8,d} {row['recorded']:9,d} "
              f"{row['previous']:9,d} {row['any']:8,d}")
        for key in ("calls", "tokens", "recorded", "previous", "any"):
            total[key] += row[key]
    print(f"{'all':49s} {total['calls']:5d} {total['tokens']:8,d} {total['recorded']:9,d} {total['previous']:9,d} "
          f"{total['any']:8,d}")
    spared = total["previous"] - total["any"]
    print(f"keeping every earlier prompt's state would spare {spared:,} of {total['previous']:,} evaluated prompt tokens "
          f"({100 * spared / max(total['previous'], 1):.0f}%; {spared / len(per_attempt):,.0f} per attempt)")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
