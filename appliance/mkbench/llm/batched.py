"""Several samples of one prompt decoded together: one llama.cpp batch per step, the sequences
sharing the prompt's KV cells (issue #20, lever 2).

    decoder = BatchDecoder(llm, sequences=4)             # its own context on the loaded model
    answers = decoder.generate(prompt_tokens, seeds=[0, 1, 2, 3], temperature=0.7, sampling=spec.sampling,
                               max_tokens=800, stop=["```\\n"])
    decoder.close()

Why: on 2 cores a 1.5B model decodes about 15 tokens/s one sequence at a time, and the matrix
products of a decode step are memory-bound, so a step that carries several sequences costs little
more than one (llama.cpp's batched-bench here: 18.1 tok/s for 1 sequence, 26.9 for 4). pass@k's
samples and MoKA's best-of-N drafts are exactly several samples of one prompt. The prompt is
evaluated once (sequence 0) and its cells are shared with the others (llama_memory_seq_cp on a
unified KV cache); each sequence then has its own sampler chain (the model's top-k, top-p, min-p,
repeat penalty and temperature, and its own seed) and stops on its own.

This uses llama.cpp's C API as llama-cpp-python 0.3.36 exposes it (llama_memory_seq_cp was
llama_kv_cache_seq_cp in older releases): pyproject pins that version.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    text: str
    finish_reason: str  # stop | length
    completion_tokens: int


class BatchDecoder:
    """A context of its own on a loaded llama_cpp.Llama's model, for `sequences` parallel samples."""

    def __init__(self, llm, sequences: int, n_ctx: int | None = None, n_batch: int | None = None):
        import llama_cpp

        self._lib, self.sequences = llama_cpp, sequences
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx or llm.n_ctx()
        params.n_batch = n_batch or llm.n_batch
        params.n_ubatch = params.n_batch
        params.n_seq_max = sequences
        params.kv_unified = True  # the prompt's cells are shared by every sequence, not copied per stream
        params.n_threads, params.n_threads_batch = llm.n_threads, llm.n_threads_batch
        self._model = llm._model.model
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not self._ctx:
            raise RuntimeError(f"llama.cpp could not make a context for {sequences} sequences")
        self.n_ctx, self.n_batch = params.n_ctx, params.n_batch
        self._batch = llama_cpp.llama_batch_init(max(self.n_batch, sequences), 0, sequences)

    def close(self) -> None:
        if self._ctx:
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self._ctx)
            self._ctx = None

    def __enter__(self) -> "BatchDecoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ decoding

    def _decode(self, entries: Sequence[tuple[int, int, tuple[int, ...], bool]]) -> None:
        """One llama_decode of (token, position, sequence ids, wants logits) entries."""
        batch = self._batch
        for i, (token, position, seq_ids, logits) in enumerate(entries):
            batch.token[i], batch.pos[i], batch.logits[i] = token, position, logits
            batch.n_seq_id[i] = len(seq_ids)
            for j, seq in enumerate(seq_ids):
                batch.seq_id[i][j] = seq
        batch.n_tokens = len(entries)
        if self._lib.llama_decode(self._ctx, batch) != 0:
            raise RuntimeError("llama_decode failed (the context is full?)")

    def _sampler(self, seed: int, temperature: float, sampling):
        """The chain llama-cpp-python's create_completion builds (Llama._init_sampler), per sequence."""
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        add = lambda sampler: lib.llama_sampler_chain_add(chain, sampler)  # noqa: E731
        add(lib.llama_sampler_init_penalties(lib.llama_vocab_n_tokens(self._vocab), 64, sampling.repeat_penalty, 0.0, 0.0))
        if temperature <= 0:
            add(lib.llama_sampler_init_greedy())
            return chain
        add(lib.llama_sampler_init_top_k(sampling.top_k))
        add(lib.llama_sampler_init_typical(1.0, 1))
        add(lib.llama_sampler_init_top_p(sampling.top_p, 1))
        add(lib.llama_sampler_init_min_p(sampling.min_p, 1))
        add(lib.llama_sampler_init_temp(temperature))
        add(lib.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        n = self._lib.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        if n < 0:  # a longer piece: -n bytes
            buffer = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:max(n, 0)]

    def fits(self, prompt_length: int, samples: int, max_tokens: int) -> bool:
        return 1 <= samples <= self.sequences and prompt_length + samples * max_tokens <= self.n_ctx

    def generate(self, prompt: Sequence[int], seeds: Sequence[int], temperature: float | Sequence[float], sampling,
                 max_tokens: int, stop: Sequence[str] = (), identifiers=None, tokens=None) -> list[Sample]:
        """One sample per seed of the prompt's continuation, decoded together (a temperature for
        all, or one per sample); with `identifiers` (and the vocabulary's `tokens`), each sample's
        names after their prefixes are kept to the known ones (llm/identifiers.py)."""
        lib = self._lib
        n = len(seeds)
        temperatures = [float(temperature)] * n if isinstance(temperature, (int, float)) else [float(t) for t in temperature]
        if not 1 <= n <= self.sequences:
            raise ValueError(f"{n} samples for a decoder of {self.sequences} sequences")
        if len(prompt) + n * max_tokens > self.n_ctx:
            raise ValueError(f"a prompt of {len(prompt)} tokens and {n} x {max_tokens} new ones exceed the context of {self.n_ctx}")
        memory = lib.llama_get_memory(self._ctx)
        lib.llama_memory_clear(memory, True)
        for start in range(0, len(prompt), self.n_batch):  # the prompt once, as sequence 0
            chunk = prompt[start:start + self.n_batch]
            self._decode([(t, start + i, (0,), start + i == len(prompt) - 1) for i, t in enumerate(chunk)])
        for seq in range(1, n):
            lib.llama_memory_seq_cp(memory, 0, seq, -1, -1)
        samplers = [self._sampler(seed, t, sampling) for seed, t in zip(seeds, temperatures)]
        n_vocab = lib.llama_vocab_n_tokens(self._vocab)
        pieces: list[list[bytes]] = [[] for _ in range(n)]
        finish = [None] * n
        output_of = {seq: -1 for seq in range(n)}  # the batch row whose logits each sequence samples from
        try:
            for step in range(max_tokens):
                entries = []
                for seq in range(n):
                    if finish[seq] is not None:
                        continue
                    if identifiers:  # mask the row's logits in place before the sampler reads them
                        row = np.ctypeslib.as_array(lib.llama_get_logits_ith(self._ctx, output_of[seq]), shape=(n_vocab,))
                        text = b"".join(pieces[seq]).decode("utf-8", errors="ignore")
                        constrained = identifiers.constrain(text, row, tokens)
                        if constrained is not row:
                            row[:] = constrained
                    token = lib.llama_sampler_sample(samplers[seq], self._ctx, output_of[seq])
                    if lib.llama_vocab_is_eog(self._vocab, token):
                        finish[seq] = "stop"
                        continue
                    pieces[seq].append(self._piece(token))
                    text = b"".join(pieces[seq]).decode("utf-8", errors="ignore")
                    if any(s and s in text for s in stop):
                        finish[seq] = "stop"
                        continue
                    output_of[seq] = len(entries)
                    entries.append((token, len(prompt) + step, (seq,), True))
                if not entries:
                    break
                if step == max_tokens - 1:
                    break
                self._decode(entries)
        finally:
            for chain in samplers:
                lib.llama_sampler_free(chain)
        samples = []
        for seq in range(n):
            text = b"".join(pieces[seq]).decode("utf-8", errors="ignore")
            for s in stop:  # cut at the first stop string, as create_completion does
                if s and s in text:
                    text = text[:text.index(s)]
            samples.append(Sample(text, finish[seq] or "length", len(pieces[seq])))
        return samples
