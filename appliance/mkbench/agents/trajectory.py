"""An attempt's recorded trajectory, read back from the store and printed readably (`mkbench show`)."""

from __future__ import annotations

import json
import textwrap

PROMPT_LINES = 30  # lines of each prompt shown unless full
ANSWER_LINES = 60
OUTPUT_LINES = 15


class AttemptNotFound(LookupError):
    """No attempt with that id in the database."""


def load(db, attempt_id: int) -> dict:
    """The attempts row, its steps in order, and the LLM calls they point to."""
    row = db.conn.execute("SELECT id, created_at, run_id, task, generator, mode, device_id, best_evaluation_id, status, summary "
                          "FROM attempts WHERE id = ?", [attempt_id]).fetchone()
    if row is None:
        raise AttemptNotFound(f"no attempt {attempt_id} in the database (see the attempts table)")
    keys = ("id", "created_at", "run_id", "task", "generator", "mode", "device_id", "best_evaluation_id", "status", "summary")
    attempt = dict(zip(keys, row))
    attempt["summary"] = json.loads(attempt["summary"] or "{}")
    steps = [{"position": p, "role": r, **json.loads(c)} for p, r, c in db.conn.execute(
        "SELECT position, role, content FROM steps WHERE attempt_id = ? ORDER BY position", [attempt_id])]
    calls = {}
    for call_id, prompt, model in db.conn.execute("SELECT id, prompt, model FROM llm_calls WHERE attempt_id = ?", [attempt_id]):
        calls[call_id] = {"prompt": json.loads(prompt), "model": model}
    attempt["steps"] = steps
    attempt["calls"] = calls
    return attempt


def _block(text: str, limit: int | None, indent: str = "      | ", tail: bool = False) -> list[str]:
    """Text indented; at most `limit` lines, its opening (or its end when tail: prompts share their openings)."""
    lines = (text or "").rstrip("\n").splitlines() or [""]
    if limit is None or len(lines) <= limit:
        return [indent + line for line in lines]
    if tail:
        return [f"{indent}... {len(lines) - limit} earlier lines (--full shows them)"] + [indent + l for l in lines[-limit:]]
    return [indent + line for line in lines[:limit]] + [f"{indent}... {len(lines) - limit} more lines (--full shows them)"]


def render(db, attempt_id: int, full: bool = False) -> str:
    """The attempt as text: header, then one entry per step (prompts and answers, tools, lint, verdicts)."""
    a = load(db, attempt_id)
    s = a["summary"]
    stopped = f", stopped by {s['stopped_by']}" if s.get("stopped_by") else ""
    speed = f", {s['speedup']:.2f}x native" if s.get("speedup") else ""
    evaluation = f" (evaluation {a['best_evaluation_id']})" if a["best_evaluation_id"] else ""
    out = [f"attempt {a['id']}: {a['generator']} ({a['mode']}) on task {a['task']}, run {a['run_id']} — {a['status']}{stopped}",
           (f"model {s.get('model', '?')} ({s.get('backend', '?')}); {s.get('llm_calls', 0)} LLM calls, "
            f"{s.get('prompt_tokens', 0)} prompt + {s.get('completion_tokens', 0)} completion tokens, {s.get('seconds', 0):.0f} s"),
           f"best: {s.get('best')}{speed}{evaluation}",
           f"verdicts: {', '.join(s.get('verdicts', [])) or 'none'}", ""]
    for step in a["steps"]:
        role = step["role"]
        head = f"[{step['position']}] {role}"
        if "call_id" in step:
            tokens = f"{step.get('prompt_tokens')}+{step.get('completion_tokens')} tokens"
            out.append(f"{head}  seed {step.get('seed')}, T {step.get('temperature')}, {tokens}, {step.get('seconds', 0):.1f} s")
            prompt = a["calls"].get(step["call_id"], {}).get("prompt", [])
            shown = prompt if full else prompt[-1:]
            for message in shown:
                out.append(f"    {message['role']}:" + ("" if full else " (end of the last message)"))
                out += _block(message["content"], None if full else PROMPT_LINES, tail=True)
            out.append("    answer:")
            out += _block(step.get("answer", ""), None if full else ANSWER_LINES)
        elif role == "tool":
            out.append(f"{head}  {step.get('tool')} {json.dumps(step.get('args', {}))}")
            out += _block(step.get("result", ""), None if full else OUTPUT_LINES)
        elif role == "lint":
            out.append(f"{head}  {'ok' if step.get('ok') else 'rejected: ' + step.get('reason', '')}")
        elif role == "judge":
            speed = f", {step['speedup']:.2f}x native" if step.get("speedup") else ""
            out.append(f"{head}  {step.get('verdict')}{speed}" + (f" — {step['reason']}" if step.get("reason") else "")
                       + f"  ({step.get('seconds', 0):.1f} s, evaluation {step.get('evaluation_id')})")
            if step.get("verdict") == "compile-error" and step.get("compiler_output"):
                out += _block(step["compiler_output"], None if full else OUTPUT_LINES)
        else:
            detail = {k: v for k, v in step.items() if k not in ("position", "role")}
            out.append(f"{head}  " + textwrap.shorten(json.dumps(detail, default=str), 300))
        out.append("")
    return "\n".join(out).rstrip() + "\n"
