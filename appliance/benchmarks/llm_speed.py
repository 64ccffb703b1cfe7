"""Prompt-processing and generation speed of a model through mkbench, next to llama.cpp's own.

    python appliance/benchmarks/llm_speed.py [--model NAME] [--n-prompt 512] [--n-gen 128] [--repetitions 3]
                                   [--llama-bench PATH] [--sequences 1,2,4,8] [--json]

The same GGUF, threads and batch size are measured four ways:

  llama-bench        llama.cpp's own benchmark tool (when a binary is given, found on PATH or
                     in $LLAMA_BENCH); random tokens, no sampling.
  llama.cpp C API    llama_decode timed directly through the bundled library's bindings: one
                     n-prompt batch for pp, n-gen single-token decodes for tg; no sampling.
  llama-cpp-python   Llama.create_completion with the model's sampling: what mkbench builds on.
  mkbench Chat       a Chat call: template, context guard, sampling, recording into SQLite.

Then several samples of one 256-token prompt decoded together (llm/batched.py, issue #20's lever
2): for each count of parallel sequences, the total tokens/s of the decode (the shared prompt's
evaluation, timed by a one-token call, left out), as llama.cpp's llama-batched-bench reports it.

pp = prompt tokens / time of a call that generates one token; tg = (tokens - 1) / (time of the
generating call - time of the one-token call on the same prompt). Medians over repetitions run
in interleaved order; a spread above 10 % is flagged (another process competing for the cores).

To build llama-bench from the llama.cpp that llama-cpp-python vendors, with the same flags:
    pip download --no-deps --no-binary :all: llama-cpp-python==$(python -c "import llama_cpp; print(llama_cpp.__version__)")
    tar xzf llama_cpp_python-*.tar.gz && cd llama_cpp_python-*/vendor/llama.cpp
    cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF && cmake --build build --target llama-bench -j
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mkbench import store
from mkbench import settings as settings_module
from mkbench.llm import Chat, Message, Recorder
from mkbench.llm.llamacpp import LlamaCppBackend, import_llama_cpp
from mkbench.llm.models import load_manifest

TG_PROMPT = "Write a long, complete C++ implementation of a blocked single-precision matrix multiplication with comments on every line."
FILLER = (
    "The kernel reads the input tensor in NC4HW4 layout, computes one output channel block per thread, "
    "and writes the result back; bounds are checked at the tail of each row. "
)


def main() -> None:
    args = parse_args()
    llama_cpp = import_llama_cpp()
    threads = args.threads or os.cpu_count() or 1
    load = os.getloadavg()[0]
    if load > threads * 0.5:
        print(f"warning: load average {load:.1f} on {os.cpu_count()} cores: figures will be noisy", file=sys.stderr)

    backend = LlamaCppBackend.load(args.model, settings_module.load(), n_ctx=args.n_prompt + args.n_gen + 256, n_threads=threads, n_batch=args.n_batch)
    with backend, tempfile.TemporaryDirectory() as scratch:
        chat = Chat(backend, Recorder(store.open_db(Path(scratch) / "bench.sqlite")))
        long_prompts = [prompt_of(backend, args.n_prompt, run) for run in range(args.repetitions + 1)]
        short_prompt = [Message("user", TG_PROMPT)]
        runs: dict[str, dict[str, list[float]]] = {k: {"pp": [], "tg": []} for k in ("C API", "llama-cpp-python", "mkbench Chat")}
        n_prompt_tokens = backend.count_prompt_tokens(long_prompts[0])
        generated = []
        # Run 0 warms up (page cache, allocations) and is not counted; then interleave the three.
        for run in range(args.repetitions + 1):
            print(f"run {run}/{args.repetitions}{' (warm-up)' if run == 0 else ''}", file=sys.stderr)
            c_api = time_c_api(llama_cpp, backend, n_prompt_tokens, args.n_gen)
            n_long = backend.count_prompt_tokens(long_prompts[run])
            lcp = time_calls(
                lambda msgs, k: raw_completion(backend, msgs, k, args.seed), long_prompts[run], n_long, short_prompt, args.n_gen
            )
            mk = time_calls(lambda msgs, k: chat_completion(chat, msgs, k, args.seed), long_prompts[run], n_long, short_prompt, args.n_gen)
            if run:
                for name, (pp, tg, _) in (("C API", c_api), ("llama-cpp-python", lcp), ("mkbench Chat", mk)):
                    runs[name]["pp"].append(pp)
                    runs[name]["tg"].append(tg)
                generated.append((lcp[2], mk[2]))

        batched = time_batches(backend, [int(n) for n in args.sequences.split(",") if n], args.n_gen, args.repetitions)

    results = {name: {k: summary(v) for k, v in r.items()} for name, r in runs.items()}
    bench = run_llama_bench(args, backend, threads)
    if bench:
        results = {"llama-bench": bench} | results
    report = {
        "model": backend.model,
        "model_sha256": backend.model_sha256,
        "threads": threads,
        "n_batch": args.n_batch,
        "n_prompt": n_prompt_tokens,
        "n_gen": args.n_gen,
        "generated_tokens": generated,
        "load_average_before": load,
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "results": results,
        "batched_decode_tok_s": batched,
        "mkbench_overhead_percent": {
            k: 100 * (results["llama-cpp-python"][k]["median"] / results["mkbench Chat"][k]["median"] - 1) for k in ("pp", "tg")
        },
    }
    print(json.dumps(report, indent=2) if args.json else table(report))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=load_manifest().default, help="installed model name or GGUF path (default: the default model)")
    parser.add_argument("--n-prompt", type=int, default=512)
    parser.add_argument("--n-gen", type=int, default=128)
    parser.add_argument("--n-batch", type=int, default=256, help="batch size (mkbench's default)")
    parser.add_argument("--threads", type=int, default=0, help="default: all cores")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--llama-bench", default=os.environ.get("LLAMA_BENCH") or shutil.which("llama-bench"), help="llama-bench binary")
    parser.add_argument("--sequences", default="1,2,4,8", help="parallel sequences of one prompt to time ('' to skip)")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


def prompt_of(backend: LlamaCppBackend, n_tokens: int, run: int) -> list[Message]:
    """A prompt of about n_tokens, starting differently for each run so no KV cache is reused."""
    words = (FILLER * (n_tokens // 10 + 10)).split()
    low, high = 1, len(words)
    while low < high:  # the fewest words that reach n_tokens
        middle = (low + high) // 2
        if backend.count_prompt_tokens(_prompt(run, words[:middle])) < n_tokens:
            low = middle + 1
        else:
            high = middle
    return _prompt(run, words[:low])


def _prompt(run: int, words: list[str]) -> list[Message]:
    return [Message("system", f"Run {run}."), Message("user", " ".join(words))]


def time_c_api(llama_cpp, backend: LlamaCppBackend, n_prompt: int, n_gen: int) -> tuple[float, float, int]:
    """llama_decode directly: pp over one n_prompt batch (split by n_batch), tg over single tokens."""
    llm = backend.llama
    ctx = llm.ctx
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    rng = np.random.default_rng(0)
    tokens = (llama_cpp.llama_token * n_prompt)(*rng.integers(0, n_vocab, n_prompt).tolist())
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
    started = time.perf_counter()
    for start in range(0, n_prompt, backend.n_batch):
        n = min(backend.n_batch, n_prompt - start)
        chunk = (llama_cpp.llama_token * n).from_buffer(tokens, start * np.dtype(np.int32).itemsize)
        _check(llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(chunk, n)))
    llama_cpp.llama_synchronize(ctx)
    pp_seconds = time.perf_counter() - started
    one = (llama_cpp.llama_token * 1)()
    started = time.perf_counter()
    for _ in range(n_gen):
        one[0] = int(rng.integers(0, n_vocab))
        _check(llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1)))
    llama_cpp.llama_synchronize(ctx)
    tg_seconds = time.perf_counter() - started
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
    llm.reset()
    return n_prompt / pp_seconds, n_gen / tg_seconds, n_gen


def time_batches(backend: LlamaCppBackend, counts: list[int], n_gen: int, repetitions: int) -> dict[int, dict]:
    """Total decode tokens/s of n samples of one shared 256-token prompt decoded together."""
    from mkbench.llm.batched import BatchDecoder

    if not counts:
        return {}
    prompt = backend.prompt_tokens(prompt_of(backend, 256, 99))
    found = {}
    with BatchDecoder(backend.llama, sequences=max(counts), n_ctx=len(prompt) + max(counts) * n_gen + 64) as decoder:
        for n in counts:
            rates = []
            for run in range(repetitions + 1):  # run 0 warms up
                seeds = [run * 100 + k for k in range(n)]
                started = time.perf_counter()
                decoder.generate(prompt, seeds, backend.sampling.temperature, backend.sampling, max_tokens=1)
                prompt_seconds = time.perf_counter() - started
                started = time.perf_counter()
                samples = decoder.generate(prompt, seeds, backend.sampling.temperature, backend.sampling, max_tokens=n_gen)
                seconds = time.perf_counter() - started - prompt_seconds
                if run:
                    rates.append(sum(s.completion_tokens - 1 for s in samples) / seconds)
            found[n] = summary(rates)
            print(f"{n} sequences: {found[n]['median']:.1f} tok/s", file=sys.stderr)
    return found


def _check(status: int) -> None:
    if status != 0:
        raise RuntimeError(f"llama_decode failed with status {status}")


def raw_completion(backend: LlamaCppBackend, messages: list[Message], max_tokens: int, seed: int) -> tuple[float, int]:
    """Llama.create_completion on the same tokens and sampling mkbench uses; (seconds, tokens)."""
    llm, s = backend.llama, backend.sampling
    tokens = backend.prompt_tokens(messages)
    llm.reset()  # no KV-cache reuse, as in mkbench for prompts that share no whole batch
    started = time.perf_counter()
    result = llm.create_completion(tokens, max_tokens=max_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                   min_p=s.min_p, repeat_penalty=s.repeat_penalty, seed=seed)  # fmt: skip
    return time.perf_counter() - started, result["usage"]["completion_tokens"]


def chat_completion(chat: Chat, messages: list[Message], max_tokens: int, seed: int) -> tuple[float, int]:
    answer = chat(messages, seed=seed, max_tokens=max_tokens)
    return answer.wall_seconds, answer.completion_tokens


def time_calls(call, long_prompt, n_long_tokens, short_prompt, n_gen) -> tuple[float, float, int]:
    """pp from a one-token call on the long prompt; tg from the short prompt's n_gen and one-token calls."""
    pp_seconds, _ = call(long_prompt, 1)
    gen_seconds, n = call(short_prompt, n_gen)
    first_seconds, _ = call(short_prompt, 1)
    generation_seconds = gen_seconds - first_seconds
    return n_long_tokens / pp_seconds, (n - 1) / generation_seconds if generation_seconds > 0 and n > 1 else float("nan"), n


def summary(values: list[float]) -> dict[str, float]:
    median = statistics.median(values)
    spread = (max(values) - min(values)) / median if median else 0.0
    return {"median": median, "min": min(values), "max": max(values), "spread": spread, "unstable": spread > 0.10}


def run_llama_bench(args, backend: LlamaCppBackend, threads: int) -> dict | None:
    """llama-bench's own pp/tg for the same file, threads and batch size; None without the binary."""
    if not args.llama_bench:
        print("llama-bench not found (--llama-bench PATH or $LLAMA_BENCH): only the C API figures stand for llama.cpp", file=sys.stderr)
        return None
    command = [args.llama_bench, "-m", str(backend.installed.path), "-p", str(args.n_prompt), "-n", str(args.n_gen),
               "-t", str(threads), "-b", str(args.n_batch), "-ub", str(args.n_batch), "-r", str(args.repetitions), "-o", "json"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = {}
    for entry in json.loads(out):
        key = "pp" if entry["n_gen"] == 0 else "tg"
        samples = entry.get("samples_ts") or [entry["avg_ts"]]
        result[key] = summary(samples) | {"median": entry["avg_ts"]}
    return result


def table(report: dict) -> str:
    lines = [
        f"{report['model']} (sha256 {report['model_sha256'][:12]}), {report['threads']} threads, batch {report['n_batch']}, "
        f"load average before {report['load_average_before']:.2f}",
        report["system_info"],
        "",
        f"{'':<20} {'pp' + str(report['n_prompt']) + ' tok/s':>22} {'tg' + str(report['n_gen']) + ' tok/s':>22}",
    ]
    for name, r in report["results"].items():
        cells = [f"{r[k]['median']:8.1f} [{r[k]['min']:6.1f}-{r[k]['max']:6.1f}]{'!' if r[k]['unstable'] else ' '}" for k in ("pp", "tg")]
        lines.append(f"{name:<20} {cells[0]:>22} {cells[1]:>22}")
    if report.get("batched_decode_tok_s"):
        lines += ["", "samples of one prompt decoded together (llm/batched.py), total decode tok/s:"]
        for n, r in report["batched_decode_tok_s"].items():
            lines.append(f"  {n} sequence{'s' if n > 1 else ' '}  {r['median']:8.1f} [{r['min']:6.1f}-{r['max']:6.1f}]{'!' if r['unstable'] else ''}")
    overhead = report["mkbench_overhead_percent"]
    lines += ["", f"mkbench Chat vs llama-cpp-python: pp {overhead['pp']:+.1f} %, tg {overhead['tg']:+.1f} % time "
              "(positive: mkbench slower); ! marks a spread above 10 %"]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
